"""The audit log: append-only records, hash-chained per workspace, written inside the change's
own transaction (design §7).

`append_in(conn, db, entries)` is called by every store verb that changes something worth
recording, on the connection of that change: the record exists exactly when the change does.
Appending locks the workspace's head row (an upsert that bumps its sequence number), so two
processes appending for one workspace on PostgreSQL wait for each other and never fork the chain;
on SQLite BEGIN IMMEDIATE already serialises writers. Heads are locked last in a transaction and
in workspace order, so no two transactions wait on each other's heads.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.model import AUDIT_GENESIS, AuditEntry, AuditRecord, audit_hash
from bot.store.engine import Database
from bot.store.schema import audit_heads, audit_log, audit_record_from

# Rows read per query while streaming (keyset pages: constant memory, no long-lived cursor).
PAGE = 1000
# Longest detail kept (ModelsLab's answers can be long).
DETAIL_CHARS = 1000

_a = audit_log.c


def iso(ts: float) -> str:
    """A Unix time as the audit log's time: ISO 8601 UTC with microseconds (sorts as text)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def append_in(
    conn: AsyncConnection,
    db: Database,
    entries: Iterable[AuditEntry],
    *,
    now: float | None = None,
    imported: bool = False,
) -> list[AuditRecord]:
    """Append records on `conn`, inside the caller's transaction; return them as chained."""
    by_workspace: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_workspace.setdefault(entry.workspace_id, []).append(entry)
    if not by_workspace:
        return []
    at = iso(time.time() if now is None else now)
    known = _known_heads(db)
    written: list[AuditRecord] = []
    for workspace_id in sorted(by_workspace):
        batch = by_workspace[workspace_id]
        records = await _chain_after_known(conn, workspace_id, batch, known, at, imported)
        if records is None:
            records = await _chain(conn, db, workspace_id, batch, at=at, imported=imported)
            await conn.execute(
                sa.update(audit_heads)
                .where(audit_heads.c.workspace_id == workspace_id)
                .values(hash=records[-1].hash)
            )
        await conn.execute(sa.insert(audit_log), [_row(r) for r in records])
        # Only a guess for next time: checked against the head row before it is used.
        known[workspace_id] = (records[-1].seq, records[-1].hash)
        written.extend(records)
    return written


def _known_heads(db: Database) -> dict[str, tuple[int, str]]:
    """The heads this process last wrote, per workspace (kept on the Database object)."""
    heads: dict[str, tuple[int, str]] | None = getattr(db, "_audit_heads", None)
    if heads is None:
        heads = {}
        db._audit_heads = heads  # type: ignore[attr-defined]
    return heads


async def _chain_after_known(
    conn: AsyncConnection,
    workspace_id: str,
    batch: Sequence[AuditEntry],
    known: dict[str, tuple[int, str]],
    at: str,
    imported: bool,
) -> list[AuditRecord] | None:
    """Chain after the head this process last wrote, if it is still the head; None if not.

    One UPDATE both checks and moves (and locks) the head, where reading it first would take
    a second statement: this is on the claim's path.
    """
    guess = known.get(workspace_id)
    if guess is None:
        return None
    last, prev = guess
    records = []
    for offset, entry in enumerate(batch):
        record = seal(entry, seq=last + 1 + offset, at=at, prev_hash=prev, imported=imported)
        records.append(record)
        prev = record.hash
    h = audit_heads.c
    moved = await conn.execute(
        sa.update(audit_heads)
        .where(h.workspace_id == workspace_id, h.seq == guess[0], h.hash == guess[1])
        .values(seq=records[-1].seq, hash=records[-1].hash)
    )
    if moved.rowcount != 1:
        known.pop(workspace_id, None)
        return None
    return records


async def _chain(
    conn: AsyncConnection,
    db: Database,
    workspace_id: str,
    batch: Sequence[AuditEntry],
    *,
    at: str,
    imported: bool,
) -> list[AuditRecord]:
    """Reserve len(batch) sequence numbers on the (locked) head; chain the records after it."""
    n = len(batch)
    head = db.insert(audit_heads).values(workspace_id=workspace_id, seq=n, hash=AUDIT_GENESIS)
    # The head's hash is not in SET: RETURNING gives the new seq and the previous hash.
    row = (
        await conn.execute(
            head.on_conflict_do_update(
                index_elements=["workspace_id"], set_={"seq": audit_heads.c.seq + n}
            ).returning(audit_heads.c.seq, audit_heads.c.hash)
        )
    ).one()
    last, prev = int(row[0]), str(row[1])
    records = []
    for offset, entry in enumerate(batch):
        record = seal(entry, seq=last - n + 1 + offset, at=at, prev_hash=prev, imported=imported)
        records.append(record)
        prev = record.hash
    return records


def seal(
    entry: AuditEntry, *, seq: int, at: str, prev_hash: str, imported: bool = False
) -> AuditRecord:
    """An entry as the chain's record number `seq` after `prev_hash`, with its hash."""
    detail = entry.detail[:DETAIL_CHARS] if entry.detail else entry.detail
    unsealed = AuditRecord(
        seq=seq,
        at=at,
        workspace_id=entry.workspace_id,
        actor=entry.actor,
        origin=entry.origin,
        action=str(entry.action),
        detail=detail,
        training_id=entry.training_id,
        cancellation_id=entry.cancellation_id,
        thread=entry.thread,
        imported=imported,
        prev_hash=prev_hash,
        hash="",
    )
    return replace(unsealed, hash=audit_hash(prev_hash, unsealed.content()))


def _row(record: AuditRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in AuditRecord.__dataclass_fields__}


class AuditLog:
    """Reads the audit log, and appends records that stand alone (a refusal changes nothing else)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, *entries: AuditEntry, now: float | None = None) -> list[AuditRecord]:
        """Append records in a transaction of their own."""
        async with self.db.begin() as conn:
            return await append_in(conn, self.db, entries, now=now)

    async def records(
        self,
        *,
        workspace_id: str | None = None,
        since: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[AuditRecord]:
        """Stream records oldest first, one page in memory at a time.

        With a workspace, in chain order (and `after`: sequence numbers above it); without,
        in the order they were written. `since`: records at or after that ISO time.
        """
        where: list[Any] = []
        if workspace_id is not None:
            where.append(_a.workspace_id == workspace_id)
            key = _a.seq
        else:
            key = _a.id
        if since is not None:
            where.append(_a.at >= since)
        last = after if (after is not None and workspace_id is not None) else None
        left = limit
        while left is None or left > 0:
            page = PAGE if left is None else min(PAGE, left)
            stmt = sa.select(audit_log).where(*where)
            if last is not None:
                stmt = stmt.where(key > last)
            stmt = stmt.order_by(key).limit(page)
            async with self.db.reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            for row in rows:
                yield audit_record_from(row)
            if len(rows) < page:
                return
            last = rows[-1]._mapping[key.name]
            if left is not None:
                left -= len(rows)

    async def head(self, workspace_id: str) -> tuple[int, str] | None:
        """The workspace's chain head: (last sequence number, its hash), or None."""
        h = audit_heads.c
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(sa.select(h.seq, h.hash).where(h.workspace_id == workspace_id))
            ).first()
        return (int(row[0]), str(row[1])) if row is not None else None

    async def workspace_ids(self) -> list[str]:
        """Every workspace with a chain (a head or a record)."""
        async with self.db.reader.connect() as conn:
            heads = set((await conn.execute(sa.select(audit_heads.c.workspace_id))).scalars())
            logged = set((await conn.execute(sa.select(_a.workspace_id).distinct())).scalars())
        return sorted(heads | logged)
