"""Report outbox columns on cancellations.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cancellations") as batch:
        batch.add_column(sa.Column("response_url", sa.Text))
        batch.add_column(sa.Column("report_channel", sa.String(32)))
        batch.add_column(sa.Column("report_thread_ts", sa.String(32)))
        batch.add_column(sa.Column("reply_ts", sa.String(32)))
        batch.add_column(sa.Column("audit_ts", sa.String(32)))
        batch.add_column(sa.Column("rendered", sa.String(64)))
        batch.add_column(sa.Column("report_posting", sa.String(16)))
        batch.add_column(
            sa.Column("report_attempts", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("report_next_at", sa.Double, nullable=False, server_default="0"))
        batch.add_column(sa.Column("report_lease_owner", sa.String(80)))
        batch.add_column(sa.Column("report_lease_expires_at", sa.Double))
        batch.add_column(sa.Column("report_error", sa.Text))
    op.create_index("ix_cancellations_reports", "cancellations", ["report_state", "report_next_at"])
    op.create_index(
        "ix_cancellations_latest", "cancellations", ["workspace_id", "training_id", "requested_at"]
    )
