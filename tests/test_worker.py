"""The queue loop every background worker runs."""

from __future__ import annotations

import asyncio

from bot.worker import QueueWorker


async def test_the_loop_survives_an_unexpected_error_and_never_handles_an_item_twice_at_once() -> (
    None
):
    handled: list[int] = []
    release = asyncio.Event()
    calls = 0

    async def take(limit: int) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database restarted mid-query")
        return [7]  # the same item keeps being offered while its handler still runs

    async def handle(item: int) -> None:
        handled.append(item)
        await release.wait()

    async def next_due() -> float | None:
        return None

    worker: QueueWorker[int] = QueueWorker(
        name="test", take=take, handle=handle, next_due=next_due, concurrency=4, idle=0.01
    )
    worker.start()
    try:
        while calls < 5:  # several passes after the error
            worker.wake()
            await asyncio.sleep(0)
            await asyncio.sleep(0.02)
        assert handled == [7]
        assert worker.in_flight == 1
    finally:
        release.set()
        await worker.stop(grace=1)
