"""The lease every store-backed queue is worked through, and the verbs all queues share.

A queue is the rows of a table that are waiting in it. Workers take due rows under a lease
(owner, expiry): nobody else takes a leased row until its lease expires (its worker died) or it
is given back. Every queue answers to the same verbs, with the same meaning:

``enqueue(...)``            put an item in the queue (a cancellation's claim, a training event)
``take(owner, …)``          lease up to `limit` due items nobody holds, in the queue's order
``take_one(id, owner, …)``  lease one given item, if nobody holds it
``finish(id, …)``           the item is done: record what came of it and end the lease
``retry(id, …, at=…)``      end the lease and put the item back until `at`
``release(id, owner)``      give a leased item back untouched (shutdown): anyone may take it now
``next_due()``              when the earliest waiting item becomes due
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa

if TYPE_CHECKING:
    from bot.store.engine import Database

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    """Where a queue keeps its items and their lease: a table, and columns of it."""

    table: sa.Table
    waiting: sa.ColumnElement[bool]  # the rows in the queue (finished ones are not)
    due_at: sa.Column[Any]  # when a waiting row is next due
    owner: sa.Column[Any]
    expires_at: sa.Column[Any]
    order_by: tuple[sa.ColumnElement[Any], ...]  # which due rows are taken first

    def free(self, now: float) -> sa.ColumnElement[bool]:
        """Rows nobody holds a live lease on."""
        return sa.or_(self.expires_at.is_(None), self.expires_at < now)

    def grant(self, owner: str | None, until: float | None) -> dict[str, Any]:
        """The column values that lease a row to `owner` until `until` (None, None: to nobody)."""
        return {self.owner.name: owner, self.expires_at.name: until}


class LeasedQueue(abc.ABC, Generic[T]):
    """The verbs every queue shares (take, take_one, release, next_due) over its Lease."""

    lease: ClassVar[Lease]
    # Whether take_one waits for the item's due time (a report is delivered at once).
    take_one_when_due: ClassVar[bool] = True

    def __init__(self, db: Database) -> None:
        self.db = db

    @abc.abstractmethod
    def _item(self, row: sa.Row[Any]) -> T:
        """A row of the queue's table as the item workers handle."""

    @abc.abstractmethod
    def _order(self, item: T) -> Any:
        """The order a take hands its items out in."""

    def _taken(self) -> dict[str, Any]:
        """Columns set, beside the lease, whenever an item is taken."""
        return {}

    def _due(self) -> Any:
        """When a waiting row next needs a worker (next_due's minimum)."""
        # Due, or leased to a worker that may have died: whichever is later (a row in hand is no
        # work for anyone until its lease runs out). Scalar max(a, b) is greatest() on PostgreSQL.
        pairwise_max = sa.func.greatest if self.db.dialect == "postgresql" else sa.func.max
        return pairwise_max(self.lease.due_at, sa.func.coalesce(self.lease.expires_at, 0))

    async def take(
        self, owner: str, *, lease_seconds: float, limit: int = 10, now: float | None = None
    ) -> list[T]:
        """Lease up to `limit` items that are due and not leased by a live worker."""
        now = time.time() if now is None else now
        lease = self.lease
        rows = await self._lease_due(
            where=[lease.waiting, lease.due_at <= now, lease.free(now)],
            limit=limit,
            values={**lease.grant(owner, now + lease_seconds), **self._taken()},
        )
        return sorted((self._item(r) for r in rows), key=self._order)

    async def _lease_due(
        self, *, where: list[Any], limit: int, values: dict[str, Any]
    ) -> list[sa.Row[Any]]:
        """Select due rows (skipping rows another transaction holds) and lease them, atomically."""
        table = self.lease.table
        due = sa.select(table.c.id).where(*where).order_by(*self.lease.order_by).limit(limit)
        if self.db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        async with self.db.begin() as conn:
            ids = list((await conn.execute(due)).scalars())
            if not ids:
                return []
            result = await conn.execute(
                sa.update(table).where(table.c.id.in_(ids)).values(**values).returning(*table.c)
            )
            return list(result)

    async def take_one(
        self, item_id: int, owner: str, *, lease_seconds: float, now: float | None = None
    ) -> T | None:
        """Lease one item if it is waiting and nobody holds it; None if it is not."""
        now = time.time() if now is None else now
        lease = self.lease
        table = lease.table
        where = [table.c.id == item_id, lease.waiting]
        if self.take_one_when_due:
            where.append(lease.due_at <= now)
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(table)
                    .where(*where, lease.free(now))
                    .values(**lease.grant(owner, now + lease_seconds), **self._taken())
                    .returning(*table.c)
                )
            ).first()
        return self._item(row) if row is not None else None

    async def release(self, item_id: int, owner: str) -> None:
        """Give a leased item back without an outcome (shutdown), so any instance can take it."""
        lease = self.lease
        async with self.db.begin() as conn:
            await conn.execute(
                sa.update(lease.table)
                .where(lease.table.c.id == item_id, lease.owner == owner)
                .values(**lease.grant(None, None))
            )

    async def next_due(self) -> float | None:
        """When the next waiting item becomes due."""
        return await earliest(self.db, self._due(), self.lease.waiting)


async def earliest(db: Database, when: Any, where: Any) -> float | None:
    """The smallest `when` among rows matching `where` (when a queue next has work)."""
    async with db.reader.connect() as conn:
        value = (await conn.execute(sa.select(sa.func.min(when)).where(where))).scalar()
    return float(value) if value is not None else None
