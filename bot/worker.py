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

    A take is a write (a lease), so the loop takes only when there may be something to take: when
    woken, when its sleep ends, when `next_due()` says something is due, or when a slot frees up
    after a take that filled every slot. An item that ends otherwise only has the loop ask
    `next_due()` again (a read), since that item may have scheduled its own retry.
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
        # Whether the next pass takes (a lease, written) or only asks next_due() (read).
        self._take_wanted = True
        # The last take filled every free slot, so due items may be waiting for one.
        self._starved = False

    @property
    def in_flight(self) -> int:
        """Items being handled now."""
        return len(self._tasks)

    def wake(self) -> None:
        """There is new work: look now."""
        self._take_wanted = True
        self._wake.set()

    def start(self) -> None:
        """Start the loop on the running event loop."""
        if self._loop is None:
            self._stopping = self._stopped = False
            self._take_wanted = True
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
        self._slot_freed()

    def submit(self, item: T, *, reserved: bool = False) -> bool:
        """Start handling an item this process already leased; False if it is being handled."""
        if reserved:
            # The reserved slot becomes the item's: nothing new to take, but stop() may wait.
            self._reserved -= 1
            if self._stopping:
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
            self._starved = free <= 0
            return 0
        items = await self._take(free)
        self._starved = len(items) >= free
        return sum(self.submit(item) for item in items)

    def _done(self, task: asyncio.Task[None], *, item_key: Hashable) -> None:
        self._tasks.discard(task)
        self._busy.discard(item_key)
        self._slot_freed()

    def _slot_freed(self) -> None:
        if self._starved:
            self._take_wanted = True  # due work may have waited for this slot
        # Otherwise only ask when the next item is due: this one may have rescheduled itself.
        self._wake.set()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            self._wake.clear()
            take, self._take_wanted = self._take_wanted, False
            try:
                taken = await self.drain() if take else 0
                backoff = 0.5
                if taken:
                    # Each item wakes the loop when it is done; the next pass asks again. A
                    # retry scheduled meanwhile is at most a second late.
                    delay = min(self.idle, 1.0)
                else:
                    next_due = await self._next_due()
                    if not take and next_due is not None and next_due <= time.time():
                        self._take_wanted = True  # due now (a retry, an expired lease): take it
                        continue
                    delay = (
                        self.idle
                        if next_due is None
                        else max(0.05, min(self.idle, next_due - time.time() + 0.01))
                    )
            except StoreUnavailable as exc:
                logger.warning("%s: %s; retrying in %.1fs", self.name, exc, backoff)
                delay, backoff = backoff, min(backoff * 2, 30.0)
                self._take_wanted = True
            except Exception:
                # The loop is a boundary like a listener: whatever a query raised (a database
                # that restarted, a dropped connection), the queue must keep being worked.
                logger.exception("%s: unexpected error; retrying in %.1fs", self.name, backoff)
                delay, backoff = backoff, min(backoff * 2, 30.0)
                self._take_wanted = True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                self._take_wanted = True  # the poll: the safety net for wake-ups that never came
