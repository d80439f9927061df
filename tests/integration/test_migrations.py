"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from hotline.storage.db import Database
from hotline.storage.tables import Base


async def test_migrations_match_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert diff == []


# What a table looks like to the application: columns, primary key, and indexes
# as (columns, unique, partial-index condition or None), by name.
TableShape = tuple[set[str], list[str], dict[str, tuple[list[str], bool, str | None]]]


def _schema(c: Connection) -> dict[str, TableShape]:
    inspector = inspect(c)
    shapes: dict[str, TableShape] = {}
    for table in inspector.get_table_names():
        indexes: dict[str, tuple[list[str], bool, str | None]] = {}
        for ix in inspector.get_indexes(table):
            options = ix.get("dialect_options", {})
            where = options.get("sqlite_where", options.get("postgresql_where"))
            columns = [str(col) for col in ix["column_names"]]
            indexes[str(ix["name"])] = (
                columns,
                ix["unique"],
                None if where is None else str(where),
            )
        for uq in inspector.get_unique_constraints(table):
            # PostgreSQL lists a unique constraint's index among the indexes too.
            indexes.setdefault(str(uq["name"]), (list(uq["column_names"]), True, None))
        shapes[table] = (
            {col["name"] for col in inspector.get_columns(table)},
            list(inspector.get_pk_constraint(table)["constrained_columns"]),
            indexes,
        )
    return shapes


def _revisions(c: Connection) -> list[str]:
    return list(c.execute(text("SELECT version_num FROM alembic_version")).scalars())


async def test_migrate_is_idempotent(db: Database) -> None:
    """Migrating an up-to-date database again changes nothing: same tables, columns,
    keys and indexes as the models, and one Alembic revision, the head."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from hotline.storage.db import MIGRATIONS

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert len(heads) == 1, heads
    async with db.engine.connect() as conn:
        before = await conn.run_sync(_schema)
    await db.migrate()
    await db.migrate()
    async with db.engine.connect() as conn:
        after = await conn.run_sync(_schema)
        assert await conn.run_sync(_revisions) == heads
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    assert after == before
    assert diff == []
    # Every table and column of the models, and nothing else but Alembic's own.
    assert set(after) == set(Base.metadata.tables) | {"alembic_version"}
    for name, table in Base.metadata.tables.items():
        columns, primary_key, indexes = after[name]
        assert columns == {c.name for c in table.columns}, name
        assert primary_key == [c.name for c in table.primary_key.columns], name
        for ix in table.indexes:
            assert ix.name in indexes, (name, ix.name)
            assert indexes[ix.name][:2] == ([c.name for c in ix.columns], ix.unique), ix.name
    # The indexes that keep data right: one customer per phone and per account, one
    # stored recording per spool file, one open callback per number (a partial index).
    customers, recordings, callbacks = (
        after["customers"][2],
        after["recordings"][2],
        after["callbacks"][2],
    )
    assert customers["ix_customers_phone"][:2] == (["phone"], True)
    assert customers["ix_customers_account"][:2] == (["account"], True)
    assert (["source"], True) in [ix[:2] for ix in recordings.values()]
    open_columns, unique, where = callbacks["uq_callbacks_open_number"]
    assert (open_columns, unique) == (["number"], True)
    assert where is not None and "pending" in where and "dialing" in where, where
    assert callbacks["ix_callbacks_number"][:2] == (["number"], False)


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
