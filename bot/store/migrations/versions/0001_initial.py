"""Cancellations (the durable queue), notifications and bot metadata.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE_WHERE = "state IN ('requested', 'calling', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "cancellations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workspace_id", sa.String(32), nullable=False),
        sa.Column("training_id", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(24)),
        sa.Column("reason", sa.Text),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("requested_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("lease_owner", sa.String(80)),
        sa.Column("lease_expires_at", sa.Double),
        sa.Column("channel_id", sa.String(32)),
        sa.Column("report_state", sa.String(16), nullable=False, server_default="none"),
    )
    op.create_index(
        "uq_cancellations_active",
        "cancellations",
        ["workspace_id", "training_id", "dry_run"],
        unique=True,
        sqlite_where=sa.text(ACTIVE_WHERE),
        postgresql_where=sa.text(ACTIVE_WHERE),
    )
    op.create_index("ix_cancellations_due", "cancellations", ["state", "next_attempt_at"])
    op.create_index("ix_cancellations_recent", "cancellations", ["workspace_id", "requested_at"])
    op.create_table(
        "notifications",
        sa.Column("workspace_id", sa.String(32), primary_key=True),
        sa.Column("training_id", sa.String(64), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("message_ts", sa.String(32), nullable=False),
        sa.Column("owner_id", sa.String(32)),
        sa.Column("title", sa.Text),
        sa.Column("stage", sa.String(48)),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_table(
        "bot_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
