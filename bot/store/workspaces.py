"""Workspaces: settings, allow-lists, admin events, uninstall and secret rotation; bot metadata."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from bot.model import AuditAction, AuditEntry, ReportState, Workspace
from bot.store.audit import append_in
from bot.store.engine import Database
from bot.store.schema import (
    admin_events,
    allow_entries,
    bot_meta,
    cancellations,
    workspace_from,
    workspaces,
)

# The admin_events table's words for admin changes (kept for its readers and for old rows).
ADMIN_EVENT_NAMES = {
    AuditAction.KEY_SET: "set_key",
    AuditAction.KEY_REMOVED: "remove_key",
    AuditAction.ALLOW_LIST_ADDED: "allow",
    AuditAction.ALLOW_LIST_REMOVED: "deny",
    AuditAction.AUDIT_CHANNEL_SET: "set_audit_channel",
    AuditAction.NOTIFY_CHANNEL_SET: "set_notification_channel",
    AuditAction.WEBHOOK_TOKEN_ROTATED: "rotate_webhook_token",
    AuditAction.ENV_IMPORTED: "import_env",
    AuditAction.POLICY_SET: "set_safety",
}
AUDIT_ACTION_FOR_EVENT = {name: action for action, name in ADMIN_EVENT_NAMES.items()}


class WorkspaceTable:
    """Each workspace's row and allow-list, and the admin changes made to them."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def ensure(
        self,
        workspace_id: str,
        *,
        enterprise_id: str | None = None,
        name: str | None = None,
        installed: bool | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Create the workspace row if missing; update what is given (and audit it, if told)."""
        async with self.db.begin() as conn:
            await self._ensure(conn, workspace_id, enterprise_id, name, installed)
            await self._record(conn, audit)

    async def _ensure(
        self,
        conn: Any,
        workspace_id: str,
        enterprise_id: str | None = None,
        name: str | None = None,
        installed: bool | None = None,
    ) -> None:
        now = time.time()
        values: dict[str, Any] = {"updated_at": now}
        if enterprise_id is not None:
            values["enterprise_id"] = enterprise_id
        if name is not None:
            values["name"] = name
        if installed is not None:
            values["installed"] = installed
        stmt = (
            self.db.insert(workspaces)
            .values(
                workspace_id=workspace_id,
                created_at=now,
                installed=bool(installed),
                **{k: v for k, v in values.items() if k != "installed"},
            )
            .on_conflict_do_update(index_elements=["workspace_id"], set_=values)
        )
        await conn.execute(stmt)

    async def _record(self, conn: Any, audit: AuditEntry | None) -> None:
        """An admin change's admin event and audit record, on the change's connection."""
        if audit is None:
            return
        await conn.execute(
            sa.insert(admin_events).values(
                workspace_id=audit.workspace_id,
                actor=audit.actor,
                action=ADMIN_EVENT_NAMES.get(audit.action, audit.action.value),
                detail=audit.detail or "",
                at=time.time(),
            )
        )
        await append_in(conn, self.db, [audit])

    async def get(self, workspace_id: str) -> Workspace | None:
        """Return one workspace's row."""
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(workspaces.c.workspace_id == workspace_id)
                )
            ).first()
        return workspace_from(row) if row is not None else None

    async def all(self) -> list[tuple[Workspace, int]]:
        """Return every workspace with the size of its allow-list."""
        a = allow_entries.c
        count = (
            sa.select(sa.func.count())
            .where(a.workspace_id == workspaces.c.workspace_id)
            .scalar_subquery()
        )
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(workspaces, count.label("allowed")).order_by(workspaces.c.workspace_id)
            )
            return [(workspace_from(r), int(r._mapping["allowed"])) for r in rows]

    async def update(
        self, workspace_id: str, *, audit: AuditEntry | None = None, **values: Any
    ) -> None:
        """Set workspace columns (the row is created if missing); audit the change, if told."""
        async with self.db.begin() as conn:
            await self._ensure(conn, workspace_id)
            await conn.execute(
                sa.update(workspaces)
                .where(workspaces.c.workspace_id == workspace_id)
                .values(updated_at=time.time(), **values)
            )
            await self._record(conn, audit)

    async def by_audit_token_hash(self, token_hash: str) -> Workspace | None:
        """Return the workspace whose GET /audit token hashes to this value."""
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(workspaces.c.audit_token_hash == token_hash)
                )
            ).first()
        return workspace_from(row) if row is not None else None

    async def by_webhook_hash(self, token_hash: str) -> Workspace | None:
        """Return the workspace whose webhook token hashes to this value."""
        async with self.db.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(workspaces.c.webhook_token_hash == token_hash)
                )
            ).first()
        return workspace_from(row) if row is not None else None

    async def allow_list(self, workspace_id: str) -> list[str]:
        """Return a workspace's stored allow-list entries."""
        a = allow_entries.c
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(a.entry_id)
                .where(a.workspace_id == workspace_id)
                .order_by(a.added_at, a.entry_id)
            )
            return [str(r) for r in rows.scalars()]

    async def allow(self, workspace_id: str, entries: list[str], *, by: str) -> list[str]:
        """Add entries to a workspace's allow-list; return those that were new (audited)."""
        now = time.time()
        added = []
        async with self.db.begin() as conn:
            await self._ensure(conn, workspace_id)
            for entry in entries:
                stmt = (
                    self.db.insert(allow_entries)
                    .values(workspace_id=workspace_id, entry_id=entry, added_by=by, added_at=now)
                    .on_conflict_do_nothing(index_elements=["workspace_id", "entry_id"])
                    # rowcount is not reliable for upserts on every driver; RETURNING is.
                    .returning(allow_entries.c.entry_id)
                )
                if (await conn.execute(stmt)).first() is not None:
                    added.append(entry)
            if added:
                await self._record(
                    conn,
                    AuditEntry(
                        workspace_id, by, AuditAction.ALLOW_LIST_ADDED, detail=", ".join(added)
                    ),
                )
        return added

    async def deny(self, workspace_id: str, entries: list[str], *, by: str) -> list[str]:
        """Remove entries from a workspace's allow-list; return those that were there (audited)."""
        a = allow_entries.c
        removed = []
        async with self.db.begin() as conn:
            for entry in entries:
                result = await conn.execute(
                    sa.delete(allow_entries).where(
                        a.workspace_id == workspace_id, a.entry_id == entry
                    )
                )
                if result.rowcount:
                    removed.append(entry)
            if removed:
                await self._record(
                    conn,
                    AuditEntry(
                        workspace_id, by, AuditAction.ALLOW_LIST_REMOVED, detail=", ".join(removed)
                    ),
                )
        return removed

    async def record_admin_event(
        self, workspace_id: str, *, actor: str, action: str, detail: str = ""
    ) -> None:
        """Record an admin change that is only an event (never a secret), and audit it."""
        audited = AUDIT_ACTION_FOR_EVENT.get(action) or AuditAction(action)
        async with self.db.begin() as conn:
            await self._record(
                conn, AuditEntry(workspace_id, actor, audited, detail=detail or None)
            )

    async def admin_events(self, workspace_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Return a workspace's latest admin changes, newest first."""
        e = admin_events.c
        async with self.db.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(admin_events)
                .where(e.workspace_id == workspace_id)
                .order_by(e.at.desc(), e.id.desc())
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    async def forget(self, workspace_id: str, *, by: str = "slack") -> None:
        """Uninstall: drop key, allow-list, settings, webhook token and undelivered reports; keep
        history and the audit log (which records the uninstall)."""
        c = cancellations.c
        async with self.db.begin() as conn:
            await conn.execute(
                sa.delete(allow_entries).where(allow_entries.c.workspace_id == workspace_id)
            )
            await conn.execute(
                sa.update(workspaces)
                .where(workspaces.c.workspace_id == workspace_id)
                .values(
                    installed=False,
                    key_ciphertext=None,
                    key_hint=None,
                    key_set_at=None,
                    key_set_by=None,
                    audit_channel=None,
                    notify_channel=None,
                    webhook_token_hash=None,
                    webhook_token_ciphertext=None,
                    audit_token_hash=None,
                    updated_at=time.time(),
                )
            )
            await conn.execute(
                sa.update(cancellations)
                .where(
                    c.workspace_id == workspace_id,
                    c.report_state.in_((ReportState.PENDING, ReportState.WAITING)),
                )
                .values(report_state=ReportState.DROPPED, response_url=None)
            )
            await conn.execute(
                sa.update(cancellations)
                .where(c.workspace_id == workspace_id)
                .values(response_url=None)
            )
            await append_in(
                conn,
                self.db,
                [
                    AuditEntry(
                        workspace_id,
                        by,
                        AuditAction.UNINSTALLED,
                        detail="tokens, key, allow-list and settings deleted",
                    )
                ],
            )

    async def rotate_ciphertexts(self, rotate: Any) -> int:
        """Re-encrypt every stored ciphertext with `rotate` (MultiFernet.rotate); return the count."""
        targets: list[tuple[sa.Table, str, tuple[str, ...]]] = [
            (workspaces, "workspace_id", ("key_ciphertext", "webhook_token_ciphertext")),
            (cancellations, "id", ("response_url",)),
        ]
        oauth = sa.MetaData()
        oauth_tables: tuple[tuple[str, tuple[str, ...]], ...] = (
            (
                "slack_installations",
                (
                    "bot_token",
                    "bot_refresh_token",
                    "user_token",
                    "user_refresh_token",
                    "incoming_webhook_url",
                ),
            ),
            ("slack_bots", ("bot_token", "bot_refresh_token")),
        )
        for name, cols in oauth_tables:
            table = sa.Table(
                name,
                oauth,
                sa.Column("id", sa.Integer, primary_key=True),
                *(sa.Column(col, sa.Text) for col in cols),
            )
            targets.append((table, "id", cols))
        count = 0
        async with self.db.begin() as conn:
            for table, key, cols in targets:
                rows = await conn.execute(sa.select(table.c[key], *(table.c[col] for col in cols)))
                for row in rows.all():
                    updates = {col: rotate(row._mapping[col]) for col in cols if row._mapping[col]}
                    if updates:
                        await conn.execute(
                            sa.update(table)
                            .where(table.c[key] == row._mapping[key])
                            .values(**updates)
                        )
                        count += len(updates)
        return count


class MetaTable:
    """Bot metadata: small values by key (e.g. the single workspace's id)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        """Return a bot metadata value."""
        async with self.db.reader.connect() as conn:
            value = (
                await conn.execute(sa.select(bot_meta.c.value).where(bot_meta.c.key == key))
            ).scalar()
        return str(value) if value is not None else None

    async def set(self, key: str, value: str) -> None:
        """Set a bot metadata value."""
        stmt = (
            self.db.insert(bot_meta)
            .values(key=key, value=value)
            .on_conflict_do_update(index_elements=["key"], set_={"value": value})
        )
        async with self.db.begin() as conn:
            await conn.execute(stmt)
