"""The compliance HTTP API over a real socket: sessions, roles, Range, audit."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hotline.recordings.http import build_app, start_api
from hotline.recordings.store import CallFacts, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.users import Users
from hotline.storage.db import Database
from tests.support.audio import make_wav


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[tuple[str, RecordingStore, str]]:
    audit = AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl")
    store = RecordingStore(db, tmp_path / "store", tmp_path / "spool", audit)
    rec = await store.ingest(
        make_wav(store.spool_dir / "7.1--7.2.wav", 1.0), CallFacts("5551234", "1001", "billing")
    )
    users = Users(db)
    await users.add("carol", "compliance", "carol-password-1")
    await users.add("agent1001", "agent", "agent-password-1")
    port = free_port()
    runner = await start_api(build_app(store, users, session_ttl_s=2.0), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", store, rec.id
    await runner.cleanup()


async def login(http: aiohttp.ClientSession, base: str, name: str, password: str) -> str:
    async with http.post(f"{base}/api/session", json={"name": name, "password": password}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_compliance_officer_searches_and_streams_with_range(
    api: tuple[str, RecordingStore, str],
) -> None:
    base, store, rec_id = api
    async with aiohttp.ClientSession() as http:
        token = await login(http, base, "carol", "carol-password-1")
        auth = {"Authorization": f"Bearer {token}"}
        async with http.get(
            f"{base}/api/recordings", params={"caller": "5551234"}, headers=auth
        ) as r:
            found = await r.json()
        assert [f["id"] for f in found] == [rec_id]
        whole = (store.store_dir / found[0]["path"]).read_bytes()
        async with http.get(
            f"{base}/api/recordings/{rec_id}/audio", headers={**auth, "Range": "bytes=100-199"}
        ) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
            assert await r.read() == whole[100:200]
        async with http.get(f"{base}/api/recordings/{rec_id}/export", headers=auth) as r:
            assert r.status == 200 and await r.read() == whole
            assert r.headers["X-Content-SHA256"] == found[0]["sha256"]
    actions = [(e.actor, e.action, e.result) for e in await store.audit.entries(20)]
    for expected in [
        ("carol", "login", "ok"),
        ("carol", "search", "ok"),
        ("carol", "listen", "ok"),
        ("carol", "export", "ok"),
    ]:
        assert expected in actions


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_refusals_are_clear_and_audited(api: tuple[str, RecordingStore, str]) -> None:
    base, store, rec_id = api
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/recordings") as r:
            assert r.status == 401
        async with http.post(
            f"{base}/api/session", json={"name": "carol", "password": "nope-nope-nope"}
        ) as r:
            assert r.status == 401
        agent = {
            "Authorization": f"Bearer {await login(http, base, 'agent1001', 'agent-password-1')}"
        }
        async with http.get(f"{base}/api/recordings", headers=agent) as r:
            assert r.status == 403
        async with http.get(f"{base}/api/recordings/{rec_id}/audio", headers=agent) as r:
            assert r.status == 403
        carol = {"Authorization": f"Bearer {await login(http, base, 'carol', 'carol-password-1')}"}
        for bad in ("..%2F..%2Fetc%2Fpasswd", "0" * 32, "x" * 40):
            async with http.get(f"{base}/api/recordings/{bad}/audio", headers=carol) as r:
                assert r.status == 404, bad
        await asyncio.sleep(2.2)  # the session lives 2 s in this test
        async with http.get(f"{base}/api/recordings", headers=carol) as r:
            assert r.status == 401 and "expired" in (await r.json())["error"]
    log = [(e.actor, e.action, e.result) for e in await store.audit.entries(30)]
    assert ("anonymous", "http", "denied") in log
    assert ("carol", "login", "denied") in log
    assert ("agent1001", "search", "denied") in log and ("agent1001", "listen", "denied") in log
    assert log.count(("carol", "listen", "refused")) == 3
    assert await store.audit.verify() == []


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_health_needs_no_session_and_reports_parts(db: Database, tmp_path: Path) -> None:
    audit = AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl")
    store = RecordingStore(db, tmp_path / "store", tmp_path / "spool", audit)
    parts: dict[str, dict[str, object]] = {
        "ami": {"connected": True},
        "mqtt": {"connected": True, "buffered": 0},
    }
    port = free_port()
    runner = await start_api(build_app(store, Users(db), health=lambda: parts), "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            parts["ami"]["connected"] = False  # Asterisk went away
            async with http.get(f"http://127.0.0.1:{port}/health") as r:
                body = await r.json()
                assert r.status == 503 and body["ok"] is False and body["ami"]["connected"] is False
    finally:
        await runner.cleanup()
