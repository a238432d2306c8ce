"""The cancellation queue: claims (batched, one INSERT each), the worker's lease, outcomes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from bot.errors import StoreUnavailable
from bot.model import (
    ACTIVE_STATES,
    FINAL_STATES,
    QUEUED_STATES,
    WORKED_STATES,
    AuditAction,
    AuditEntry,
    Cancellation,
    Claim,
    Hold,
    ReportState,
    State,
)
from bot.store.audit import append_in, iso
from bot.store.engine import Database
from bot.store.lease import Lease, LeasedQueue
from bot.store.reports import ReportOutbox
from bot.store.schema import (
    ACTIVE_WHERE,
    cancellation_from,
    cancellations,
    notification_from,
    notifications,
)
from bot.store.wakeups import Work, announce

# Claims written together in one transaction, at most.
CLAIM_BATCH = 100

_c = cancellations.c


class CancellationQueue(LeasedQueue[Cancellation]):
    """Cancellations: a claim enqueues one, a worker takes it, calls ModelsLab, finishes it."""

    lease = Lease(
        table=cancellations,
        waiting=_c.state.in_(WORKED_STATES),
        due_at=_c.next_attempt_at,
        owner=_c.lease_owner,
        expires_at=_c.lease_expires_at,
        order_by=(_c.next_attempt_at, _c.id),
    )

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._claims: list[_PendingClaim] = []
        self._claim_flusher: asyncio.Task[None] | None = None
        self._claim_insert = (
            db.insert(cancellations)
            .on_conflict_do_nothing(
                index_elements=["workspace_id", "training_id", "dry_run"],
                index_where=sa.text(ACTIVE_WHERE),
            )
            .returning(*cancellations.c)
        )

    def _item(self, row: sa.Row[Any]) -> Cancellation:
        return cancellation_from(row)

    def _order(self, item: Cancellation) -> Any:
        return (item.next_attempt_at, item.id)

    async def enqueue(
        self,
        *,
        workspace_id: str,
        training_id: str,
        requested_by: str,
        origin: str,
        dry_run: bool = False,
        channel_id: str | None = None,
        response_url: str | None = None,
        now: float | None = None,
        lease_owner: str | None = None,
        lease_seconds: float = 0.0,
        on_abandoned: Callable[[Claim | None], None] | None = None,
        hold: Hold | None = None,
        held_until: float | None = None,
        owner_id: str | None = None,
    ) -> Claim:
        """Claim: insert a new cancellation unless an active one exists; return either.

        A new row can be leased to `lease_owner` from the start, so the worker that will call
        ModelsLab needs no second transaction to take it. When the caller is cancelled, the claim
        is withdrawn if its batch has not started, and `on_abandoned` is told what became of it
        (the claim once written, None if nothing was). Claims that arrive together share one
        transaction (one multi-row INSERT): under load a claim waits for the batch in progress,
        not for every claim before it. With `hold`, the row is held (it holds the claim) and
        becomes due for a worker at `held_until`.
        """
        now = time.time() if now is None else now
        if hold is not None:
            lease_owner = None
        values = {
            "lease_owner": lease_owner,
            "lease_expires_at": now + lease_seconds if lease_owner else None,
            "workspace_id": workspace_id,
            "training_id": training_id,
            "requested_by": requested_by,
            "origin": origin,
            "state": State.HELD if hold is not None else State.REQUESTED,
            "dry_run": dry_run,
            "requested_at": now,
            "updated_at": now,
            "attempts": 0,
            "next_attempt_at": held_until if hold is not None and held_until else now,
            "hold": hold.value if hold is not None else None,
            "held_until": held_until if hold is not None else None,
            "owner_id": owner_id,
            "channel_id": channel_id,
            "response_url": response_url,
            # Reported from the start: the notification shows "Cancelling…" while it runs.
            "report_state": ReportState.PENDING,
            "report_attempts": 0,
            "report_next_at": now,
        }
        pending = _PendingClaim(values, asyncio.get_running_loop().create_future())
        self._claims.append(pending)
        with self.db.priority.urgent():
            if self._claim_flusher is None or self._claim_flusher.done():
                self._claim_flusher = asyncio.create_task(self._flush_claims(), name="claims")
            try:
                return await asyncio.shield(pending.result)
            except asyncio.CancelledError:
                if pending in self._claims:
                    # Not yet in a batch: withdrawn, nothing is claimed behind the caller's back.
                    self._claims.remove(pending)
                    if on_abandoned is not None:
                        on_abandoned(None)
                elif on_abandoned is not None:
                    pending.result.add_done_callback(
                        functools.partial(_report_abandoned, on_abandoned)
                    )
                raise

    async def _flush_claims(self) -> None:
        while self._claims:
            batch, self._claims = self._claims[:CLAIM_BATCH], self._claims[CLAIM_BATCH:]
            try:
                await self._claim_batch(batch)
            except Exception as exc:  # noqa: BLE001 - handed to every caller still waiting
                for p in batch:
                    if not p.result.done():
                        p.result.set_exception(exc)

    async def _claim_batch(self, batch: list[_PendingClaim]) -> None:
        """Claim every row of `batch`, answering each caller as soon as its row is committed.

        The first of duplicate keys creates; its twins find that row. Rows are inserted in key
        order, so two instances' batches cannot deadlock on each other's keys (PostgreSQL).
        """
        c, n = cancellations.c, notifications.c
        key_columns = ("workspace_id", "training_id", "dry_run")
        waiting: dict[tuple[Any, ...], list[_PendingClaim]] = {}
        for pending in batch:
            waiting.setdefault(tuple(pending.values[k] for k in key_columns), []).append(pending)
        # The active row can turn final between our INSERT and SELECT; then the INSERT wins next time.
        for _ in range(5):
            if not waiting:
                return
            todo = [waiting[key][0].values for key in sorted(waiting)]
            found: dict[tuple[Any, ...], Claim] = {}
            async with self.db.begin(urgent=True) as conn:
                for row in await conn.execute(self._claim_insert, todo):
                    found[tuple(row._mapping[k] for k in key_columns)] = Claim(
                        cancellation_from(row), created=True
                    )
                if any(claim.cancellation.lease_owner is None for claim in found.values()):
                    # Not leased to a worker of this process: wake every process's (at commit).
                    await announce(conn, Work.CANCELLATIONS)
                missing = [key for key in waiting if key not in found]
                if missing:
                    existing = await conn.execute(
                        sa.select(cancellations).where(
                            sa.tuple_(c.workspace_id, c.training_id, c.dry_run).in_(missing),
                            c.state.in_(ACTIVE_STATES),
                        )
                    )
                    for row in existing:
                        found[tuple(row._mapping[k] for k in key_columns)] = Claim(
                            cancellation_from(row), created=False
                        )
                notes = {
                    (row.workspace_id, row.training_id): notification_from(row)
                    for row in await conn.execute(
                        sa.select(notifications).where(
                            sa.tuple_(n.workspace_id, n.training_id).in_(
                                list({key[:2] for key in found})
                            ),
                            n.message_ts.is_not(None),
                        )
                    )
                }
                await append_in(conn, self.db, _claim_entries(found, waiting, notes))
            # Committed (claims and their audit records): these callers get their answer.
            for key, claim in found.items():
                for position, pending in enumerate(waiting.pop(key)):
                    if not pending.result.done():
                        pending.result.set_result(
                            Claim(
                                claim.cancellation,
                                # A duplicate in the same batch found the row its twin created.
                                created=claim.created and position == 0,
                                notification=notes.get(key[:2]),
                            )
                        )
        if waiting:
            raise StoreUnavailable("the cancellation could not be claimed (too much contention)")

    async def mark_calling(
        self, cancellation_id: int, owner: str, *, lease_seconds: float
    ) -> Cancellation | None:
        """Record that a ModelsLab call is about to be sent; None if the lease was lost."""
        now = time.time()
        return await self._update_leased(
            cancellation_id,
            owner,
            audit=lambda row: audit_entry(row, AuditAction.CALL, f"attempt {row.attempts}"),
            state=State.CALLING,
            attempts=cancellations.c.attempts + 1,
            lease_expires_at=now + lease_seconds,
            updated_at=now,
        )

    async def finish(
        self,
        cancellation_id: int,
        owner: str,
        *,
        state: State,
        outcome: str,
        reason: str,
        report_owner: str | None = None,
        report_lease_until: float | None = None,
    ) -> Cancellation | None:
        """Record a final outcome; None if another worker holds the row now.

        With `report_owner`, the report is leased to it until `report_lease_until` in the same
        transaction unless a reporter holds it; the returned row says which happened.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        now = time.time()
        lease: dict[str, Any] = {}
        if report_owner is not None and report_lease_until is not None:
            c = cancellations.c
            free = ReportOutbox.lease.free(now)
            lease = {
                "report_lease_owner": sa.case((free, report_owner), else_=c.report_lease_owner),
                "report_lease_expires_at": sa.case(
                    (free, report_lease_until), else_=c.report_lease_expires_at
                ),
            }
        return await self._update_leased(
            cancellation_id,
            owner,
            audit=lambda row: audit_entry(row, AuditAction.OUTCOME, _outcome_detail(row)),
            state=state,
            outcome=outcome,
            reason=reason,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            report_state=ReportState.PENDING,
            report_next_at=now,
            # No reporter of this process took the report: any process's may.
            wake=Work.REPORTS if not lease else None,
            **lease,
        )

    async def retry(
        self,
        cancellation_id: int,
        owner: str,
        *,
        at: float,
        outcome: str,
        reason: str,
        may_have_reached: bool = False,
    ) -> Cancellation | None:
        """Put a cancellation back in the queue until `at` (e.g. after a 429)."""
        return await self._update_leased(
            cancellation_id,
            owner,
            audit=lambda row: audit_entry(
                row,
                AuditAction.RESCHEDULED,
                f"{_outcome_detail(row)}; next attempt at {iso(row.next_attempt_at)}",
            ),
            state=State.REQUESTED,
            outcome=outcome,
            reason=reason,
            next_attempt_at=at,
            may_have_reached=may_have_reached,
            updated_at=time.time(),
            lease_owner=None,
            lease_expires_at=None,
            report_state=ReportState.PENDING,
            report_next_at=time.time(),
        )

    async def end_hold(
        self,
        cancellation_id: int,
        *,
        by: str | None,
        approve: bool = False,
        outcome: str = "",
        reason: str = "",
        owner: str | None = None,
        now: float | None = None,
    ) -> Cancellation | None:
        """End a hold: approved (requested now) or withdrawn with `outcome`; None if not held.

        Only a row still held changes, so the first decision wins (an undo against the worker
        whose window just ended, an approval against expiry). With `owner`, only while that
        worker holds the row's lease (expiry); a person's decision ends any worker's lease.
        """
        now = time.time() if now is None else now
        c = cancellations.c
        where = [c.id == cancellation_id, c.state == State.HELD]
        if owner is not None:
            where.append(c.lease_owner == owner)
        common: dict[str, Any] = {
            "decided_by": by,
            "updated_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
            "report_state": ReportState.PENDING,
            "report_next_at": now,
        }
        if approve:
            where += [c.hold == Hold.APPROVAL, c.held_until > now]
            values = {**common, "state": State.REQUESTED, "next_attempt_at": now}
        else:
            values = {
                **common,
                "state": State.WITHDRAWN,
                "outcome": outcome,
                "reason": reason,
                "finished_at": now,
            }
        async with self.db.begin(urgent=True) as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(*where)
                    .values(**values)
                    .returning(*cancellations.c)
                )
            ).first()
            if row is None:
                return None
            ended = cancellation_from(row)
            await append_in(conn, self.db, [_hold_entry(ended, by, approve=approve)])
            # Approved: a worker anywhere may take it now; either way there is news to show.
            await announce(conn, Work.CANCELLATIONS if approve else Work.REPORTS)
        return ended

    async def _update_leased(
        self,
        cancellation_id: int,
        owner: str,
        *,
        audit: Callable[[Cancellation], AuditEntry],
        extra_where: tuple[Any, ...] = (),
        wake: Work | None = None,
        **values: Any,
    ) -> Cancellation | None:
        """Update a row this worker holds and append its audit record, in one transaction."""
        c = cancellations.c
        async with self.db.begin() as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(
                        c.id == cancellation_id,
                        c.lease_owner == owner,
                        c.state.in_(WORKED_STATES),
                        *extra_where,
                    )
                    .values(**values)
                    .returning(*cancellations.c)
                )
            ).first()
            if row is None:
                return None
            updated = cancellation_from(row)
            await append_in(conn, self.db, [audit(updated)])
            if wake is not None:
                await announce(conn, wake)
        return updated

    async def get(self, cancellation_id: int) -> Cancellation | None:
        """Return one cancellation by id."""
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(cancellations).where(cancellations.c.id == cancellation_id)
                )
            ).first()
        return cancellation_from(row) if row is not None else None

    async def recent(self, workspace_id: str, *, limit: int = 10) -> list[Cancellation]:
        """Return the workspace's latest cancellations, newest first."""
        c = cancellations.c
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(cancellations)
                .where(c.workspace_id == workspace_id)
                .order_by(c.requested_at.desc(), c.id.desc())
                .limit(limit)
            )
            return [cancellation_from(r) for r in rows]

    async def search(
        self,
        workspace_id: str,
        *,
        training_id: str | None = None,
        requested_by: str | None = None,
        since: float | None = None,
        limit: int = 10,
    ) -> tuple[list[Cancellation], int]:
        """The newest cancellations matching the filters (at most `limit`), and how many match."""
        c = cancellations.c
        where = [c.workspace_id == workspace_id]
        if training_id is not None:
            where.append(c.training_id == training_id)
        if requested_by is not None:
            where.append(c.requested_by == requested_by)
        if since is not None:
            where.append(c.requested_at >= since)
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(cancellations)
                .where(*where)
                .order_by(c.requested_at.desc(), c.id.desc())
                .limit(limit)
            )
            found = [cancellation_from(r) for r in rows]
            total = (await conn.execute(sa.select(sa.func.count()).where(*where))).scalar_one()
        return found, int(total)

    async def latest(self, workspace_id: str, training_id: str) -> Cancellation | None:
        """Return the newest cancellation of a training (real ones before dry runs)."""
        c = cancellations.c
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(cancellations)
                    .where(c.workspace_id == workspace_id, c.training_id == training_id)
                    .order_by(c.dry_run, c.requested_at.desc(), c.id.desc())
                    .limit(1)
                )
            ).first()
        return cancellation_from(row) if row is not None else None

    async def queue_depths(self, *, now: float | None = None) -> tuple[int, int]:
        """(cancellations waiting for a retry or an expired lease, reports not yet delivered)."""
        now = time.time() if now is None else now
        c = cancellations.c
        async with self.db.reader.connect() as conn:
            recoveries = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        c.state.in_(QUEUED_STATES),
                        sa.or_(c.outcome.is_not(None), c.attempts > 0, c.lease_expires_at < now),
                    )
                )
            ).scalar_one()
            backlog = (
                await conn.execute(
                    sa.select(sa.func.count()).where(c.report_state == ReportState.PENDING)
                )
            ).scalar_one()
        return int(recoveries), int(backlog)


def audit_entry(row: Cancellation, action: AuditAction, detail: str | None = None) -> AuditEntry:
    """An audit record of a step in a cancellation's life, on behalf of its requester."""
    return AuditEntry(
        workspace_id=row.workspace_id,
        actor=row.requested_by,
        origin=row.origin.value,
        action=action,
        detail=detail,
        training_id=row.training_id,
        cancellation_id=row.id,
        thread=row.report_permalink,
    )


# How a hold ended (the service's outcome words) as the audit log's action.
_HOLD_ENDINGS = {
    "undone": AuditAction.UNDONE,
    "denied": AuditAction.DENIED,
    "expired": AuditAction.EXPIRED,
}


def _hold_entry(row: Cancellation, by: str | None, *, approve: bool) -> AuditEntry:
    """An approval, undo, denial or expiry: by whoever decided (expiry: the requester's row)."""
    action = AuditAction.APPROVED if approve else _HOLD_ENDINGS.get(row.outcome or "")
    entry = audit_entry(
        row, action or AuditAction.OUTCOME, None if approve else _outcome_detail(row)
    )
    return replace(entry, actor=by) if by else entry


def _outcome_detail(row: Cancellation) -> str:
    """state, outcome and ModelsLab's answer, e.g. `cancelled: accepted; ModelsLab said: …`."""
    words = f"{row.state.value}: {row.outcome}" + (" (dry run)" if row.dry_run else "")
    return f"{words}; ModelsLab said: {row.reason}" if row.reason else words


def _claim_entries(
    found: dict[tuple[Any, ...], Claim],
    waiting: dict[tuple[Any, ...], list[_PendingClaim]],
    notes: dict[tuple[Any, ...], Any],
) -> list[AuditEntry]:
    """One record per caller answered in this transaction: its claim, or the one it found."""
    entries = []
    for key, claim in found.items():
        row = claim.cancellation
        note = notes.get(key[:2])
        for position, pending in enumerate(waiting[key]):
            created = claim.created and position == 0
            values = pending.values
            entries.append(
                AuditEntry(
                    workspace_id=row.workspace_id,
                    actor=values["requested_by"],
                    origin=values["origin"],
                    action=AuditAction.REQUEST if created else AuditAction.DUPLICATE_REQUEST,
                    detail=("dry run" if row.dry_run else None)
                    if created
                    else f"answered by cancellation {row.id} ({row.state.value})",
                    training_id=row.training_id,
                    cancellation_id=row.id,
                    thread=note.permalink if note is not None else None,
                )
            )
            if created and row.state is State.HELD:
                until = iso(row.held_until) if row.held_until else "unknown"
                entries.append(
                    replace(
                        entries[-1],
                        action=AuditAction.HELD,
                        detail=f"{row.hold}: until {until}",
                    )
                )
    return entries


def _report_abandoned(
    callback: Callable[[Claim | None], None], done: asyncio.Future[Claim]
) -> None:
    written = not done.cancelled() and done.exception() is None
    callback(done.result() if written else None)


@dataclass(eq=False)
class _PendingClaim:
    values: dict[str, Any]
    result: asyncio.Future[Claim]
