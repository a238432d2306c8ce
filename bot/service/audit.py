"""The audit trail: export, verify, refusals, GET /audit tokens; plain values (no SQL, no Slack, no HTTP).

Records are written by the store inside the transaction of the change they record; this module
reads them back, recomputes the chain, and records what changes nothing else (a refusal).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

from bot.model import (
    AUDIT_GENESIS,
    AuditAction,
    AuditEntry,
    AuditRecord,
    audit_hash,
)
from bot.service.workspaces import hash_token
from bot.store import Store
from bot.store.audit import iso

# The export's columns, in order (CSV header; JSON lines carry the same keys).
FIELDS = (
    "seq",
    "at",
    "workspace",
    "actor",
    "origin",
    "action",
    "detail",
    "training_id",
    "cancellation_id",
    "thread",
    "imported",
    "prev_hash",
    "hash",
)
_PERIOD = re.compile(r"(\d{1,4})([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class Break:
    """The first record where a chain is not what was written."""

    workspace_id: str
    seq: int
    kind: str  # changed | removed | inserted
    message: str


@dataclass(frozen=True)
class Verification:
    """What verify checked, and the first break it found (None: intact)."""

    workspaces: int
    records: int
    broken: Break | None


def parse_since(text: str) -> str:
    """An ISO date or date-time (UTC unless it says otherwise) as the log's time; ValueError."""
    value = text.strip()
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not an ISO date: {value[:40]!r} (use 2026-12-01 or 2026-12-01T08:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return iso(when.timestamp())


def parse_period(text: str) -> float | None:
    """`24h`, `7d`, `30m`, `2w` as seconds; None when it is not a period."""
    match = _PERIOD.fullmatch(text.strip().lower())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class AuditTrail:
    """Reads and checks the audit log; records refusals; answers GET /audit's bearer tokens."""

    def __init__(
        self,
        *,
        store: Store,
        audit_token: str | None = None,
        single_workspace_id: str | None = None,
        per_workspace_tokens: bool = False,
    ) -> None:
        self.store = store
        self.audit_token = audit_token
        self.single_workspace_id = single_workspace_id
        self.per_workspace_tokens = per_workspace_tokens

    @property
    def served(self) -> bool:
        """Whether GET /audit answers at all (single workspace: only with AUDIT_TOKEN set)."""
        return self.per_workspace_tokens or bool(self.audit_token)

    async def workspace_for_token(self, token: str) -> str | None:
        """The workspace a bearer token reads, or None for a wrong one."""
        if not token:
            return None
        if self.per_workspace_tokens:
            row = await self.store.workspaces.by_audit_token_hash(hash_token(token))
            return row.workspace_id if row is not None and row.installed else None
        if self.audit_token and hmac.compare_digest(token.encode(), self.audit_token.encode()):
            return self.single_workspace_id
        return None

    def export(
        self,
        *,
        workspace_id: str | None = None,
        since: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AuditRecord]:
        """Records oldest first (streamed: constant memory whatever the log's size)."""
        return self.store.audit.records(
            workspace_id=workspace_id, since=since, after=after, limit=limit
        )

    async def verify(self, workspace_id: str | None = None) -> Verification:
        """Recompute every chain (or one); name the first changed, inserted or removed record."""
        targets = (
            [workspace_id] if workspace_id is not None else await self.store.audit.workspace_ids()
        )
        checked = 0
        for target in targets:
            count, broken = await self._verify_one(target)
            checked += count
            if broken is not None:
                return Verification(len(targets), checked, broken)
        return Verification(len(targets), checked, None)

    async def _verify_one(self, workspace_id: str) -> tuple[int, Break | None]:
        expected, prev, count = 1, AUDIT_GENESIS, 0

        def broken(seq: int, kind: str, message: str) -> tuple[int, Break]:
            return count, Break(workspace_id, seq, kind, f"workspace {workspace_id}: {message}")

        async for record in self.store.audit.records(workspace_id=workspace_id):
            count += 1
            if record.seq < expected:
                return broken(record.seq, "inserted", f"record {record.seq} appears twice")
            if record.seq > expected:
                return broken(
                    expected,
                    "removed",
                    f"record {expected} was removed (after {expected - 1} comes {record.seq})",
                )
            if record.hash != record.expected_hash():
                if _hashes_as(record, record.seq - 1):
                    return broken(
                        record.seq - 1,
                        "inserted",
                        f"record {record.seq - 1} was inserted (the records after it were "
                        "renumbered)",
                    )
                if _hashes_as(record, record.seq + 1):
                    return broken(
                        record.seq,
                        "removed",
                        f"a record before {record.seq} was removed (the records after it "
                        "were renumbered)",
                    )
                return broken(
                    record.seq,
                    "changed",
                    f"record {record.seq} was changed (its hash does not match its content)",
                )
            if record.prev_hash != prev:
                return broken(
                    record.seq,
                    "inserted",
                    f"record {record.seq} does not follow record {record.seq - 1} (inserted, or "
                    f"record {record.seq - 1} was rewritten)",
                )
            prev, expected = record.hash, expected + 1
        last = expected - 1
        head = await self.store.audit.head(workspace_id)
        if head is None:
            if last:
                return broken(last, "inserted", "the chain has no head: it was not written here")
            return count, None
        head_seq, head_hash = head
        if head_seq > last:
            return broken(
                last + 1,
                "removed",
                f"records {last + 1} to {head_seq} were removed (the chain ends at {last})",
            )
        if head_seq < last:
            return broken(
                head_seq + 1,
                "inserted",
                f"record {head_seq + 1} was inserted after the last one written ({head_seq})",
            )
        if head_hash != prev:
            return broken(last, "changed", f"record {last} was rewritten (the head differs)")
        return count, None

    async def record_refusal(
        self,
        *,
        workspace_id: str,
        user_id: str,
        training_id: str | None,
        origin: str,
        rule: str,
        reason: str,
    ) -> None:
        """Record a refused request (it changes nothing else, so it stands alone)."""
        await self.store.audit.append(
            AuditEntry(
                workspace_id=workspace_id,
                actor=user_id,
                action=AuditAction.REFUSAL,
                origin=origin,
                detail=f"{rule}: {reason}" if reason else rule,
                training_id=training_id,
            )
        )

    async def has_token(self, workspace_id: str) -> bool:
        """Whether the workspace has issued a GET /audit token (OAuth)."""
        row = await self.store.workspaces.get(workspace_id)
        return bool(row is not None and row.audit_token_hash)


def _hashes_as(record: AuditRecord, seq: int) -> bool:
    """Whether the record's hash is that of its content numbered `seq` (it was renumbered)."""
    return audit_hash(record.prev_hash, {**record.content(), "seq": seq}) == record.hash
