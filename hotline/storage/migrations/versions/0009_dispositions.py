"""Dispositions, customer flags and the screen pop's history (issue 15: the agent desktop).

``interactions.disposition``/``disposition_note``/``disposed_by``/``disposed_at``:
what the agent who took the call recorded at wrap-up (cti/desk.py).

``customers.flags``: what an agent should know at a glance (``vip``,
``churn_risk``, ...), comma-separated, imported from the directory CSV.

``ix_interactions_customer_started``/``ix_interactions_caller_started``: a
screen pop reads a customer's or a number's latest calls, newest first.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("flags", sa.String(length=200), nullable=True))
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("disposition", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("disposition_note", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("disposed_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("disposed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_interactions_customer_started", ["customer_id", "started_at"])
        batch.create_index("ix_interactions_caller_started", ["caller_number", "started_at"])


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_index("ix_interactions_caller_started")
        batch.drop_index("ix_interactions_customer_started")
        batch.drop_column("disposed_at")
        batch.drop_column("disposed_by")
        batch.drop_column("disposition_note")
        batch.drop_column("disposition")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("flags")
