"""Composite indexes for searches by agent or queue over a date range.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_recordings_agent_started", "recordings", ["agent", "started_at"])
    op.create_index("ix_recordings_queue_started", "recordings", ["queue", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_recordings_queue_started", table_name="recordings")
    op.drop_index("ix_recordings_agent_started", table_name="recordings")
