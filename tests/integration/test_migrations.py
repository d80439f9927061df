"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from hotline.storage.db import Database
from hotline.storage.tables import Base


async def test_migrations_match_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == []


async def test_migrate_is_idempotent(db: Database) -> None:
    await db.migrate()
    await db.migrate()


async def test_upgrading_cancels_duplicate_open_callbacks_keeping_the_earliest(
    db: Database,
) -> None:
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import select

    from hotline.storage.db import MIGRATIONS
    from hotline.storage.tables import CallbackRow

    def to(revision: str) -> Callable[[Connection], None]:
        def run(connection: Connection) -> None:
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = connection
            if revision == "0004":
                command.downgrade(cfg, revision)
            else:
                command.upgrade(cfg, revision)

        return run

    async with db.engine.begin() as conn:
        await conn.run_sync(to("0004"))
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    async with db.sessions() as s, s.begin():
        for i, status in enumerate(["pending", "pending", "dialing", "completed"]):
            s.add(
                CallbackRow(
                    id=f"cb{i}",
                    queue="billing",
                    number="5550777",
                    call_id=f"c{i}",
                    language="en",
                    requested_at=t0 + timedelta(minutes=3 - i),  # cb2 is the earliest open
                    status=status,
                    attempts=0,
                    next_attempt_at=t0,
                    history=[],
                    updated_at=t0,
                )
            )
    async with db.engine.begin() as conn:
        await conn.run_sync(to("head"))
    async with db.sessions() as s:
        rows = {r.id: (r.status, r.last_result) for r in await s.scalars(select(CallbackRow))}
    assert rows == {
        "cb0": ("cancelled", "duplicate"),
        "cb1": ("cancelled", "duplicate"),
        "cb2": ("dialing", None),
        "cb3": ("completed", None),
    }
