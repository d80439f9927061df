"""Dispositions and agent desk data (issue 15): placeholder created first so that
0010 can follow it; the agent-desk work fills in upgrade() and downgrade().

Revision ID: 0009
Revises: 0008
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
