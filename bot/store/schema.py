"""The tables (SQLAlchemy Core), and their rows as bot.model values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from bot.model import (
    ACTIVE_STATES,
    AuditRecord,
    Cancellation,
    Hold,
    Notification,
    Origin,
    ReportState,
    State,
    TrainingEvent,
    Workspace,
)

# The partial unique index's predicate: the claim (design §6).
ACTIVE_WHERE = "state IN (" + ", ".join(f"'{s.value}'" for s in ACTIVE_STATES) + ")"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

cancellations = sa.Table(
    "cancellations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("training_id", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(24)),
    sa.Column("reason", sa.Text),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("requested_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("channel_id", sa.String(32)),
    sa.Column("report_state", sa.String(16), nullable=False, default=ReportState.NONE.value),
    sa.Column("may_have_reached", sa.Boolean, nullable=False, default=False),
    # The report outbox: what has been posted where, and the reporter's own lease.
    sa.Column("response_url", sa.Text),  # encrypted
    sa.Column("report_channel", sa.String(32)),
    sa.Column("report_thread_ts", sa.String(32)),
    sa.Column("reply_ts", sa.String(32)),
    sa.Column("audit_ts", sa.String(32)),
    sa.Column("rendered", sa.String(64)),
    sa.Column("report_posting", sa.String(16)),
    sa.Column("report_posting_at", sa.Double),  # when that step started posting
    sa.Column("report_permalink", sa.Text),  # of the report's own thread parent
    sa.Column("report_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("report_next_at", sa.Double, nullable=False, default=0),
    sa.Column("report_lease_owner", sa.String(80)),
    sa.Column("report_lease_expires_at", sa.Double),
    sa.Column("report_error", sa.Text),
    # Held rows (undo window, two-person rule): why, until when, whose training, who decided.
    sa.Column("hold", sa.String(16)),
    sa.Column("held_until", sa.Double),
    sa.Column("owner_id", sa.String(32)),
    sa.Column("decided_by", sa.String(64)),
    sa.Index(
        "uq_cancellations_active",
        "workspace_id",
        "training_id",
        "dry_run",
        unique=True,
        sqlite_where=sa.text(ACTIVE_WHERE),
        postgresql_where=sa.text(ACTIVE_WHERE),
    ),
    sa.Index("ix_cancellations_due", "state", "next_attempt_at"),
    sa.Index("ix_cancellations_recent", "workspace_id", "requested_at"),
    sa.Index("ix_cancellations_reports", "report_state", "report_next_at"),
    sa.Index("ix_cancellations_latest", "workspace_id", "training_id", "requested_at"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("training_id", sa.String(64), primary_key=True),
    sa.Column("channel_id", sa.String(32), nullable=False),
    sa.Column("message_ts", sa.String(32)),  # NULL while being posted
    sa.Column("owner_id", sa.String(32)),
    sa.Column("title", sa.Text),
    sa.Column("stage", sa.String(48)),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("stage_rank", sa.Integer, nullable=False, default=0),
    sa.Column("eta", sa.String(32)),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("final_reported", sa.Boolean, nullable=False, default=False),
    sa.Column("watching", sa.Boolean, nullable=False, default=False),
    sa.Column("poll_next_at", sa.Double),
    sa.Column("poll_failures", sa.Integer, nullable=False, default=0),
    sa.Column("rendered", sa.String(96)),
    sa.Column("permalink", sa.Text),  # chat.getPermalink, recorded once after posting
    sa.Index("ix_notifications_polls", "watching", "poll_next_at"),
)

training_events = sa.Table(
    "training_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("training_id", sa.String(64), nullable=False),
    sa.Column("stage", sa.String(48)),
    sa.Column("logs", sa.Text),
    sa.Column("channel_id", sa.String(32)),
    sa.Column("title", sa.Text),
    sa.Column("owner_id", sa.String(32)),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("outcome", sa.Text),  # why nothing was posted, when that is final
    sa.Index("ix_training_events_due", "done", "next_attempt_at"),
)

bot_meta = sa.Table(
    "bot_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("enterprise_id", sa.String(32)),
    sa.Column("name", sa.String(200)),
    sa.Column("installed", sa.Boolean, nullable=False, default=False),
    sa.Column("key_ciphertext", sa.Text),
    sa.Column("key_hint", sa.String(8)),
    sa.Column("key_set_at", sa.Double),
    sa.Column("key_set_by", sa.String(64)),
    sa.Column("audit_channel", sa.String(32)),
    sa.Column("notify_channel", sa.String(32)),
    sa.Column("webhook_token_hash", sa.String(64), unique=True),
    sa.Column("webhook_token_ciphertext", sa.Text),
    sa.Column("audit_token_hash", sa.String(64), unique=True),  # sha256 of GET /audit's token
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    # The safe-cancel settings: undo window (0 = off), two-person rule and its approval time.
    sa.Column("undo_seconds", sa.Integer, nullable=False, default=0),
    sa.Column("two_person", sa.Boolean, nullable=False, default=False),
    sa.Column("approval_seconds", sa.Integer, nullable=False, default=900),
)

allow_entries = sa.Table(
    "allow_entries",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("entry_id", sa.String(32), primary_key=True),
    sa.Column("added_by", sa.String(64), nullable=False),
    sa.Column("added_at", sa.Double, nullable=False),
)

admin_events = sa.Table(
    "admin_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("at", sa.Double, nullable=False),
)

# The audit log (design §7): append-only, chained per workspace. Never updated or deleted, also
# not on uninstall.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),  # ISO 8601 UTC, microseconds, sortable
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(16)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("training_id", sa.String(64)),
    sa.Column("cancellation_id", sa.Integer),
    sa.Column("thread", sa.Text),
    sa.Column("imported", sa.Boolean, nullable=False, default=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("workspace_id", "seq", name="uq_audit_log_workspace_seq"),
    sa.Index("ix_audit_log_training", "workspace_id", "training_id"),
    sa.Index("ix_audit_log_at", "workspace_id", "at"),
)

# Each workspace's chain head: its last sequence number and hash. Appending locks this row
# (one writer per workspace on PostgreSQL: no fork), and verify compares the chain's end with it
# (records removed from the end show).
audit_heads = sa.Table(
    "audit_heads",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Owned by slack_sdk's installation and OAuth state stores (created by our migrations).
SLACK_OAUTH_TABLES = ("slack_installations", "slack_bots", "slack_oauth_states")


def cancellation_from(row: Mapping[str, Any] | sa.Row[Any]) -> Cancellation:
    """A cancellations row as a Cancellation."""
    values = _fields(Cancellation, row._mapping if isinstance(row, sa.Row) else row)
    values["origin"] = Origin(values["origin"])
    values["state"] = State(values["state"])
    values["report_state"] = ReportState(values["report_state"])
    values["hold"] = Hold(values["hold"]) if values["hold"] else None
    return Cancellation(**values)


def notification_from(row: sa.Row[Any]) -> Notification:
    """A notifications row as a Notification ("" for the ts of one being posted)."""
    values = _fields(Notification, row._mapping)
    values["message_ts"] = values["message_ts"] or ""
    return Notification(**values)


def training_event_from(row: sa.Row[Any]) -> TrainingEvent:
    """A training_events row as a TrainingEvent."""
    return TrainingEvent(**_fields(TrainingEvent, row._mapping))


def audit_record_from(row: sa.Row[Any]) -> AuditRecord:
    """An audit_log row as an AuditRecord."""
    values = _fields(AuditRecord, row._mapping)
    values["imported"] = bool(values["imported"])
    return AuditRecord(**values)


def workspace_from(row: sa.Row[Any]) -> Workspace:
    """A workspaces row (and perhaps more columns) as a Workspace."""
    return Workspace(**_fields(Workspace, row._mapping))


def _fields(row_type: Any, values: Any) -> dict[str, Any]:
    return {name: values[name] for name in row_type.__dataclass_fields__}
