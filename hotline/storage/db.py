"""Database engine, sessions and migrations (SQLite by default, PostgreSQL supported)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("hotline.storage")


class Database:
    """An async engine and its session factory."""

    def __init__(self, url: str, echo: bool = False) -> None:
        u = make_url(url)
        if u.get_backend_name() == "sqlite" and u.database not in (None, "", ":memory:"):
            owner_only(Path(u.database))
        kwargs: dict[str, object] = {"echo": echo}
        if u.get_backend_name() == "postgresql":
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        elif u.database not in (None, "", ":memory:"):
            # A SQLite connection is a thread (aiosqlite); the default pool (5 kept,
            # 10 overflow) opened and closed one per lookup in bursts of calls.
            kwargs.update(pool_size=20, max_overflow=10)
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if u.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._closers: list[Callable[[], Awaitable[None]]] = []

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` (e.g. release a held connection) before the engine is disposed."""
        if closer not in self._closers:
            self._closers.append(closer)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic), idempotently."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        for closer in self._closers:
            await closer()
        self._closers.clear()
        await self.engine.dispose()


def owner_only(path: Path) -> None:
    """A SQLite file readable by its owner only: created 0600 (its folder 0700 when
    created here), its mode reset to 0600 when found looser, and its WAL and
    shared-memory files with it (SQLite gives those the database file's mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if os.stat(f).st_mode & 0o077:
                os.chmod(f, 0o600)
        except FileNotFoundError:
            pass
        except PermissionError:  # someone else's file: say so, and use it as before
            log.warning("database file %s is readable by others and not ours to chmod 600", f)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the caller lookups of new calls read while the interaction writer
    # commits, instead of sleeping in SQLite's busy handler behind its lock
    # (3.5 ms per lookup at 1000 calls).  synchronous stays FULL: a commit is
    # on disk when it returns (the recording store relies on it).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _upgrade(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
