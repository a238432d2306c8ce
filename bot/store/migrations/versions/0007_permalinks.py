"""Permalinks of the messages the bot posts, and when a report step started posting.

chat.getPermalink's answer is recorded once, after posting; a resumed report looks back only over
the messages since its interrupted step started (Slack caps history reads at about 15).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("permalink", sa.Text))
    with op.batch_alter_table("cancellations") as batch:
        batch.add_column(sa.Column("report_permalink", sa.Text))
        batch.add_column(sa.Column("report_posting_at", sa.Double))
