"""KeyLimiter: one ModelsLab account's small request queue — cancels go ahead of status polls,
polls pause while a cancel is pending, and the slots bound how many requests run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bot.modelslab import KeyLimiter

KEY = "good-key"
OTHER_KEY = "another-account-key"


async def settle() -> None:
    """Let every ready task run until each one blocks again (no wall-clock waiting)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait for a condition the tasks under test make true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the limiter never let the expected request in"
        await asyncio.sleep(0)


class Recorder:
    """Tasks that hold a limiter slot until released, recording the order they got in."""

    def __init__(self, limiter: KeyLimiter) -> None:
        self.limiter = limiter
        self.order: list[str] = []
        self.running: set[str] = set()
        self.most_at_once = 0
        self.release: dict[str, asyncio.Event] = {}

    def start(self, kind: str, name: str, key: str = KEY) -> asyncio.Task[None]:
        self.release[name] = asyncio.Event()
        return asyncio.create_task(self._hold(kind, name, key), name=name)

    async def _hold(self, kind: str, name: str, key: str) -> None:
        slot = self.limiter.cancel(key) if kind == "cancel" else self.limiter.poll(key)
        async with slot:
            self.order.append(name)
            self.running.add(name)
            self.most_at_once = max(self.most_at_once, len(self.running))
            await self.release[name].wait()
            self.running.discard(name)


async def test_a_cancel_queued_behind_a_poll_goes_before_an_earlier_queued_poll() -> None:
    rec = Recorder(KeyLimiter(slots=1))
    first = rec.start("poll", "poll-1")
    await until(lambda: rec.order == ["poll-1"])
    waiting_poll = rec.start("poll", "poll-2")  # queued first …
    await settle()
    cancel = rec.start("cancel", "cancel")  # … the cancel queued after it
    await settle()
    assert rec.order == ["poll-1"]
    rec.release["poll-1"].set()
    await until(lambda: len(rec.order) == 2)
    assert rec.order == ["poll-1", "cancel"]
    await settle()
    assert rec.order == ["poll-1", "cancel"], "a poll ran while the cancel held the only slot"
    rec.release["cancel"].set()
    await until(lambda: len(rec.order) == 3)
    rec.release["poll-2"].set()
    await asyncio.gather(first, waiting_poll, cancel)
    assert rec.order == ["poll-1", "cancel", "poll-2"]


async def test_polls_wait_while_a_cancel_is_in_flight_even_with_a_free_slot() -> None:
    limiter = KeyLimiter(slots=2)
    rec = Recorder(limiter)
    assert not limiter.cancel_pending(KEY)
    cancel = rec.start("cancel", "cancel")
    await until(lambda: rec.order == ["cancel"])
    assert limiter.cancel_pending(KEY)
    poll = rec.start("poll", "poll")
    await settle()
    assert rec.order == ["cancel"], "a poll took the free slot while a cancel was in flight"
    rec.release["cancel"].set()
    await until(lambda: rec.order == ["cancel", "poll"])
    assert not limiter.cancel_pending(KEY)
    rec.release["poll"].set()
    await asyncio.gather(cancel, poll)


async def test_a_queued_cancel_counts_as_pending_and_holds_back_new_polls() -> None:
    limiter = KeyLimiter(slots=1)
    rec = Recorder(limiter)
    holder = rec.start("poll", "poll-1")
    await until(lambda: rec.order == ["poll-1"])
    assert not limiter.cancel_pending(KEY)
    cancel = rec.start("cancel", "cancel")
    await settle()
    assert rec.order == ["poll-1"] and limiter.cancel_pending(KEY)  # queued, not yet running
    rec.release["poll-1"].set()
    await until(lambda: rec.order == ["poll-1", "cancel"])
    assert limiter.cancel_pending(KEY)  # in flight
    rec.release["cancel"].set()
    await asyncio.gather(holder, cancel)
    assert not limiter.cancel_pending(KEY)


async def test_a_cancel_given_up_while_queued_stops_holding_back_polls() -> None:
    limiter = KeyLimiter(slots=1)
    rec = Recorder(limiter)
    holder = rec.start("poll", "poll-1")
    await until(lambda: rec.order == ["poll-1"])
    cancel = rec.start("cancel", "cancel")
    waiting_poll = rec.start("poll", "poll-2")
    await settle()
    assert limiter.cancel_pending(KEY)
    cancel.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancel
    assert not limiter.cancel_pending(KEY)
    rec.release["poll-1"].set()
    await until(lambda: rec.order == ["poll-1", "poll-2"])
    rec.release["poll-2"].set()
    await asyncio.gather(holder, waiting_poll)


@pytest.mark.parametrize("kind", ["poll", "cancel"])
async def test_slots_bound_how_many_requests_run_at_once(kind: str) -> None:
    limiter = KeyLimiter(slots=2)
    rec = Recorder(limiter)
    tasks = [rec.start(kind, f"{kind}-{i}") for i in range(6)]
    await until(lambda: len(rec.order) == 2)
    await settle()
    assert len(rec.running) == 2
    for i in range(6):
        name = f"{kind}-{i}"
        await until(lambda name=name: name in rec.running)
        rec.release[name].set()
    await asyncio.gather(*tasks)
    assert rec.most_at_once == 2 and len(rec.order) == 6


async def test_a_mix_of_cancels_and_polls_never_exceeds_the_slots() -> None:
    limiter = KeyLimiter(slots=2)
    rec = Recorder(limiter)
    names = [("cancel" if i % 3 == 0 else "poll", f"r{i}") for i in range(9)]
    tasks = [rec.start(kind, name) for kind, name in names]
    for _ in names:
        await until(lambda: bool(rec.running))
        await settle()
        assert len(rec.running) <= 2
        rec.release[next(iter(rec.running))].set()
        await settle()
    await asyncio.gather(*tasks)
    assert rec.most_at_once <= 2 and len(rec.order) == 9
    # Every cancel got in before any of the polls queued with it.
    assert set(rec.order[:3]) == {"r0", "r3", "r6"}


async def test_accounts_do_not_share_slots_or_cancel_priority() -> None:
    limiter = KeyLimiter(slots=1)
    rec = Recorder(limiter)
    cancel = rec.start("cancel", "cancel-a", KEY)
    await until(lambda: rec.order == ["cancel-a"])
    poll = rec.start("poll", "poll-b", OTHER_KEY)
    await until(lambda: "poll-b" in rec.running)
    assert limiter.cancel_pending(KEY) and not limiter.cancel_pending(OTHER_KEY)
    rec.release["cancel-a"].set()
    rec.release["poll-b"].set()
    await asyncio.gather(cancel, poll)


def test_the_key_itself_is_not_kept() -> None:
    limiter = KeyLimiter()
    limiter.cancel_pending("sk-live-verysecretkey123")
    assert not any("verysecret" in k for k in (*limiter._busy, *limiter._cancels))
