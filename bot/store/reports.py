"""The report outbox: each cancellation's report to Slack, leased to a reporter, at least once."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from bot.model import AuditAction, AuditEntry, Cancellation, ReportState
from bot.store.audit import append_in
from bot.store.lease import Lease, LeasedQueue
from bot.store.schema import cancellation_from, cancellations

_c = cancellations.c


class ReportOutbox(LeasedQueue[Cancellation]):
    """Reports owed to Slack: pending whenever a cancellation moves on, taken by a reporter.

    Nothing is enqueued here: claiming, finishing and retrying a cancellation make its report
    pending. A report is finished as waiting (shown as it stands, the cancellation still runs),
    delivered or undeliverable.
    """

    lease = Lease(
        table=cancellations,
        waiting=_c.report_state == ReportState.PENDING,
        due_at=_c.report_next_at,
        owner=_c.report_lease_owner,
        expires_at=_c.report_lease_expires_at,
        order_by=(_c.report_next_at, _c.id),
    )
    # The terminal delivers its report at once, even one waiting for its retry time.
    take_one_when_due = False

    def _item(self, row: sa.Row[Any]) -> Cancellation:
        return cancellation_from(row)

    def _order(self, item: Cancellation) -> Any:
        return item.id

    async def update(self, cancellation_id: int, owner: str, **values: Any) -> bool:
        """Record report progress (posted ts, rendered state); False if the lease was lost."""
        c = cancellations.c
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.update(cancellations)
                .where(c.id == cancellation_id, c.report_lease_owner == owner)
                .values(**values)
            )
        return bool(result.rowcount)

    async def finish(
        self,
        cancellation_id: int,
        owner: str,
        *,
        seen: Cancellation,
        state: ReportState,
        error: str | None = None,
        failed: bool = False,
    ) -> bool:
        """End the report as `state` (waiting, delivered, undeliverable) unless the row moved on.

        `seen` is the row as the report was taken: if the cancellation changed since, its report
        stays pending for another pass. False when that happened or the lease was lost.
        """
        return await self._end(
            cancellation_id, owner, seen=seen, report_state=state, error=error, failed=failed
        )

    async def retry(
        self,
        cancellation_id: int,
        owner: str,
        *,
        seen: Cancellation,
        at: float,
        error: str,
        keep_posting: bool = False,
    ) -> bool:
        """A failed pass: the report stays pending until `at` (counted against its budget).

        `keep_posting`: the step being posted stays marked, so the next pass looks for its post.
        """
        return await self._end(
            cancellation_id,
            owner,
            seen=seen,
            report_state=ReportState.PENDING,
            next_at=at,
            error=error,
            failed=True,
            keep_posting=keep_posting,
        )

    async def _end(
        self,
        cancellation_id: int,
        owner: str,
        *,
        seen: Cancellation,
        report_state: ReportState,
        next_at: float | None = None,
        error: str | None = None,
        failed: bool = False,
        keep_posting: bool = False,
    ) -> bool:
        """End the report lease; a row that changed meanwhile stays pending for another pass."""
        c = cancellations.c
        values: dict[str, Any] = {
            "report_lease_owner": None,
            "report_lease_expires_at": None,
            "report_error": error,
            # Only failed passes count against the retry budget.
            "report_attempts": c.report_attempts + 1 if failed else 0,
        }
        if not keep_posting:
            values.update(report_posting=None, report_posting_at=None)
        if next_at is not None:
            values["report_next_at"] = next_at
        async with self.db.begin() as conn:
            result = await conn.execute(
                sa.update(cancellations)
                .where(
                    c.id == cancellation_id,
                    c.report_lease_owner == owner,
                    # updated_at moves on every transition, even requested → calling → requested.
                    c.updated_at == seen.updated_at,
                )
                .values(report_state=report_state, **values)
                .returning(*cancellations.c)
            )
            ended = result.first()
            if ended is not None and report_state in _AUDITED:
                row = cancellation_from(ended)
                await append_in(conn, self.db, [_report_entry(row, report_state, error)])
            if ended is None:
                await conn.execute(
                    sa.update(cancellations)
                    .where(c.id == cancellation_id, c.report_lease_owner == owner)
                    .values(
                        {
                            **values,
                            "report_state": ReportState.PENDING,
                            "report_next_at": time.time(),
                        }
                    )
                )
        return ended is not None


# The report outcomes the audit log records: delivered, or given up.
_AUDITED = {
    ReportState.DELIVERED: AuditAction.REPORT_DELIVERED,
    ReportState.UNDELIVERABLE: AuditAction.REPORT_GIVEN_UP,
}


def _report_entry(row: Cancellation, state: ReportState, error: str | None) -> AuditEntry:
    return AuditEntry(
        workspace_id=row.workspace_id,
        actor=row.requested_by,
        origin=row.origin.value,
        action=_AUDITED[state],
        detail=error or (f"in {row.report_channel}" if row.report_channel else None),
        training_id=row.training_id,
        cancellation_id=row.id,
        thread=row.report_permalink,
    )
