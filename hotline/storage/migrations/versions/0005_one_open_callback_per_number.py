"""One open callback per number, enforced by the database.

Two calls from the same number at the same moment could each find no open
callback and book one; a partial unique index makes the second insert fail
(the store then returns the first).  Open duplicates booked before this
revision are cancelled, keeping each number's earliest place in line.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = "status IN ('pending', 'dialing')"
# Open callbacks after each number's earliest (by place in line), cancelled.
CANCEL_DUPLICATES = """
UPDATE callbacks SET status = 'cancelled', last_result = 'duplicate'
WHERE status IN ('pending', 'dialing') AND id NOT IN (
  SELECT id FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY number ORDER BY requested_at, id) AS n
    FROM callbacks WHERE status IN ('pending', 'dialing')
  ) AS ranked WHERE n = 1
)
"""


def upgrade() -> None:
    op.execute(sa.text(CANCEL_DUPLICATES))
    op.create_index(
        "uq_callbacks_open_number",
        "callbacks",
        ["number"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_callbacks_open_number", table_name="callbacks")
