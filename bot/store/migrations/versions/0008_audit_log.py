"""The audit log (append-only, hash-chained per workspace), its chain heads, the GET /audit token.

Seeded from what is already stored, marked imported: every cancellation's request (and its
outcome, once final) and every admin event, in time order, so an upgraded deployment's chain
starts complete.

Revision ID: 0008
Revises: 0007
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from bot.model import AUDIT_GENESIS, AuditAction, AuditEntry
from bot.store.audit import iso, seal
from bot.store.workspaces import AUDIT_ACTION_FOR_EVENT

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_CHUNK = 1000


def upgrade() -> None:
    audit_log = op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("training_id", sa.String(64)),
        sa.Column("cancellation_id", sa.Integer),
        sa.Column("thread", sa.Text),
        sa.Column("imported", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.UniqueConstraint("workspace_id", "seq", name="uq_audit_log_workspace_seq"),
    )
    op.create_index("ix_audit_log_training", "audit_log", ["workspace_id", "training_id"])
    op.create_index("ix_audit_log_at", "audit_log", ["workspace_id", "at"])
    audit_heads = op.create_table(
        "audit_heads",
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_audit_heads"),
    )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("audit_token_hash", sa.String(64)))
        batch.create_unique_constraint("uq_workspaces_audit_token_hash", ["audit_token_hash"])
    _seed(op.get_bind(), audit_log, audit_heads)


def _seed(bind: Any, audit_log: sa.Table, audit_heads: sa.Table) -> None:
    """Chain what is stored already, per workspace in time order, as imported records."""
    events: list[tuple[str, float, int, AuditEntry]] = []
    for row in bind.execute(sa.text("SELECT * FROM cancellations ORDER BY id")).mappings():
        base = {
            "workspace_id": row["workspace_id"],
            "actor": row["requested_by"],
            "origin": row["origin"],
            "training_id": row["training_id"],
            "cancellation_id": row["id"],
            "thread": row["report_permalink"],
        }
        request = AuditEntry(
            action=AuditAction.REQUEST, detail="dry run" if row["dry_run"] else None, **base
        )
        events.append((row["workspace_id"], float(row["requested_at"]), 0, request))
        if row["state"] in ("cancelled", "rejected", "failed") and row["finished_at"]:
            words = f"{row['state']}: {row['outcome']}" + (" (dry run)" if row["dry_run"] else "")
            detail = f"{words}; ModelsLab said: {row['reason']}" if row["reason"] else words
            outcome = AuditEntry(action=AuditAction.OUTCOME, detail=detail, **base)
            events.append((row["workspace_id"], float(row["finished_at"]), 1, outcome))
    for row in bind.execute(sa.text("SELECT * FROM admin_events ORDER BY id")).mappings():
        action = AUDIT_ACTION_FOR_EVENT.get(row["action"])
        entry = AuditEntry(
            workspace_id=row["workspace_id"],
            actor=row["actor"],
            action=action if action is not None else AuditAction.POLICY_SET,
            detail=(row["detail"] or None)
            if action is not None
            else f"{row['action']}: {row['detail'] or ''}".rstrip(": "),
        )
        events.append((row["workspace_id"], float(row["at"]), 2, entry))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    heads: dict[str, tuple[int, str]] = {}
    chunk: list[dict[str, Any]] = []
    for workspace_id, at, _, entry in events:
        seq, prev = heads.get(workspace_id, (0, AUDIT_GENESIS))
        record = seal(entry, seq=seq + 1, at=iso(at), prev_hash=prev, imported=True)
        heads[workspace_id] = (record.seq, record.hash)
        chunk.append({name: getattr(record, name) for name in record.__dataclass_fields__})
        if len(chunk) >= _CHUNK:
            bind.execute(audit_log.insert(), chunk)
            chunk = []
    if chunk:
        bind.execute(audit_log.insert(), chunk)
    if heads:
        bind.execute(
            audit_heads.insert(),
            [{"workspace_id": w, "seq": s, "hash": h} for w, (s, h) in heads.items()],
        )
