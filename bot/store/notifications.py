"""Training notifications: the one message per training, its reservation, stage and rendering."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bot.model import ACTIVE_STATES, FINISHED_STAGES, Notification
from bot.store.engine import Database
from bot.store.schema import cancellations, notification_from, notifications


class NotificationTable:
    """The notification message of each training the bot posted."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(
        self,
        *,
        workspace_id: str,
        training_id: str,
        channel_id: str,
        message_ts: str,
        owner_id: str | None = None,
        title: str | None = None,
        stage: str | None = None,
    ) -> None:
        """Record (or move) the notification message for a training."""
        now = time.time()
        values = {
            "channel_id": channel_id,
            "message_ts": message_ts,
            "owner_id": owner_id,
            "title": title,
            "stage": stage,
            "updated_at": now,
        }
        stmt = (
            self.db.insert(notifications)
            .values(workspace_id=workspace_id, training_id=training_id, created_at=now, **values)
            .on_conflict_do_update(index_elements=["workspace_id", "training_id"], set_=values)
        )
        async with self.db.begin() as conn:
            await conn.execute(stmt)

    async def get(self, workspace_id: str, training_id: str) -> Notification | None:
        """Return the notification for a training, if the bot posted one."""
        n = notifications.c
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(notifications).where(
                        n.workspace_id == workspace_id,
                        n.training_id == training_id,
                        n.message_ts.is_not(None),
                    )
                )
            ).first()
        return notification_from(row) if row is not None else None

    async def for_trainings(
        self, workspace_id: str, training_ids: Sequence[str]
    ) -> dict[str, Notification]:
        """The posted notifications of these trainings, by training id (one query)."""
        if not training_ids:
            return {}
        n = notifications.c
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications).where(
                    n.workspace_id == workspace_id,
                    n.training_id.in_(sorted(set(training_ids))),
                    n.message_ts.is_not(None),
                )
            )
            return {row.training_id: notification_from(row) for row in rows}

    async def reserve(
        self,
        *,
        workspace_id: str,
        training_id: str,
        channel_id: str,
        owner_id: str | None = None,
        title: str | None = None,
        watching: bool = False,
        stale_after: float = 60.0,
    ) -> bool:
        """Reserve the one notification of a training before posting it; False if it exists.

        A reservation left by a process that died before posting is taken over after `stale_after`.
        """
        now = time.time()
        n = notifications.c
        stmt = (
            self.db.insert(notifications)
            .values(
                workspace_id=workspace_id,
                training_id=training_id,
                channel_id=channel_id,
                message_ts=None,
                owner_id=owner_id,
                title=title,
                created_at=now,
                updated_at=now,
                stage_rank=0,
                watching=watching,
                poll_next_at=now if watching else None,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "training_id"])
        )
        async with self.db.begin() as conn:
            if (await conn.execute(stmt)).rowcount:
                return True
            taken = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.message_ts.is_(None),
                    n.updated_at < now - stale_after,
                )
                .values(channel_id=channel_id, updated_at=now)
            )
            return bool(taken.rowcount)

    async def posted(
        self, workspace_id: str, training_id: str, *, channel_id: str, message_ts: str
    ) -> None:
        """Record where the reserved notification was posted."""
        n = notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(channel_id=channel_id, message_ts=message_ts, updated_at=time.time())
            )

    async def set_permalink(self, workspace_id: str, training_id: str, permalink: str) -> None:
        """Record the posted notification's permalink (once, after posting)."""
        n = notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(permalink=permalink)
            )

    async def drop_reservation(self, workspace_id: str, training_id: str) -> None:
        """Forget a reservation whose post failed, so a later event can try again."""
        n = notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.delete(notifications).where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.message_ts.is_(None),
                )
            )

    async def advance_stage(
        self,
        workspace_id: str,
        training_id: str,
        *,
        stage: str,
        rank: int,
        eta: str | None,
        final: bool,
        started: bool,
    ) -> bool:
        """Move a notification to a later stage (never back); True if it changed."""
        n = notifications.c
        now = time.time()
        values: dict[str, Any] = {"stage": stage, "stage_rank": rank, "updated_at": now}
        if eta is not None:
            values["eta"] = eta
        if final:
            values["finished_at"] = now
            values["watching"] = False
            values["poll_next_at"] = None
        if started:
            values["started_at"] = sa.func.coalesce(n.started_at, now)
        # A repeat of the current stage may only bring a newer ETA.
        refresh_eta = (
            sa.and_(n.stage_rank == rank, n.stage == stage) if eta is not None else sa.false()
        )
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    sa.or_(n.stage.is_(None), n.stage_rank < rank, refresh_eta),
                    # A finished training stays finished.
                    sa.or_(n.stage.is_(None), n.stage.not_in(FINISHED_STAGES)),
                )
                .values(**values)
            )
        return bool(result.rowcount)

    async def mark_final_reported(
        self, workspace_id: str, training_id: str, *, reported: bool = True
    ) -> bool:
        """Record that the "finished" reply is being posted (True only the first time), or undo it."""
        n = notifications.c
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.final_reported.is_(not reported),
                )
                .values(final_reported=reported)
            )
        return bool(result.rowcount)

    async def set_rendered(self, workspace_id: str, training_id: str, key: str) -> None:
        """Remember what the notification message last showed."""
        n = notifications.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(rendered=key)
            )

    async def cancellable(self, workspace_id: str, *, limit: int = 10) -> list[Notification]:
        """Return notifications whose training has no active cancellation, newest first."""
        n, c = notifications.c, cancellations.c
        active = sa.exists().where(
            c.workspace_id == n.workspace_id,
            c.training_id == n.training_id,
            c.state.in_(ACTIVE_STATES),
            c.dry_run.is_(False),
        )
        finished = n.stage.in_(FINISHED_STAGES)
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications)
                .where(
                    n.workspace_id == workspace_id, ~active, sa.or_(n.stage.is_(None), ~finished)
                )
                .order_by(n.created_at.desc())
                .limit(limit)
            )
            return [notification_from(r) for r in rows]
