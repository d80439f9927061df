"""Seal each recording row, file callbacks' recordings, mark encrypted files.

``key_id``/``seal``: an HMAC (the audit log's key, hotline.records.seal) over
the row's metadata and its file's hash, so swapping a WAV together with its
row's ``sha256`` no longer passes ``hotline recordings verify``.  Rows already
written stay unsealed (the key is not available to a migration, and sealing
them now would vouch for whatever they hold today); verify reports them as
stored before sealing was introduced.

``callback_id``: the callback a recording belongs to ("" for a queue call).
``encrypted``: the file on disk is encrypted (hotline.recordings.crypt), and
``audio_sha256`` is then the audio's hash (``sha256`` stays the file's).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("seal", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("callback_id", sa.String(length=32), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("encrypted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("audio_sha256", sa.String(length=64), nullable=True))
        batch.create_index("ix_recordings_callback_id", ["callback_id"])


def downgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.drop_index("ix_recordings_callback_id")
        batch.drop_column("audio_sha256")
        batch.drop_column("encrypted")
        batch.drop_column("callback_id")
        batch.drop_column("seal")
        batch.drop_column("key_id")
