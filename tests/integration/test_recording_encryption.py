"""Recordings encrypted at rest ([recordings] encrypt): ingest, verify, play with
Range, export, key rotation and a crash after the rename, against a real socket."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hotline.recordings.crypt import HEADER_SIZE, SiteKeys, is_encrypted
from hotline.recordings.http import build_app, start_api
from hotline.recordings.store import CallFacts, IngestStep, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.users import Actor, Users
from hotline.storage.db import Database
from tests.support.audio import make_wav

COMPLIANCE = Actor("carol", frozenset({"compliance"}))
ADMIN = Actor("adam", frozenset({"admin"}))


def _store(db: Database, tmp_path: Path, **kw: object) -> RecordingStore:
    return RecordingStore(
        db,
        tmp_path / "store",
        tmp_path / "spool",
        AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl"),
        keys=SiteKeys.load_or_create(tmp_path / "keys" / "recordings.key"),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(db: Database, tmp_path: Path) -> RecordingStore:
    return _store(db, tmp_path)


async def test_stored_encrypted_verified_and_exported_whole(
    store: RecordingStore, tmp_path: Path
) -> None:
    src = make_wav(store.spool_dir / "1795390746.0--1795390751.1.wav", 3.0)
    audio = src.read_bytes()
    rec = await store.ingest(src, CallFacts("5551234", "1001", "billing"))
    on_disk = (store.store_dir / rec.path).read_bytes()
    assert is_encrypted(store.store_dir / rec.path)
    assert audio[1000:1100] not in on_disk  # no stretch of the audio is readable
    assert rec.encrypted and rec.size == len(audio)
    assert rec.audio_sha256 == hashlib.sha256(audio).hexdigest()
    assert rec.sha256 == hashlib.sha256(on_disk).hexdigest()
    assert await store.verify() == []
    out = tmp_path / "export.wav"
    await store.export(COMPLIANCE, rec.id, out)
    assert out.read_bytes() == audio
    # One flipped byte in the ciphertext: verify names the recording.
    flipped = bytearray(on_disk)
    flipped[HEADER_SIZE + 5000] ^= 1
    (store.store_dir / rec.path).write_bytes(bytes(flipped))
    assert await store.verify() == [f"recording {rec.id}: file differs from its hash ({rec.path})"]


async def test_rotation_rewraps_keys_and_leaves_the_audio(
    store: RecordingStore, tmp_path: Path
) -> None:
    recs = [
        await store.ingest(make_wav(store.spool_dir / f"{n}.1--{n}.2.wav", 1.0), CallFacts())
        for n in range(3)
    ]
    before = {r.id: (store.store_dir / r.path).read_bytes() for r in recs}
    old_key = store.keys.current if store.keys else ""
    store.keys = SiteKeys.rotate(tmp_path / "keys" / "recordings.key")
    assert await store.rewrap_all(ADMIN) == (3, 0)
    assert await store.rewrap_all(ADMIN) == (0, 3)
    for r in recs:
        after = (store.store_dir / r.path).read_bytes()
        assert after != before[r.id]
        # Only the key slot changed: the encrypted audio is byte for byte the same.
        assert after[HEADER_SIZE:] == before[r.id][HEADER_SIZE:]
    assert await store.verify() == []
    # The new key alone opens them: drop the old one from a copy of the key file.
    only_new = SiteKeys(
        {store.keys.current: store.keys.keys[store.keys.current]}, store.keys.current
    )
    assert old_key not in only_new.keys
    store.keys = only_new
    out = tmp_path / "again.wav"
    await store.export(COMPLIANCE, recs[0].id, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == recs[0].audio_sha256
    rewraps = [e for e in await store.audit.entries(50) if e.action == "rewrap"]
    assert len(rewraps) == 3


async def test_a_crash_after_the_rename_reuses_the_encrypted_copy(
    db: Database, tmp_path: Path
) -> None:
    class Crash(Exception):
        pass

    def crash_after(step: IngestStep) -> None:
        if step == "renamed":
            raise Crash

    src = make_wav(tmp_path / "spool" / "1.1--1.2.wav", 1.0)
    with pytest.raises(Crash):
        await _store(db, tmp_path, after_step=crash_after).ingest(src, CallFacts())
    stored = list((tmp_path / "store").rglob("1.1--1.2.wav"))
    assert len(stored) == 1 and src.exists()
    first = stored[0].read_bytes()
    restarted = _store(db, tmp_path)
    rec = await restarted.ingest(src, CallFacts())
    assert (restarted.store_dir / rec.path).read_bytes() == first  # reused, not re-encrypted
    assert not src.exists() and await restarted.verify() == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def api(
    store: RecordingStore, db: Database
) -> AsyncIterator[tuple[str, RecordingStore, str, bytes]]:
    src = make_wav(store.spool_dir / "7.1--7.2.wav", 5.0)  # 80 kB: two chunks and more
    audio = src.read_bytes()
    rec = await store.ingest(src, CallFacts("5551234", "1001", "billing"))
    users = Users(db)
    await users.add("carol", "compliance", "carol-password-1")
    port = free_port()
    runner = await start_api(build_app(store, users), "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}", store, rec.id, audio
    await runner.cleanup()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_player_ranges_decrypt_only_what_they_ask(
    api: tuple[str, RecordingStore, str, bytes],
) -> None:
    base, _, rec_id, audio = api
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/session", json={"name": "carol", "password": "carol-password-1"}
        ) as r:
            auth = {"Authorization": f"Bearer {(await r.json())['token']}"}
        url = f"{base}/api/recordings/{rec_id}/audio"
        n = len(audio)
        for header, lo, hi in [
            ("bytes=100-199", 100, 199),
            ("bytes=65530-65545", 65530, 65545),  # across a chunk boundary
            (f"bytes={n - 10}-", n - 10, n - 1),
            ("bytes=-44", n - 44, n - 1),
            (f"bytes=0-{n + 1000}", 0, n - 1),
        ]:
            async with http.get(url, headers={**auth, "Range": header}) as r:
                assert r.status == 206, header
                assert r.headers["Content-Range"] == f"bytes {lo}-{hi}/{n}"
                assert await r.read() == audio[lo : hi + 1], header
        async with http.get(url, headers=auth) as r:
            assert r.status == 200 and r.headers["Accept-Ranges"] == "bytes"
            assert await r.read() == audio
        async with http.head(url, headers=auth) as r:
            assert r.status == 200 and int(r.headers["Content-Length"]) == n
        async with http.get(url, headers={**auth, "Range": f"bytes={n}-"}) as r:
            assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{n}"
        async with http.get(f"{base}/api/recordings/{rec_id}/export", headers=auth) as r:
            body = await r.read()
            assert body == audio
            assert r.headers["X-Content-SHA256"] == hashlib.sha256(audio).hexdigest()
