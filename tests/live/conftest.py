"""Fixtures of the live tier: the real Asterisk sandbox, the project's Mosquitto, the IVR on
127.0.0.1:4573, the CTI.

Every test here is marked ``live`` and ``asterisk`` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from harness.mqtt import (
    BrokerUnavailable,
    Inbox,
    broker_down,
    broker_running,
    broker_up,
    project_broker_env,
    server_login,
    subscribe_forever,
)
from harness.wait import wait_for
from hotline.config import Config, load_config
from hotline.records.audit import AuditLog
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.storage.db import Database
from ivr.flow.engine import Services
from tests.support.live import LiveCti
from tests.support.paths import REPO

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
def project_broker(asterisk: None) -> Iterator[Config]:
    """The project's Mosquitto (scripts/broker.sh up: TCP and WebSockets, logins, ACLs),
    started once per session (installed into the sandbox root the first time); the
    demo configuration, whose [broker] says where it is."""
    was_running = broker_running()
    try:
        broker_up()
    except BrokerUnavailable as e:
        pytest.fail(f"the project broker did not start:\n{e}")
    yield live_config()
    if not was_running:
        broker_down()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def live_config(**overrides: str) -> Config:
    """The demo site's configuration (as `make demo` runs it), with the test's own parts."""
    return load_config(REPO / "hotline.toml", environ=overrides)


@pytest.fixture(scope="session")
async def live_records(
    asterisk: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Database, CustomerDirectory, InteractionStore]]:
    """A fresh SQLite database with the demo customers, shared by the IVR and the CTI."""
    tmp = tmp_path_factory.mktemp("live")
    database = Database(f"sqlite+aiosqlite:///{tmp / 'hotline.db'}")
    await database.migrate()
    directory = CustomerDirectory(database)
    await directory.import_csv(REPO / "dialplans" / "data" / "customers.csv")
    interactions = InteractionStore(database)
    try:
        yield database, directory, interactions
    finally:
        await interactions.close()
        await database.close()


@pytest.fixture(scope="session")
async def live_server(
    live_records: tuple[Database, CustomerDirectory, InteractionStore],
) -> AsyncIterator[Services]:
    """``hotline serve``'s IVR side on 127.0.0.1:4573, built as `hotline serve` builds it."""
    from ivr import setup as ivr_feature

    _db, directory, interactions = live_records
    # The AudioSocket on a free port: a `hotline serve` left running must not clash on it
    # (the IVR tells Asterisk the address on each call).
    cfg = live_config(HOTLINE_SPEECH__AUDIOSOCKET_PORT=str(free_port()))
    try:
        feature = ivr_feature.setup(cfg, ivr_feature.IvrDeps(directory, interactions))
        ivr = await feature.__aenter__()
    except OSError as e:
        pytest.fail(
            f"cannot listen on 127.0.0.1:4573 ({e}): is `hotline serve` running? (make demo-stop)"
        )
    try:
        yield ivr.services
    finally:
        await feature.__aexit__(None, None, None)


@pytest.fixture(scope="session")
async def cti_live(
    live_records: tuple[Database, CustomerDirectory, InteractionStore],
    live_server: Services,
    project_broker: Config,
) -> AsyncIterator[tuple[LiveCti, Inbox, str]]:
    """The CTI on the real AMI, publishing to the project broker under a private prefix.

    It logs in as ``hotline-server`` (whose ACL covers ``hotline/#``, hence the
    prefix ``hotline/test-…``); the inbox watches with the same login and
    subscribes again if the broker restarts.

    Built as `hotline serve` builds it (cti and recordings features, the recordings
    subscribed to the CTI's call_ended), into a private recording store; the spool
    is the real one MixMonitor writes to.
    """
    from cti import setup as cti_feature
    from hotline.recordings import setup as recordings_feature

    db, directory, interactions = live_records
    tag = uuid.uuid4().hex[:8]
    prefix = f"hotline/test-{tag}"
    store_dir = REPO / ".run" / f"test-store-{tag}"
    cfg = live_config(
        **project_broker_env(project_broker),
        HOTLINE_MQTT__PREFIX=prefix,
        HOTLINE_MQTT__CLIENT_ID=f"{prefix}-server",
        HOTLINE_AMI__RECONNECT_MIN_S="0.2",
        HOTLINE_AMI__RECONNECT_MAX_S="1.0",
        HOTLINE_RECORDINGS__STORE_DIR=str(store_dir),
    )
    secret = (REPO / ".run" / "ami_secret").read_text().strip()
    inbox = Inbox()
    ready = asyncio.Event()
    b = project_broker.broker
    sub = asyncio.create_task(
        subscribe_forever(
            b.host, b.port, f"{prefix}/#", inbox, ready, **server_login(project_broker)
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    async with contextlib.AsyncExitStack() as stack:
        cti = await stack.enter_async_context(
            cti_feature.setup(cfg, cti_feature.CtiDeps(directory, interactions, secret))
        )
        recordings = await stack.enter_async_context(
            recordings_feature.setup(
                cfg,
                recordings_feature.RecordingsDeps(
                    db, interactions, AuditLog.from_config(db, cfg), cti.state.call_live
                ),
            )
        )
        cti.service.call_ended.subscribe(recordings.ingest.on_call_ended)
        await cti.connect()
        await wait_for(
            lambda: cti.ami.logged_in and cti.state.agents,
            timeout=10,
            what="the CTI logged in to the AMI, with the agents known",
        )
        try:
            yield LiveCti(cti, recordings.store), inbox, prefix
        finally:
            shutil.rmtree(store_dir, ignore_errors=True)
            sub.cancel()
