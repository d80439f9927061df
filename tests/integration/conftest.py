"""Fixtures of the integration tier: databases (SQLite and PostgreSQL), prompts, services.

PostgreSQL is the server of ``HOTLINE_TEST_PG`` (an admin URL; default
postgresql://postgres@127.0.0.1:5432/postgres): each test gets a new database
on it, dropped afterwards.  ``make integration`` and ``make test`` set it
(scripts/postgres.sh url).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harness.postgres import create_postgres_database, drop_postgres_database, postgres_url
from hotline.config import Config
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.storage.db import Database
from ivr.flow.engine import Services
from ivr.flow.loader import load_flows
from ivr.prompts import PromptCache
from tests.support.flows import ServicesFor, load_inline_flows, write_customers
from tests.support.paths import REPO

PG_ADMIN = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.asynccontextmanager
async def _migrated(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database of that kind, dropped afterwards."""
    pg_name = None
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    else:
        pg_name = await create_postgres_database(PG_ADMIN, "hotline_test")
        url = postgres_url(PG_ADMIN, pg_name)
    database = Database(url)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()
        if pg_name:
            await drop_postgres_database(PG_ADMIN, pg_name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: each test runs on SQLite and on PostgreSQL."""
    async with _migrated(request.param, tmp_path) as database:
        yield database


@pytest.fixture
async def pg_db(tmp_path: Path) -> AsyncIterator[Database]:
    """PostgreSQL only: for what SQLite cannot show (it accepts over-long strings)."""
    async with _migrated("postgresql", tmp_path) as database:
        yield database


@pytest.fixture(scope="session")
def prompt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompts")


@pytest.fixture
async def services(db: Database, prompt_dir: Path, demo_config: Config) -> AsyncIterator[Services]:
    directory = CustomerDirectory(db)
    await directory.import_csv(REPO / "dialplans" / "data" / "customers.csv")
    services = Services(
        prompts=PromptCache(prompt_dir, "/srv/hotline/prompts", dict(demo_config.tts.voices)),
        directory=directory,
        interactions=InteractionStore(db),
        flows=load_flows(REPO / "dialplans"),
        fallback_queue="support",
    )
    yield services
    await services.interactions.close()


@pytest.fixture
async def flow_services(
    db: Database, prompt_dir: Path, demo_config: Config, tmp_path: Path
) -> AsyncIterator[ServicesFor]:
    """Services as ``services`` builds them, for flows and customers a test writes inline.

    ``await flow_services(FLOW, ..., customers=ROWS)``: the flows are YAML texts,
    loaded with the real loader (tests.support.flows); the directory holds only
    the customers in ``ROWS`` (CSV rows under the import header,
    ``tests.support.flows.CUSTOMER_HEADER``).  Nothing is read from
    ``dialplans/``, so editing the demo site does not change what these tests run.
    """
    built: list[Services] = []

    async def build(*flows: str, customers: str = "") -> Services:
        n = len(built)
        directory = CustomerDirectory(db)
        if customers:
            await directory.import_csv(write_customers(tmp_path / f"customers{n}.csv", customers))
        services = Services(
            prompts=PromptCache(prompt_dir, "/srv/hotline/prompts", dict(demo_config.tts.voices)),
            directory=directory,
            interactions=InteractionStore(db),
            flows=load_inline_flows(tmp_path / f"flows{n}", *flows),
            fallback_queue="support",
        )
        built.append(services)
        return services

    yield build
    for services in built:
        await services.interactions.close()
