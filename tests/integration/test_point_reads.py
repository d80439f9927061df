"""Caller lookups through the driver (PointReader): same answers, survives restarts."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from hotline.records.customers import _BY_PHONE, CustomerDirectory
from hotline.storage.db import Database
from hotline.storage.point_reads import PointReader, PointReadError
from tests.support.paths import REPO

CUSTOMERS = REPO / "dialplans" / "data" / "customers.csv"


async def _directory(db: Database) -> CustomerDirectory:
    directory = CustomerDirectory(db)
    await directory.import_csv(CUSTOMERS)
    return directory


async def test_lookup_by_phone_and_account_reads_every_field(db: Database) -> None:
    directory = await _directory(db)
    listed = {c.phone: c for c in await directory.list()}  # through the ORM
    alice = await directory.by_phone("(555) 123-4")
    assert alice is not None
    assert alice == listed["5551234"]
    assert alice.bill_due_date == date(2026, 11, 30)  # SQLite stores dates as text
    assert alice.balance_cents == 4200
    assert await directory.by_account("100200") == alice
    assert await directory.by_phone("5559999") is None
    assert await directory.by_phone("no digits") is None


async def test_lookups_use_the_driver_on_sqlite_and_postgresql(db: Database) -> None:
    reader = PointReader(db)
    expected = {"sqlite": "sqlite3", "postgresql": "asyncpg"}[db.engine.dialect.name]
    assert reader.backend == expected


async def test_a_change_is_seen_by_the_next_lookup(db: Database) -> None:
    directory = await _directory(db)
    alice = await directory.by_phone("5551234")
    assert alice is not None
    await directory.pay_balance(alice.id, 4200)  # another connection commits
    paid = await directory.by_phone("5551234")
    assert paid is not None and paid.balance_cents == 0 and paid.bill_due_date is None


async def test_lookup_reconnects_after_postgresql_drops_its_connection(pg_db: Database) -> None:
    directory = await _directory(pg_db)
    assert await directory.by_phone("5551234") is not None
    async with pg_db.engine.connect() as conn:
        await conn.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    await asyncio.sleep(0.1)
    found = await directory.by_phone("5551234")  # the first try fails, the retry reconnects
    assert found is not None and found.name == "Alice Martin"


async def test_a_lookup_that_hangs_is_bounded(pg_db: Database) -> None:
    directory = await _directory(pg_db)
    reader = PointReader(pg_db, timeout_s=0.3)
    async with pg_db.engine.connect() as locker:
        # An exclusive lock makes the reader's SELECT wait, as a dead link would.
        await locker.exec_driver_sql("BEGIN")
        await locker.exec_driver_sql("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        started = asyncio.get_running_loop().time()
        with pytest.raises(PointReadError, match=r"within 0\.3 s"):
            await reader.first(_BY_PHONE, "5551234")
        assert asyncio.get_running_loop().time() - started < 1.5
        await locker.exec_driver_sql("ROLLBACK")
    assert await reader.first(_BY_PHONE, "5551234") is not None  # reconnected
    assert await directory.by_phone("5551234") is not None
