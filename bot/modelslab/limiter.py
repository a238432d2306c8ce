"""One ModelsLab account's small request queue, shared by cancels and polls: cancels go first."""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


def _slot_key(api_key: str) -> str:
    # Only a digest of the key is kept as a dictionary key.
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class KeyLimiter:
    """Per API key: at most `slots` requests at once; a poll waits while any cancel runs or waits."""

    def __init__(self, *, slots: int = 2) -> None:
        self.slots = slots
        self._busy: dict[str, int] = defaultdict(int)
        self._cancels: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Condition()

    def cancel_pending(self, api_key: str) -> bool:
        """True while a cancel on this key is queued or in flight."""
        return self._cancels[_slot_key(api_key)] > 0

    @asynccontextmanager
    async def cancel(self, api_key: str) -> AsyncIterator[None]:
        """Hold a slot for a cancel (ahead of every poll)."""
        key = _slot_key(api_key)
        async with self._changed:
            self._cancels[key] += 1
            try:
                await self._changed.wait_for(lambda: self._busy[key] < self.slots)
            except BaseException:
                self._cancels[key] -= 1
                self._changed.notify_all()
                raise
            self._busy[key] += 1
        try:
            yield
        finally:
            async with self._changed:
                self._busy[key] -= 1
                self._cancels[key] -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def poll(self, api_key: str) -> AsyncIterator[None]:
        """Hold a slot for a status poll once no cancel on this key is queued or running."""
        key = _slot_key(api_key)
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._cancels[key] == 0 and self._busy[key] < self.slots
            )
            self._busy[key] += 1
        try:
            yield
        finally:
            async with self._changed:
                self._busy[key] -= 1
                self._changed.notify_all()
