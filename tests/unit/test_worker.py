"""The queue loop every background worker runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

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


@contextlib.asynccontextmanager
async def running(worker: QueueWorker[int]) -> AsyncIterator[QueueWorker[int]]:
    """The worker's loop, running for the block and stopped after it."""
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=1)


class Queue:
    """A queue of due items: take() leases them (the write a take costs), next_due() reads."""

    def __init__(self) -> None:
        self.due: list[int] = []
        self.takes = 0
        self.due_reads = 0
        self.handled: list[int] = []
        self.retry_at: float | None = None
        self.changed = asyncio.Event()

    async def take(self, limit: int) -> list[int]:
        self.takes += 1
        items, self.due = self.due[:limit], self.due[limit:]
        self.changed.set()
        return items

    async def handle(self, item: int) -> None:
        self.handled.append(item)
        self.changed.set()

    async def next_due(self) -> float | None:
        self.due_reads += 1
        self.changed.set()
        return self.retry_at

    def worker(self, *, concurrency: int = 4, idle: float = 60.0) -> QueueWorker[int]:
        return QueueWorker(
            name="test",
            take=self.take,
            handle=self.handle,
            next_due=self.next_due,
            concurrency=concurrency,
            idle=idle,
        )

    async def until(self, check: object, timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), timeout)


async def test_a_handed_over_item_costs_no_take_and_a_wake_does() -> None:
    # A take is a lease written to the store; an item handed over in memory, and its end, must
    # not make the loop write one more (every claim and report would pay for it twice).
    queue = Queue()
    async with running(queue.worker()) as worker:
        await queue.until(lambda: queue.due_reads >= 1)  # the first pass: one take, nothing due
        assert queue.takes == 1
        assert worker.reserve()
        assert worker.submit(5, reserved=True)
        await queue.until(lambda: queue.handled == [5] and worker.in_flight == 0)
        await queue.until(lambda: queue.due_reads >= 2)  # its end: the loop reads next_due ...
        assert queue.takes == 1  # ... and takes nothing
        queue.due.append(6)
        worker.wake()  # new work (a claim in another process, a NOTIFY)
        await queue.until(lambda: queue.handled == [5, 6])
        assert queue.takes == 2


async def test_a_retry_an_ended_item_scheduled_is_taken_when_due() -> None:
    # An item that reschedules itself ends without a wake: the loop's next_due() must see it.
    queue = Queue()
    async with running(queue.worker()) as worker:
        await queue.until(lambda: queue.due_reads >= 1)
        queue.due.append(8)
        queue.retry_at = 0.0  # already due
        assert worker.reserve()
        assert worker.submit(7, reserved=True)
        await queue.until(lambda: queue.handled == [7, 8])
        assert queue.takes == 2


async def test_due_items_left_by_a_full_take_are_taken_when_a_slot_frees() -> None:
    queue = Queue()
    queue.due = [1, 2, 3]
    release = asyncio.Event()

    async def slow(item: int) -> None:
        queue.handled.append(item)
        queue.changed.set()
        if item == 1:
            await release.wait()

    worker: QueueWorker[int] = QueueWorker(
        name="test", take=queue.take, handle=slow, next_due=queue.next_due, concurrency=1, idle=60
    )
    async with running(worker):
        await queue.until(lambda: queue.handled == [1])
        release.set()  # the only slot frees up: 2 and 3 are taken without any wake
        await queue.until(lambda: queue.handled == [1, 2, 3])
