"""Callbacks: callers who keep their place in a queue without holding the line.

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
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("interaction_id", sa.String(32), nullable=True),
        sa.Column("customer_id", sa.Integer, nullable=True),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(32), nullable=True),
        sa.Column("last_result", sa.String(64), nullable=True),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_callbacks_number", "callbacks", ["number"])
    op.create_index("ix_callbacks_status_queue", "callbacks", ["status", "queue", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_callbacks_status_queue", table_name="callbacks")
    op.drop_index("ix_callbacks_number", table_name="callbacks")
    op.drop_table("callbacks")
