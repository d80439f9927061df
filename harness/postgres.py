"""Throwaway PostgreSQL databases for the tests, the benchmarks and the demo."""

from __future__ import annotations

import uuid


async def create_postgres_database(admin_url: str, prefix: str = "hotline") -> str:
    """Create a new, empty database on the server of ``admin_url``; returns its name."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_postgres_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def postgres_url(admin_url: str, name: str, driver: str | None = "asyncpg") -> str:
    """The URL of database ``name`` on the server of ``admin_url`` (``driver`` None: plain)."""
    base = admin_url.rsplit("/", 1)[0]
    if driver is not None:
        base = base.replace("postgresql://", f"postgresql+{driver}://", 1)
    return f"{base}/{name}"
