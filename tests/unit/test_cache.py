"""bot.cache.TtlCache: the ack path's per-workspace reads (key, allow-list, channels)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.cache import TtlCache


class Loader:
    """A load function that counts its calls and can be held until the test lets it answer."""

    def __init__(self, answers: list[str | None] | None = None) -> None:
        self.calls: list[str] = []
        self.answers = answers
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def __call__(self, key: str) -> str | None:
        self.calls.append(key)
        self.entered.set()
        await self.gate.wait()
        if self.answers is not None:
            return self.answers[len(self.calls) - 1]
        return f"{key}-v{len(self.calls)}"

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until an asynchronous condition holds (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_concurrent_misses_share_one_load() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    load.hold()
    readers = [asyncio.create_task(cache.get("T1")) for _ in range(25)]
    await asyncio.wait_for(load.entered.wait(), 5)
    await asyncio.sleep(0)  # every reader has reached the cache before the load answers
    load.gate.set()
    values = await asyncio.gather(*readers)
    assert values == ["T1-v1"] * 25
    assert load.calls == ["T1"]


async def test_keys_are_loaded_separately() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    assert await asyncio.gather(cache.get("T1"), cache.get("T2")) == ["T1-v1", "T2-v2"]
    assert await cache.get("T1") == "T1-v1"
    assert sorted(load.calls) == ["T1", "T2"]


async def test_a_value_is_reused_within_its_ttl() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    assert [await cache.get("T1") for _ in range(5)] == ["T1-v1"] * 5
    assert load.calls == ["T1"]


async def test_a_value_is_reloaded_once_its_ttl_has_passed() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=0.05)
    assert await cache.get("T1") == "T1-v1"

    async def reloaded() -> bool:
        return await cache.get("T1") == "T1-v2"

    # A change in the store is seen once the ttl has passed: the next read loads it again.
    await until(reloaded)
    assert load.calls == ["T1", "T1"]


async def test_none_is_never_cached_by_default() -> None:
    # "Nothing there yet" (a workspace not installed, no key) must not hide what appears next.
    load = Loader(answers=[None, None, "installed"])
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    assert await cache.get("T1") is None
    assert await cache.get("T1") is None
    assert await cache.get("T1") == "installed"
    assert await cache.get("T1") == "installed"
    assert len(load.calls) == 3


async def test_keep_none_caches_an_absent_row_until_ttl_or_forget() -> None:
    # Workspace settings: "no row" means the defaults, read once per ttl like any row.
    load = Loader(answers=[None, "written"])
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60, keep_none=True)
    assert await cache.get("T1") is None
    assert await cache.get("T1") is None
    assert len(load.calls) == 1
    cache.forget("T1")  # a change made in this process is seen at once
    assert await cache.get("T1") == "written"
    assert len(load.calls) == 2


async def test_forget_makes_the_next_get_reload() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    assert await cache.get("T1") == "T1-v1"
    cache.forget("T1")
    assert await cache.get("T1") == "T1-v2"
    assert await cache.get("T1") == "T1-v2"
    assert len(load.calls) == 2


async def test_forget_of_an_unknown_key_is_harmless() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    cache.forget("T1")
    assert await cache.get("T1") == "T1-v1"


async def test_a_load_in_flight_when_forget_is_called_is_not_kept() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    load.hold()
    early = asyncio.create_task(cache.get("T1"))
    await asyncio.wait_for(load.entered.wait(), 5)
    # The change is written (and forgotten) while a read that started before it is in flight.
    cache.forget("T1")
    load.gate.set()
    assert await early == "T1-v1"  # that reader gets what it read, but nobody after it does
    assert await cache.get("T1") == "T1-v2"
    assert await cache.get("T1") == "T1-v2"
    assert len(load.calls) == 2


async def test_a_reader_that_gives_up_does_not_stop_the_load_for_the_others() -> None:
    load = Loader()
    cache: TtlCache[str, str | None] = TtlCache(load, ttl=60)
    load.hold()
    impatient = asyncio.create_task(cache.get("T1"))
    patient = asyncio.create_task(cache.get("T1"))
    await asyncio.wait_for(load.entered.wait(), 5)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    load.gate.set()
    assert await patient == "T1-v1"
    assert await cache.get("T1") == "T1-v1"
    assert load.calls == ["T1"]


async def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    calls = 0

    async def flaky(key: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise ConnectionError("database restarting")
        return "ok"

    cache: TtlCache[str, str] = TtlCache(flaky, ttl=60)
    results = await asyncio.gather(cache.get("T1"), cache.get("T1"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.get("T1") == "ok"
    assert calls == 2


async def test_misses_after_a_forget_still_share_one_load() -> None:
    gates: list[asyncio.Event] = []
    started = asyncio.Condition()

    async def load(key: str) -> str:
        gate = asyncio.Event()
        gates.append(gate)
        async with started:
            started.notify_all()
        await gate.wait()
        return f"{key}-v{len(gates)}"

    async def loads(n: int) -> None:
        async with started:
            await asyncio.wait_for(started.wait_for(lambda: len(gates) >= n), 5)

    cache: TtlCache[str, str] = TtlCache(load, ttl=60)
    before_change = asyncio.create_task(cache.get("T1"))
    await loads(1)
    cache.forget("T1")  # a change was written while that read was in flight
    after_change = asyncio.create_task(cache.get("T1"))
    await loads(2)
    gates[0].set()
    await before_change
    for _ in range(3):
        await asyncio.sleep(0)  # the old load's callbacks run
    another = asyncio.create_task(cache.get("T1"))
    for _ in range(3):
        await asyncio.sleep(0)
    for gate in gates:
        gate.set()
    await asyncio.gather(after_change, another)
    # The second load was still in flight: the third reader should have waited for it.
    assert len(gates) == 2
