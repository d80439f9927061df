"""The recording trail proves itself and never leaves a gap (issue 14).

Sealed rows (a WAV swapped together with its row's hash is caught), callback
recordings stored and found, strangers in the spool quarantined and reported,
the sweeper riding out a database that is away, purge re-checking the hold,
Range and HEAD not re-hashing, and the modes of what the store writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import stat
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from hotline.events import CallEnded
from hotline.recordings.ingest import CallIngest, SweeperHealth, sweep_forever, watch_spool
from hotline.recordings.store import CallFacts, IntegrityError, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.users import Actor
from hotline.storage.db import Database
from hotline.storage.tables import CallbackRow, RecordingRow
from tests.support.audio import make_wav

COMPLIANCE = Actor("carol", frozenset({"compliance"}))
ADMIN = Actor("adam", frozenset({"admin"}))


def _store(db: Database, tmp_path: Path) -> RecordingStore:
    return RecordingStore(
        db,
        tmp_path / "store",
        tmp_path / "spool",
        AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl"),
    )


@pytest.fixture
def store(db: Database, tmp_path: Path) -> RecordingStore:
    return _store(db, tmp_path)


async def test_wav_swapped_with_its_hash_fails_the_seal(
    store: RecordingStore, db: Database
) -> None:
    a = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts("5550001"))
    b = await store.ingest(make_wav(store.spool_dir / "2.1--2.2.wav", 2.0), CallFacts("5550002"))
    assert await store.verify() == []
    # Someone with the database and the files but not the key: another call's
    # audio put in place of a's, and a's row made to match it.
    (store.store_dir / a.path).write_bytes((store.store_dir / b.path).read_bytes())
    async with db.sessions() as s, s.begin():
        await s.execute(
            update(RecordingRow)
            .where(RecordingRow.id == a.id)
            .values(sha256=b.sha256, size=b.size, caller="5559999")
        )
    problems = await store.verify()
    assert problems == [f"recording {a.id}: seal wrong: the row was changed without the key"]
    with pytest.raises(IntegrityError):
        await store.open(COMPLIANCE, a.id)
    # Removing the seal instead is reported too (rows before it are sealed).
    async with db.sessions() as s, s.begin():
        await s.execute(
            update(RecordingRow).where(RecordingRow.id == b.id).values(seal=None, key_id=None)
        )
    assert any(p.startswith(f"recording {b.id}: unsealed") for p in await store.verify())


async def test_hold_keeps_the_seal_valid(store: RecordingStore) -> None:
    rec = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts())
    await store.set_hold(ADMIN, rec.id, True, "case 42")
    await store.set_hold(ADMIN, rec.id, False)
    await store.set_hold(ADMIN, rec.id, True, "case 43")
    assert await store.verify() == []
    [found] = await store.search(COMPLIANCE, call_id="1.1")
    assert found.legal_hold and found.hold_reason == "case 43"


async def test_callback_recording_is_stored_with_the_callback(
    store: RecordingStore, db: Database
) -> None:
    cb_id = "3f9a0c2b7d1e4f5a8b6c0d1e2f3a4b5c"
    now = datetime.now(UTC)
    async with db.sessions() as s, s.begin():
        s.add(
            CallbackRow(
                id=cb_id,
                queue="billing",
                number="5551234",
                call_id="1795390746.0",
                requested_at=now,
                status="done",
                attempts=1,
                next_attempt_at=now,
                agent="1001",
                history=[],
                updated_at=now,
            )
        )
    channel = f"cb-{cb_id[:12]}-1-1795390800"
    spool = make_wav(store.spool_dir / f"{channel}--{channel}.wav", 1.0)
    # As the sweeper finds it (no CTI event): everything from the callback record.
    report = await store.sweep(min_age_s=0)
    assert report.ingested == [spool.name] and not spool.exists()
    [rec] = await store.search(COMPLIANCE, caller="5551234")
    assert (rec.callback_id, rec.agent, rec.queue, rec.call_id) == (
        cb_id,
        "1001",
        "billing",
        channel,
    )
    ingest = [e for e in await store.audit.entries(10) if e.action == "ingest"]
    assert ingest[0].detail["callback_id"] == cb_id
    assert await store.verify() == []


async def test_a_stranger_in_the_spool_is_quarantined_and_reported(
    store: RecordingStore,
) -> None:
    stranger = make_wav(store.spool_dir / "voicemail-1234.wav", 1.0)
    digest = hashlib.sha256(stranger.read_bytes()).hexdigest()
    report = await store.sweep(min_age_s=0)
    assert report.quarantined == ["voicemail-1234.wav"] and not stranger.exists()
    kept = store.store_dir / "quarantine" / "voicemail-1234.wav"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    assert await store.verify() == [
        "quarantined spool file quarantine/voicemail-1234.wav: names no call "
        "(not LINKEDID--UNIQUEID.wav); listen to it and file it by hand"
    ]
    [entry] = [e for e in await store.audit.entries(10) if e.action == "quarantine"]
    assert entry.detail == {
        "source": "voicemail-1234.wav",
        "sha256": digest,
        "size": kept.stat().st_size,
    }


async def test_purge_spares_a_recording_held_after_it_was_read(
    store: RecordingStore, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts())
    async with db.sessions() as s, s.begin():
        await s.execute(
            update(RecordingRow)
            .where(RecordingRow.id == old.id)
            .values(retention_until=date.today() - timedelta(days=1))
        )
    # A hold lands between purge's read and its delete: the delete re-checks.
    real = store.audit.record_with

    async def hold_first(*args: object, **kwargs: object) -> object:
        if args[2] == "purge":
            async with db.sessions() as s, s.begin():
                await s.execute(
                    update(RecordingRow).where(RecordingRow.id == old.id).values(legal_hold=True)
                )
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.audit, "record_with", hold_first)
    assert await store.purge(ADMIN) == []
    assert (store.store_dir / old.path).exists()
    assert not [e for e in await store.audit.entries(20) if e.action == "purge"]


async def test_range_requests_do_not_rehash_an_unchanged_file(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts())
    import hotline.recordings.store as store_module

    hashed: list[Path] = []
    real = store_module._sha256

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(store_module, "_sha256", counting)
    for _ in range(20):
        await store.open(COMPLIANCE, rec.id)
    assert len(hashed) == 1
    # Changed on disk since: hashed again, and refused.
    path = store.store_dir / rec.path
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        await store.open(COMPLIANCE, rec.id)
    assert len(hashed) == 2


async def test_store_files_are_private(store: RecordingStore) -> None:
    rec = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts())
    path = store.store_dir / rec.path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (path.parent, path.parent.parent, path.parent.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


async def test_sweeper_rides_out_a_locked_database(tmp_path: Path) -> None:
    """SQLite held locked for 10 s while calls end: afterwards every recording is
    stored, each with exactly one ingest entry, and the spool is empty."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await db.migrate()
    try:
        store = _store(db, tmp_path)
        ingest = CallIngest(store, settle_s=0.0)
        health = SweeperHealth(stalled_after_s=3.0)
        sweeper = asyncio.create_task(
            sweep_forever(
                store, min_age_s=0.5, interval_s=0.25, is_live=lambda _c: False, health=health
            )
        )
        watcher = asyncio.create_task(watch_spool(store, health, 0.25))
        locked, release = threading.Event(), threading.Event()

        def hold_lock() -> None:
            con = sqlite3.connect(tmp_path / "hotline.db", isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(30)
            con.execute("ROLLBACK")
            con.close()

        holder = threading.Thread(target=hold_lock)
        holder.start()
        await asyncio.to_thread(locked.wait, 5)
        t0 = time.monotonic()
        calls = [f"17953907{n:02d}.0" for n in range(6)]
        for call in calls:
            make_wav(store.spool_dir / f"{call}--{call[:-1]}1.wav", 0.5)
            ingest.on_call_ended(CallEnded(call, "5550100", "1001", "support"))
            await asyncio.sleep(1.0)
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - t0)))
        # The database was away all along: nothing could be stored, and /health says so.
        assert len(list(store.spool_dir.glob("*.wav"))) == len(calls)
        report = health.report()
        assert report["degraded"] is True and report["spool_files"] == len(calls), report
        release.set()
        await asyncio.to_thread(holder.join)

        async def all_stored() -> bool:
            async with db.sessions() as s:
                n = len(list(await s.scalars(select(RecordingRow.id))))
            return n == len(calls) and not list(store.spool_dir.glob("*.wav"))

        deadline = time.monotonic() + 60
        while not await all_stored():
            assert time.monotonic() < deadline, "recordings not stored a minute after the outage"
            await asyncio.sleep(0.25)
        await ingest.drain()
        async with db.sessions() as s:
            rows = {r.id: r for r in await s.scalars(select(RecordingRow))}
        ingests = [e for e in await store.audit.entries(100) if e.action == "ingest"]
        assert sorted(e.target for e in ingests) == sorted(rows)
        assert all(r.queue == "support" for r in rows.values())
        assert await store.verify() == []
        await asyncio.sleep(0.6)
        assert health.report()["degraded"] is False
        sweeper.cancel()
        watcher.cancel()
    finally:
        await db.close()


async def test_a_deleted_row_and_file_are_reported_removed(
    store: RecordingStore, db: Database
) -> None:
    keep = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav", 1.0), CallFacts())
    gone = await store.ingest(make_wav(store.spool_dir / "2.1--2.2.wav", 1.0), CallFacts())
    (store.store_dir / gone.path).unlink()
    async with db.sessions() as s, s.begin():
        await s.execute(delete(RecordingRow).where(RecordingRow.id == gone.id))
    [problem] = await store.verify()
    assert problem.startswith(f"recording {gone.id}: removed: stored at audit entry ")
    assert "(call 2.1)" in problem and keep.id not in problem
