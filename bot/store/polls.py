"""Status polls of watched trainings: a schedule on the notifications table, not a leased queue.

A poll is claimed by moving its time (`schedule(..., previous=...)`): of several instances that
see it due, one moves it and polls; if that instance dies, the poll is due again at the new time.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from bot.model import Notification
from bot.store.engine import Database
from bot.store.lease import earliest
from bot.store.schema import notification_from, notifications
from bot.store.wakeups import Work, announce


class PollSchedule:
    """When each watched training is next polled."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def due(self, *, limit: int = 20, now: float | None = None) -> list[Notification]:
        """Watched trainings whose status poll is due."""
        now = time.time() if now is None else now
        n = notifications.c
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications)
                .where(n.watching.is_(True), n.poll_next_at <= now, n.message_ts.is_not(None))
                .order_by(n.poll_next_at)
                .limit(limit)
            )
            return [notification_from(r) for r in rows]

    async def schedule(
        self,
        workspace_id: str,
        training_id: str,
        *,
        next_at: float | None,
        failures: int = 0,
        previous: float | None = None,
    ) -> bool:
        """Set (or with None, stop) a watched training's next poll; guarded so one instance wins."""
        n = notifications.c
        values: dict[str, Any] = {
            "poll_next_at": next_at,
            "poll_failures": failures,
            "watching": next_at is not None,
        }
        conditions = [n.workspace_id == workspace_id, n.training_id == training_id]
        if previous is not None:
            conditions.append(n.poll_next_at == previous)
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.update(notifications).where(*conditions).values(**values)
            )
            if result.rowcount and next_at is not None and previous is None:
                # A new watch: a worker elsewhere may sleep past its first poll; let it look.
                # (A poller rescheduling its own poll, `previous` set, knows already.)
                await announce(conn, Work.POLLS)
        return bool(result.rowcount)

    async def next_due(self) -> float | None:
        """When the next watched training is due for a poll."""
        n = notifications.c
        return await earliest(self.db, n.poll_next_at, n.watching.is_(True))
