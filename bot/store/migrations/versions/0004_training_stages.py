"""Live training notifications: stage, ETA, watching; the webhook event queue.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        # NULL while the message is being posted: the row is the claim that makes it one per training.
        batch.alter_column("message_ts", existing_type=sa.String(32), nullable=True)
        batch.add_column(sa.Column("stage_rank", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("eta", sa.String(32)))
        batch.add_column(sa.Column("started_at", sa.Double))
        batch.add_column(sa.Column("finished_at", sa.Double))
        batch.add_column(
            sa.Column("final_reported", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("watching", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("poll_next_at", sa.Double))
        batch.add_column(sa.Column("poll_failures", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("rendered", sa.String(96)))
    op.create_index("ix_notifications_polls", "notifications", ["watching", "poll_next_at"])
    op.create_table(
        "training_events",
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
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Double, nullable=False),
        sa.Column("lease_owner", sa.String(80)),
        sa.Column("lease_expires_at", sa.Double),
    )
    op.create_index("ix_training_events_due", "training_events", ["done", "next_attempt_at"])
