"""What a stranger can cost the compliance API and its CLI, over real sockets and processes.

Failed logins are throttled (429 and Retry-After), a flood of requests
without a session costs the audit log a few rows, not one each, a search's
``limit`` is checked, ``/health`` says ok, degraded or down; on the command
line ``audit show`` prints hostile names escaped and ``--as`` needs the
user's password unless root runs it (and is then named in the log).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hotline.recordings.http import build_app
from hotline.recordings.store import CallFacts, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.users import Users
from hotline.storage.db import Database
from hotline.web import HealthReport, build_web_app
from tests.support.audio import make_wav
from tests.support.paths import REPO

HOTLINE = str(REPO / ".venv/bin/hotline")

# The database is not what these tests are about: SQLite only.
SQLITE = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture
def audit(db: Database, tmp_path: Path) -> AuditLog:
    return AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl")


@pytest.fixture
async def users(db: Database) -> Users:
    users = Users(db)
    await users.add("carol", "compliance", "carol-password-1")
    await users.add("dave", "compliance", "dave-password-1")
    return users


async def serve(app: web.Application) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    return server


@pytest.fixture
async def login_api(users: Users, audit: AuditLog) -> AsyncIterator[TestServer]:
    server = await serve(build_web_app(users, audit))
    yield server
    await server.close()


async def login(
    http: aiohttp.ClientSession, server: TestServer, name: str, password: str
) -> tuple[int, dict[str, str], dict[str, object]]:
    body = {"name": name, "password": password}
    async with http.post(server.make_url("/api/session"), json=body) as r:
        return r.status, dict(r.headers), await r.json()


@SQLITE
async def test_five_wrong_passwords_lock_the_name_with_429_and_retry_after(
    login_api: TestServer, audit: AuditLog
) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            assert (await login(http, login_api, "carol", "guess-guess-1"))[0] == 401
        status, headers, body = await login(http, login_api, "carol", "carol-password-1")
        assert status == 429, "the right password too, until the window has passed"
        assert 1 <= int(headers["Retry-After"]) <= 300
        assert "too many failed logins" in str(body["error"])
        # Other names from the same address still log in.
        assert (await login(http, login_api, "dave", "dave-password-1"))[0] == 200
        # Hammering the locked name fills neither the argon2 threads nor the audit log.
        rows = await audit.count()
        statuses = await asyncio.gather(
            *(login(http, login_api, "carol", f"guess-{i}-xxxxx") for i in range(300))
        )
        assert {s for s, _, _ in statuses} == {429}
        assert await audit.count() - rows <= 2
    log = [(e.actor, e.action, e.result) for e in await audit.entries(400)]
    assert log.count(("carol", "login", "denied")) == 5
    assert ("carol", "login", "ok") not in log


@SQLITE
async def test_a_success_resets_the_names_count(login_api: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            assert (await login(http, login_api, "carol", "typo-typo-1"))[0] == 401
        assert (await login(http, login_api, "carol", "carol-password-1"))[0] == 200
        for _ in range(5):
            assert (await login(http, login_api, "carol", "typo-typo-1"))[0] == 401
        assert (await login(http, login_api, "carol", "typo-typo-1"))[0] == 429


@SQLITE
async def test_twenty_failures_from_one_address_lock_the_address(login_api: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(20):  # one guess per name: no name reaches its limit
            assert (await login(http, login_api, f"user{i}", "guess-guess-1"))[0] == 401
        status, headers, _ = await login(http, login_api, "carol", "carol-password-1")
        assert status == 429 and int(headers["Retry-After"]) >= 1


@SQLITE
async def test_a_flood_without_a_session_costs_the_audit_log_a_few_rows(
    db: Database, tmp_path: Path, users: Users, audit: AuditLog
) -> None:
    store = RecordingStore(db, tmp_path / "store", tmp_path / "spool", audit)
    server = await serve(build_app(store, users))
    before = await audit.count()
    paths = ["/api/recordings", "/api/recordings/x/audio", "/admin", "/.env"]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            slots = asyncio.Semaphore(64)

            async def anonymous(i: int) -> int:
                headers = {"Authorization": f"Bearer forged-{i}"} if i % 2 else {}
                async with slots, http.get(server.make_url(paths[i % 4]), headers=headers) as r:
                    return r.status

            statuses = await asyncio.gather(*(anonymous(i) for i in range(10_000)))
        assert set(statuses) == {401}
        assert await audit.count() - before <= 2
    finally:
        await server.close()  # the window's count is written when the server stops
    added = (await audit.entries(10))[: await audit.count() - before]
    assert len(added) <= 3
    assert all((e.actor, e.action, e.result) == ("anonymous", "http", "denied") for e in added)
    assert sum(int(e.detail.get("count", 1)) for e in added) == 10_000
    digest = next(e for e in added if "count" in e.detail)
    assert set(digest.detail["paths"]) == set(paths)
    assert digest.detail["addresses"] == ["127.0.0.1"]
    assert set(digest.detail["why"]) == {"no valid session"}
    assert await audit.verify() == []


@SQLITE
async def test_search_limit_must_be_1_to_1000(
    db: Database, tmp_path: Path, users: Users, audit: AuditLog
) -> None:
    store = RecordingStore(db, tmp_path / "store", tmp_path / "spool", audit)
    await store.ingest(make_wav(store.spool_dir / "7.1--7.2.wav", 0.2), CallFacts("5551234"))
    server = await serve(build_app(store, users))
    try:
        async with aiohttp.ClientSession() as http:
            _, _, body = await login(http, server, "carol", "carol-password-1")
            auth = {"Authorization": f"Bearer {body['token']}"}
            url = server.make_url("/api/recordings")
            for bad in ("0", "5000", "-1", "ten", "", "1e3", "9" * 5000):
                async with http.get(url, params={"limit": bad}, headers=auth) as r:
                    assert r.status == 400, bad
                    assert (
                        "limit must be a whole number from 1 to 1000" in (await r.json())["error"]
                    )
            for good in ("1", "1000"):
                async with http.get(url, params={"limit": good}, headers=auth) as r:
                    assert r.status == 200 and len(await r.json()) == 1
    finally:
        await server.close()


def test_cli_search_limit_must_be_1_to_1000(tmp_path: Path) -> None:
    conf = write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    for bad in ("0", "5000", "ten"):
        refused = hotline(conf, "recordings", "search", "--limit", bad)
        assert refused.returncode == 2, refused.stderr
        assert "--limit: must be a whole number from 1 to 1000" in refused.stderr
    assert hotline(conf, "recordings", "search", "--limit", "1000", "--json").returncode == 0


@SQLITE
async def test_health_is_ok_degraded_or_down(users: Users, audit: AuditLog) -> None:
    parts: dict[str, dict[str, object]] = {
        "ami": {"connected": True},
        "recordings": {"connected": True, "degraded": False},
    }

    def health() -> HealthReport:
        return parts

    server = await serve(build_web_app(users, audit, health=health))
    try:
        async with aiohttp.ClientSession() as http:

            async def check() -> tuple[int, dict[str, object]]:
                async with http.get(server.make_url("/health")) as r:
                    return r.status, await r.json()

            assert await check() == (200, {"status": "ok", "ok": True, **parts})
            parts["recordings"] = {"connected": True, "degraded": True, "why": "sweep failing"}
            status, body = await check()
            assert (status, body["status"], body["ok"]) == (200, "degraded", True)
            assert body["recordings"] == parts["recordings"]  # and why
            parts["ami"]["connected"] = False  # down wins over degraded
            status, body = await check()
            assert (status, body["status"], body["ok"]) == (503, "down", False)
    finally:
        await server.close()


# -- the command line ----------------------------------------------------------------------


def write_config(folder: Path, db_url: str) -> Path:
    conf = folder / "hotline.toml"
    conf.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[audit]\nkey_file = "{folder / "audit.key"}"\n'
        f'checkpoint_file = "{folder / "audit.jsonl"}"\n'
        f'[recordings]\nstore_dir = "{folder / "store"}"\nspool_dir = "{folder / "spool"}"\n'
        "[ami]\nenabled = false\n"
    )
    return conf


def not_root() -> list[str]:
    """A command prefix that runs a program as an OS user other than root.

    Nothing when we are not root.  As root (CI is), a user namespace in which
    we are ``nobody`` (65534): the kernel answers ``geteuid()`` with 65534,
    while the files stay reachable (the interpreter may live under /root).
    """
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]
    probe = [*prefix, sys.executable, "-c", "import os; assert os.geteuid() == 65534"]
    # util-linux's unshare and user namespaces are here (make install's Debian has
    # both): without them this proves nothing, so it fails rather than skips.
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.fail("no user namespaces here: cannot run the CLI as someone other than root")
    return prefix


def hotline(
    conf: Path, *argv: str, env: dict[str, str] | None = None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """``hotline -c CONF ARGV`` in a process of its own; no HOTLINE_* variable but ``env``'s."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    return subprocess.run(
        [*prefix, HOTLINE, "-c", str(conf), *argv],
        cwd=conf.parent,
        env={**environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@SQLITE
async def test_audit_show_prints_control_characters_escaped(db: Database, tmp_path: Path) -> None:
    conf = write_config(tmp_path, db.url)
    audit = AuditLog.open(db, tmp_path / "audit.key", tmp_path / "audit.jsonl")
    await audit.record("evil\x1b[2J", "login", "", "denied")  # a name that clears the screen
    await audit.record(
        "anonymous",
        "http",
        "/api/\x1b]0;owned\x07\u202egnp.exe",  # a window title, a bell, a bidi override
        "denied",
        {"why": "no valid session", "path": "/x\x9b31mred\x7f"},  # C1 CSI and DEL
    )
    shown = hotline(conf, "audit", "show")
    assert shown.returncode == 0, shown.stderr
    raw = [c for c in shown.stdout if c != "\n" and unicodedata.category(c) in ("Cc", "Cf")]
    assert raw == [], f"control characters reached the terminal: {raw!r}"
    assert "evil\\x1b[2J" in shown.stdout
    assert "/api/\\x1b]0;owned\\x07\\u202egnp.exe" in shown.stdout
    assert "\\x9b31mred\\x7f" in shown.stdout


@pytest.fixture
def as_site(tmp_path: Path) -> Path:
    """An empty site whose only user will be carol (compliance)."""
    return write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")


async def entries(conf: Path) -> list[tuple[str, str, str, str, dict[str, object]]]:
    db = Database(f"sqlite+aiosqlite:///{conf.parent / 'hotline.db'}")
    try:
        audit = AuditLog.open(db, conf.parent / "audit.key", conf.parent / "audit.jsonl")
        return [(e.actor, e.action, e.target, e.result, e.detail) for e in await audit.entries()]
    finally:
        await db.close()


async def test_as_another_user_needs_their_password(as_site: Path) -> None:
    added = subprocess.run(
        [
            HOTLINE,
            "-c",
            str(as_site),
            "users",
            "add",
            "carol",
            "--role=compliance",
            "--password-stdin",
        ],
        input="carol-password-1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    someone = not_root()
    me = "nobody" if someone else pwd.getpwuid(os.geteuid()).pw_name
    search = ("recordings", "search", "--json", "--as", "carol")

    bare = hotline(as_site, *search, prefix=someone)
    assert bare.returncode == 2 and bare.stdout == ""
    assert "--as carol needs carol's password" in bare.stderr
    assert "HOTLINE_PASSWORD" in bare.stderr

    wrong = hotline(as_site, *search, env={"HOTLINE_PASSWORD": "nope-nope-1"}, prefix=someone)
    assert wrong.returncode == 2 and "wrong name or password" in wrong.stderr

    right = hotline(as_site, *search, env={"HOTLINE_PASSWORD": "carol-password-1"}, prefix=someone)
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "[]"

    log = await entries(as_site)
    assert (f"os:{me}", "act_as", "carol", "denied", {"why": "no password"}) in log
    assert (f"os:{me}", "act_as", "carol", "denied", {"why": "wrong password"}) in log
    assert [e[:4] for e in log if e[1] == "search"] == [("carol", "search", "", "ok")]


async def test_root_acts_as_a_user_without_the_password_and_is_named(as_site: Path) -> None:
    # make test runs as root (apt, the Asterisk sandbox's chroot): so does this test.
    assert os.geteuid() == 0, "root's --as needs root: run make test as root, as CI does"
    added = subprocess.run(
        [HOTLINE, "-c", str(as_site), "users", "add", "carol", "--role", "compliance"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    run = hotline(as_site, "recordings", "search", "--json", "--as", "carol")
    assert run.returncode == 0, run.stderr
    unknown = hotline(as_site, "recordings", "search", "--as", "mallory")
    assert unknown.returncode == 2 and "no user 'mallory'" in unknown.stderr
    log = await entries(as_site)
    assert ("carol (root via --as)", "search", "", "ok") in [e[:4] for e in log]
    assert ("os:root", "act_as", "mallory", "denied", {"why": "no such user"}) in log
