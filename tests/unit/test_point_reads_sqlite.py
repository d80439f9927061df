"""Caller lookups through the driver on SQLite (in this process): a missing table."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.records.customers import CustomerDirectory
from hotline.storage.db import Database
from hotline.storage.point_reads import PointReadError
from tests.support.paths import REPO

CUSTOMERS = REPO / "dialplans" / "data" / "customers.csv"


async def test_sqlite_lookup_reports_a_missing_table_and_recovers(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    try:
        directory = CustomerDirectory(db)
        with pytest.raises(PointReadError, match="no such table"):
            await directory.by_phone("5551234")
        await db.migrate()
        await directory.import_csv(CUSTOMERS)
        assert await directory.by_phone("5551234") is not None
    finally:
        await db.close()
