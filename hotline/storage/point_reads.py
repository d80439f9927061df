"""Point reads on the call path, run by the database driver itself.

Every call's caller lookup runs before the greeting.  Through SQLAlchemy's
async layer one lookup cost ~0.6 ms, most of it Python on the event loop
(greenlet hand-offs, cursor adaption, result processing), and at 1000 calls
that time delayed other calls' AGI commands.  Here a fixed Core SELECT is
compiled once per dialect and the driver runs it: SQLite in one reader thread
of its own (stdlib ``sqlite3``), PostgreSQL on one held asyncpg connection
(whose statement cache prepares it once).  Either way ~0.1 ms, and the loop
only hands the query over.  Other databases take the SQLAlchemy path.

Only what the call path needs is supported: SELECTs of Integer, String and
Date columns with one bound parameter named ``value``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from sqlalchemy import Date, Integer, Select, String
from sqlalchemy.ext.asyncio import AsyncConnection

from hotline.storage.db import Database

Row = tuple[Any, ...]


class PointReadError(Exception):
    """The read failed (connection lost, database gone); the reader reconnects next time."""


class _Compiled:
    """A statement as the driver takes it: SQL text and its parameters in order."""

    def __init__(self, stmt: Select[Any], db: Database) -> None:
        for column in stmt.selected_columns:
            if not isinstance(column.type, Integer | String | Date):
                raise TypeError(f"point reads: column {column.name} is {column.type!r}")
        compiled = stmt.compile(dialect=db.engine.dialect)
        if "value" not in compiled.params:
            raise TypeError("point reads: the statement needs bindparam('value')")
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or ())
        self.defaults = dict(compiled.params)
        # SQLite hands dates back as the ISO text SQLAlchemy stored.
        self.dates = [i for i, c in enumerate(stmt.selected_columns) if isinstance(c.type, Date)]

    def params(self, value: Any) -> list[Any]:
        return [value if name == "value" else self.defaults[name] for name in self.order]


class _SqliteReader:
    """One connection in one thread: reads never queue behind the pool's threads."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hotline-point-read")
        self._conn: sqlite3.Connection | None = None

    def _run(self, sql: str, params: Sequence[Any]) -> Row | None:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
            conn.execute("PRAGMA busy_timeout = 2000")
            self._conn = conn
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def fetch(self, compiled: _Compiled, value: Any) -> Row | None:
        loop = asyncio.get_running_loop()
        try:
            row = await loop.run_in_executor(
                self._executor, self._run, compiled.sql, compiled.params(value)
            )
        except sqlite3.Error as e:
            await self.close()
            raise PointReadError(str(e)) from e
        if row is not None and compiled.dates:
            fixed = list(row)
            for i in compiled.dates:
                if isinstance(fixed[i], str):
                    fixed[i] = date.fromisoformat(fixed[i])
            row = tuple(fixed)
        return row

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)


class _AsyncpgReader:
    """One held asyncpg connection (checked out of the engine's pool for good)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: AsyncConnection | None = None
        self._driver: Any = None

    async def fetch(self, compiled: _Compiled, value: Any) -> Row | None:
        import asyncpg

        try:
            if self._driver is None:
                self._conn = await self._db.engine.connect()
                raw = await self._conn.get_raw_connection()
                self._driver = raw.driver_connection
            record = await self._driver.fetchrow(compiled.sql, *compiled.params(value))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            await self.close(invalidate=True)
            raise PointReadError(str(e)) from e
        return None if record is None else tuple(record.values())

    async def close(self, invalidate: bool = False) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            if invalidate:
                await conn.invalidate()
            await conn.close()


class _SqlAlchemyReader:
    """Any other database: the same statement through SQLAlchemy."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def fetch(self, stmt: Select[Any], value: Any) -> Row | None:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(stmt, {"value": value})).first()
        return None if row is None else tuple(row)


class PointReader:
    """Runs fixed single-row SELECTs for the call path; one per directory.

    Reads are serialised (one connection); a read that fails raises
    ``PointReadError`` and the next one reconnects.  ``close`` before the
    database is closed (``Database.on_close`` does it).
    """

    def __init__(self, db: Database, timeout_s: float = 2.0) -> None:
        self._db = db
        self._timeout_s = timeout_s
        self._compiled: dict[int, _Compiled] = {}
        self._lock = asyncio.Lock()
        url = db.engine.url
        backend, driver = url.get_backend_name(), url.get_driver_name()
        self._reader: _SqliteReader | _AsyncpgReader | _SqlAlchemyReader
        if backend == "sqlite" and url.database not in (None, "", ":memory:"):
            self._reader = _SqliteReader(str(url.database))
        elif backend == "postgresql" and driver == "asyncpg":
            self._reader = _AsyncpgReader(db)
        else:
            self._reader = _SqlAlchemyReader(db)
        db.on_close(self.close)

    @property
    def backend(self) -> str:
        """Which path reads take: sqlite3, asyncpg or sqlalchemy."""
        return {
            _SqliteReader: "sqlite3",
            _AsyncpgReader: "asyncpg",
            _SqlAlchemyReader: "sqlalchemy",
        }[type(self._reader)]

    async def first(self, stmt: Select[Any], value: Any) -> Row | None:
        """The first row of ``stmt`` with ``value`` bound, or None.

        Bounded by ``timeout_s``: a connection a firewall dropped silently would
        otherwise hang every caller's lookup behind this one for minutes.
        """
        async with self._lock:
            reader = self._reader
            try:
                async with asyncio.timeout(self._timeout_s):
                    if isinstance(reader, _SqlAlchemyReader):
                        return await reader.fetch(stmt, value)
                    compiled = self._compiled.get(id(stmt))
                    if compiled is None:
                        compiled = self._compiled[id(stmt)] = _Compiled(stmt, self._db)
                    return await reader.fetch(compiled, value)
            except TimeoutError:
                if isinstance(reader, _AsyncpgReader):
                    await reader.close(invalidate=True)
                raise PointReadError(f"no answer within {self._timeout_s:g} s") from None

    async def close(self) -> None:
        async with self._lock:
            if not isinstance(self._reader, _SqlAlchemyReader):
                await self._reader.close()
