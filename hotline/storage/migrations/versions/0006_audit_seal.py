"""Seal the audit log: each entry's hash gets an HMAC with a key outside the database.

``key_id`` names the key, ``seal`` is the HMAC (hotline.records.seal).  Entries
already written stay unsealed: the key is not available to a migration (it
lives in ``[audit] key_file``, read by the server), and sealing old rows now
would vouch for whatever they hold today.  ``hotline audit verify`` reports
them as written before sealing was introduced, as long as every one of them
comes before the first sealed entry.

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
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("seal", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("seal")
        batch.drop_column("key_id")
