"""Caller verification and deflection limits (issue 14: caller ID is not identity).

``customers.pin_hash``/``birth_date``: what a caller proves who they are with
(a ``verify`` step); the PIN only as a salted scrypt hash.

``interactions.link_token``/``link_to``/``link_sent_at``: the unguessable token
of the link a call sent by text message, where to and when; the deflect step
counts a number's links in a window from these (``ix_interactions_link_to_sent``).

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
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("pin_hash", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("birth_date", sa.Date(), nullable=True))
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("link_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("link_to", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("link_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_interactions_link_token", ["link_token"], unique=True)
        batch.create_index("ix_interactions_link_to_sent", ["link_to", "link_sent_at"])


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_index("ix_interactions_link_to_sent")
        batch.drop_index("ix_interactions_link_token")
        batch.drop_column("link_sent_at")
        batch.drop_column("link_to")
        batch.drop_column("link_token")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("birth_date")
        batch.drop_column("pin_hash")
