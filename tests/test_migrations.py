"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hotline.db import Database
from hotline.tables import Base


async def test_migrations_match_models(db: Database):
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == []


async def test_migrate_is_idempotent(db: Database):
    await db.migrate()
    await db.migrate()
