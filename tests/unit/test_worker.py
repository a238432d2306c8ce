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


async def test_items_leased_while_the_worker_is_stopping_are_still_handled() -> None:
    # SIGTERM can land while a take is in flight: the rows it leases must be worked (or handed
    # back by their handler), not left leased to a process that is going away.
    take_started = asyncio.Event()
    release_take = asyncio.Event()
    handled: list[int] = []

    async def take(limit: int) -> list[int]:
        if handled or take_started.is_set():
            return []
        take_started.set()
        await release_take.wait()
        return [42]

    async def handle(item: int) -> None:
        handled.append(item)

    async def next_due() -> float | None:
        return None

    worker: QueueWorker[int] = QueueWorker(
        name="test", take=take, handle=handle, next_due=next_due, concurrency=4, idle=0.01
    )
    worker.start()
    worker.wake()
    await asyncio.wait_for(take_started.wait(), 5)
    stopping = asyncio.create_task(worker.stop(grace=5))
    await asyncio.sleep(0)  # stop() has begun: the loop is asked to end
    release_take.set()
    await asyncio.wait_for(stopping, 10)
    assert handled == [42]
    assert not worker.has_room()  # and nothing new is handed over after a stop
