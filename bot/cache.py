"""A small time-bounded cache for the ack path's per-workspace reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values loaded at most once per `ttl` seconds per key; concurrent misses share one load.

    None (nothing there yet) is not kept unless `keep_none`: by default what appears, such as a
    workspace just installed, is seen at once.
    """

    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        *,
        ttl: float,
        max_size: int = 10_000,
        keep_none: bool = False,
    ):
        self._load = load
        self._ttl = ttl
        self._keep_none = keep_none
        self._max_size = max_size
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        """Return the cached value, or load it (once, however many callers are waiting)."""
        hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        loading = self._loading.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._fill(key))  # a Task: _fill checks it is current
            self._loading[key] = loading
            loading.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(loading)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        # Only this load's own entry: a newer one may have started after a forget().
        if self._loading.get(key) is done:
            del self._loading[key]

    async def _fill(self, key: K) -> V:
        started = time.monotonic()
        value = await self._load(key)
        current = self._loading.get(key) is asyncio.current_task()
        if not current or (value is None and not self._keep_none):
            # forget() was called during the load, or nothing is there yet: do not keep it.
            return value
        if len(self._values) >= self._max_size:
            now = time.monotonic()
            self._values = {k: v for k, v in self._values.items() if now - v[0] < self._ttl}
            if len(self._values) >= self._max_size:
                self._values.clear()
        # Stamped with the load's start: a change written during the load is not hidden for long.
        self._values[key] = (started, value)
        return value

    def forget(self, key: K) -> None:
        """Drop a key after a change made here, so the next read sees it at once."""
        self._values.pop(key, None)
        # A load that started before the change is no longer current, so it is not kept.
        self._loading.pop(key, None)

    def clear(self) -> None:
        """Drop every key (what they were loaded for has changed)."""
        self._values.clear()
        self._loading.clear()
