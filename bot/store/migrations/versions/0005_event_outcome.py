"""Why a queued training event posted nothing (e.g. Slack refused the channel).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_events") as batch:
        batch.add_column(sa.Column("outcome", sa.Text))
