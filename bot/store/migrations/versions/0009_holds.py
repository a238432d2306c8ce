"""Held cancellations (undo window, two-person rule) and the workspace settings that hold them.

A held row holds the claim like a requested one, so the partial unique index over the claim's
states is rebuilt with `held` in it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
# 0008 is being written in parallel (audit); the lead re-chains this one at merge.
down_revision = "0008"
branch_labels = None
depends_on = None

NEW_WHERE = "state IN ('held', 'requested', 'calling', 'cancelled')"


def _claim_index(where: str) -> None:
    op.create_index(
        "uq_cancellations_active",
        "cancellations",
        ["workspace_id", "training_id", "dry_run"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("cancellations") as batch:
        batch.add_column(sa.Column("hold", sa.String(16)))
        batch.add_column(sa.Column("held_until", sa.Double))
        batch.add_column(sa.Column("owner_id", sa.String(32)))
        batch.add_column(sa.Column("decided_by", sa.String(64)))
    op.drop_index("uq_cancellations_active", table_name="cancellations")
    _claim_index(NEW_WHERE)
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column("undo_seconds", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(
            sa.Column("two_person", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("approval_seconds", sa.Integer, nullable=False, server_default=sa.text("900"))
        )
