"""The loop every store-backed queue runs: lease due rows, work them off, sleep until woken or due."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from typing import Any, Generic, TypeVar

from bot.errors import StoreUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class QueueWorker(Generic[T]):
    """Takes up to `concurrency` due items at a time and handles each in its own task.

    `take(limit)` leases items in the store; `handle(item)` must not raise (it owns its errors);
    `next_due()` says when something becomes due, so an idle worker sleeps exactly that long
    (at most `idle` seconds) unless `wake()` is called first.
    """

    def __init__(
        self,
        *,
        name: str,
        take: Callable[[int], Awaitable[Sequence[T]]],
        handle: Callable[[T], Coroutine[Any, Any, None]],
        next_due: Callable[[], Awaitable[float | None]],
        concurrency: int,
        idle: float,
        key: Callable[[T], Hashable] = id,
    ) -> None:
        self.name = name
        self._take = take
        self._handle = handle
        self._next_due = next_due
        self._concurrency = concurrency
        self.idle = idle
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Items being handled, by key: a lease that expires while its item waits (e.g. for the
        # account's request slot) must not hand the same item to this process a second time.
        self._key = key
        self._busy: set[Hashable] = set()
        # Slots held for items being leased to this process as they are written (see reserve).
        self._reserved = 0
        self._stopped = False
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def in_flight(self) -> int:
        """Items being handled now."""
        return len(self._tasks)

    def wake(self) -> None:
        """There is new work: look now."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop on the running event loop."""
        if self._loop is None:
            self._stopping = self._stopped = False
            self._loop = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, *, grace: float) -> None:
        """Take nothing more; give in-flight items `grace` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            await self._loop
            self._loop = None
        # Items leased to this process just before the stop (a take in progress, a hand-over)
        # still start: every item leased here is handled or handed back, never left to expire.
        deadline = time.monotonic() + grace
        while self._tasks or self._reserved:
            remaining = max(0.0, deadline - time.monotonic())
            if not self._tasks:
                # An item is being leased to us (reserve()); it is handed over in a moment.
                if not remaining:
                    break
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
                continue
            _, pending = await asyncio.wait(set(self._tasks), timeout=remaining)
            for task in pending:
                # Their leases stay in the store (or are handed back by the handler).
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._stopped = True

    def has_room(self) -> bool:
        """True when the loop runs and an item handed over now would start at once."""
        return (
            self._loop is not None
            and not self._stopping
            and len(self._tasks) + self._reserved < self._concurrency
        )

    def reserve(self) -> bool:
        """Hold a slot for an item about to be leased to this process; False if there is none.

        Every reservation ends in submit(reserved=True) or unreserve().
        """
        if not self.has_room():
            return False
        self._reserved += 1
        return True

    def unreserve(self) -> None:
        """Give back a slot reserve() held (the item was not leased to us after all)."""
        self._reserved -= 1
        self._wake.set()

    def submit(self, item: T, *, reserved: bool = False) -> bool:
        """Start handling an item this process already leased; False if it is being handled."""
        if reserved:
            self._reserved -= 1
            self._wake.set()
        item_key = self._key(item)
        if item_key in self._busy or self._stopped:
            # After stop() nobody would wait for it: its lease runs out and it is taken again.
            return False
        self._busy.add(item_key)
        task = asyncio.create_task(self._handle(item), name=f"{self.name}-item")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._done, item_key=item_key))
        return True

    async def drain(self) -> int:
        """Lease what is due and start handling it; return how many items were taken."""
        free = self._concurrency - len(self._tasks) - self._reserved
        if free <= 0 or self._stopping:
            return 0
        return sum(self.submit(item) for item in await self._take(free))

    def _done(self, task: asyncio.Task[None], *, item_key: Hashable) -> None:
        self._tasks.discard(task)
        self._busy.discard(item_key)
        # A free slot may mean more due work can be taken.
        self._wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            self._wake.clear()
            try:
                taken = await self.drain()
                backoff = 0.5
                if taken:
                    # Each item wakes the loop when it is done; the next pass asks again. A
                    # retry scheduled meanwhile is at most a second late.
                    delay = min(self.idle, 1.0)
                else:
                    next_due = await self._next_due()
                    delay = (
                        self.idle
                        if next_due is None
                        else max(0.05, min(self.idle, next_due - time.time() + 0.01))
                    )
            except StoreUnavailable as exc:
                logger.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                delay, backoff = backoff, min(backoff * 2, 30.0)
            except Exception:
                # The loop is a boundary like a listener: whatever a query raised (a database
                # that restarted, a dropped connection), the queue must keep being worked.
                logger.exception("%s: unexpected error; retrying in %.1fs", self.name, backoff)
                delay, backoff = backoff, min(backoff * 2, 30.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
