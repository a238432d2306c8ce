"""Remember across a scheduled 429 retry that an earlier attempt may have reached ModelsLab.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cancellations") as batch:
        batch.add_column(
            sa.Column("may_have_reached", sa.Boolean, nullable=False, server_default=sa.false())
        )
