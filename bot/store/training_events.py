"""The training-event queue: stages reported by webhooks, /notify and `watch`, for the notifier."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from bot.model import TrainingEvent
from bot.store.lease import Lease, LeasedQueue
from bot.store.schema import training_event_from, training_events
from bot.store.wakeups import Work, announce

_e = training_events.c


class TrainingEventQueue(LeasedQueue[TrainingEvent]):
    """Reported stages, oldest first; each take counts an attempt."""

    lease = Lease(
        table=training_events,
        waiting=_e.done.is_(False),
        due_at=_e.next_attempt_at,
        owner=_e.lease_owner,
        expires_at=_e.lease_expires_at,
        order_by=(_e.received_at, _e.id),
    )

    def _item(self, row: sa.Row[Any]) -> TrainingEvent:
        return training_event_from(row)

    def _order(self, item: TrainingEvent) -> Any:
        return (item.received_at, item.id)

    def _taken(self) -> dict[str, Any]:
        return {"attempts": _e.attempts + 1}

    async def enqueue(
        self,
        *,
        workspace_id: str,
        training_id: str,
        stage: str | None,
        logs: str | None,
        source: str,
        channel_id: str | None = None,
        title: str | None = None,
        owner_id: str | None = None,
    ) -> int:
        """Queue a reported stage (webhook, /notify, poll) for the notifier."""
        now = time.time()
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.insert(training_events)
                .values(
                    workspace_id=workspace_id,
                    training_id=training_id,
                    stage=stage,
                    logs=(logs or "")[:2000] or None,
                    channel_id=channel_id,
                    title=title,
                    owner_id=owner_id,
                    source=source,
                    received_at=now,
                    done=False,
                    attempts=0,
                    next_attempt_at=now,
                )
                .returning(training_events.c.id)
            )
            event_id = int(result.scalar_one())
            await announce(conn, Work.TRAINING_EVENTS)
            return event_id

    async def finish(self, event_id: int) -> None:
        """Mark an event handled (whoever holds its lease)."""
        await self._end(event_id, done=True)

    async def retry(self, event_id: int, *, at: float) -> None:
        """Put an event back until `at` (whoever holds its lease)."""
        await self._end(event_id, next_attempt_at=at)

    async def _end(self, event_id: int, **values: Any) -> None:
        e = training_events.c
        values = {**self.lease.grant(None, None), **values}
        async with self.db.begin() as conn:
            await conn.execute(sa.update(training_events).where(e.id == event_id).values(**values))

    async def set_outcome(self, event_id: int, outcome: str) -> None:
        """Record why an event posted nothing (shown to whoever asked for it)."""
        e = training_events.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.update(training_events).where(e.id == event_id).values(outcome=outcome[:500])
            )

    async def result(self, event_id: int) -> tuple[bool, str | None]:
        """(done, outcome) of a queued event."""
        e = training_events.c
        async with self.db.reader.connect() as conn:
            row = (await conn.execute(sa.select(e.done, e.outcome).where(e.id == event_id))).first()
        return (bool(row.done), row.outcome) if row is not None else (True, None)
