"""Customers and IVR interactions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("balance_cents", sa.Integer(), nullable=False),
        sa.Column("last_bill_date", sa.Date(), nullable=True),
        sa.Column("last_bill_cents", sa.Integer(), nullable=True),
        sa.Column("bill_due_date", sa.Date(), nullable=True),
        sa.Column("open_ticket", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customers_account", "customers", ["account"], unique=True)
    op.create_index("ix_customers_phone", "customers", ["phone"], unique=True)
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=128), nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("caller_number", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("intent", sa.String(length=64), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("transcripts", sa.JSON(), nullable=False),
        sa.Column("self_service", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_interactions_call_id", "interactions", ["call_id"])
    op.create_index("ix_interactions_caller_number", "interactions", ["caller_number"])
    op.create_index("ix_interactions_outcome_started", "interactions", ["outcome", "started_at"])
    op.create_index("ix_interactions_started_at", "interactions", ["started_at"])


def downgrade() -> None:
    op.drop_table("interactions")
    op.drop_table("customers")
