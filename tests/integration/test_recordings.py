"""The recording store: crash-safe ingest, access control, audit chain, retention.

Runs on SQLite and PostgreSQL; the crash tests kill a real `hotline recordings
ingest` process with SIGKILL at each step and run it again.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hotline.config import load_config
from hotline.recordings.store import CallFacts, RecordingError, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.users import AccessDenied, Actor, Users
from hotline.storage.db import Database
from hotline.storage.tables import AuditRow, RecordingRow
from tests.support.audio import make_wav
from tests.support.paths import REPO

COMPLIANCE = Actor("carol", frozenset({"compliance"}))
ADMIN = Actor("adam", frozenset({"admin"}))
AGENT = Actor("1001", frozenset({"agent"}))


@pytest.fixture
def store(db: Database, tmp_path: Path) -> RecordingStore:
    return RecordingStore(
        db,
        tmp_path / "store",
        tmp_path / "spool",
        AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl"),
        retention_days={"billing": 2555},
        default_retention_days=365,
    )


async def test_ingest_stores_verified_copy_and_metadata(store: RecordingStore) -> None:
    src = make_wav(store.spool_dir / "1795390746.0--1795390751.1.wav", 2.0)
    rec = await store.ingest(src, CallFacts(caller="5551234", agent="1001", queue="billing"))
    assert not src.exists(), "the original goes only after the copy is stored and verified"
    stored = store.store_dir / rec.path
    assert stored.exists() and rec.path.count("/") == 3  # YYYY/MM/DD/name
    import hashlib

    assert hashlib.sha256(stored.read_bytes()).hexdigest() == rec.sha256
    assert (rec.call_id, rec.caller, rec.agent, rec.queue) == (
        "1795390746.0",
        "5551234",
        "1001",
        "billing",
    )
    assert abs(rec.duration_s - 2.0) < 0.05
    assert rec.retention_until == rec.ended_at.date() + timedelta(days=2555)
    entries = await store.audit.entries()
    assert entries[0].action == "ingest" and entries[0].target == rec.id


@pytest.mark.parametrize("step", ["copied", "renamed", "inserted", "recorded"])
async def test_kill_9_at_any_step_then_restart_stores_exactly_once(
    db: Database, tmp_path: Path, step: str
) -> None:
    spool, store_dir = tmp_path / "spool", tmp_path / "store"
    make_wav(spool / "1795390746.0--1795390751.1.wav", 1.0)
    conf = tmp_path / "hotline.toml"
    conf.write_text(
        f'[database]\nurl = "{db.url}"\n[recordings]\nspool_dir = "{spool}"\n'
        f'store_dir = "{store_dir}"\n[ami]\nenabled = false\n'
    )
    cmd = [
        str(REPO / ".venv/bin/hotline"),
        "-c",
        str(conf),
        "recordings",
        "ingest",
        "--min-age",
        "0",
    ]
    # The drill ingests as the command does and kills itself -9 after that step.
    drill = [sys.executable, "-m", "harness.crash_ingest", str(conf), step]
    crashed = subprocess.run(drill, cwd=REPO, capture_output=True, text=True)
    assert crashed.returncode == -9, crashed.stderr
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    async with db.sessions() as s:
        rows = list(await s.scalars(select(RecordingRow)))
    assert len(rows) == 1
    files = [p for p in store_dir.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["1795390746.0--1795390751.1.wav"]  # no .tmp left
    assert list(spool.glob("*.wav")) == []
    # Exactly one ingest entry, for the row that exists, and the log verifies
    # (a kill inside the transaction leaves neither the row nor the entry).
    audit = AuditLog.from_config(db, load_config(conf, environ={}))
    ingests = [e for e in await audit.entries(100) if e.action == "ingest"]
    assert [(e.target, e.detail["sha256"]) for e in ingests] == [(rows[0].id, rows[0].sha256)]
    assert (await audit.check()).ok, (await audit.check()).problems


async def test_failed_ingest_keeps_the_original(store: RecordingStore) -> None:
    src = make_wav(store.spool_dir / "1795390746.0--1795390751.1.wav")
    store.store_dir.parent.mkdir(parents=True, exist_ok=True)
    store.store_dir.write_text("not a folder")  # the store cannot be written
    report = await store.sweep(min_age_s=0)
    assert report.failed == [src.name] and src.exists()


async def test_roles_traversal_and_audit(store: RecordingStore) -> None:
    rec = await store.ingest(
        make_wav(store.spool_dir / "1.1--1.2.wav"), CallFacts("5550001", "1002", "support")
    )
    assert [r.id for r in await store.search(COMPLIANCE, caller="5550001")] == [rec.id]
    with pytest.raises(AccessDenied):
        await store.search(AGENT, caller="5550001")
    with pytest.raises(AccessDenied):
        await store.open(AGENT, rec.id)
    for bad in ("../../etc/passwd", "..%2f..%2fetc", rec.id[:-1] + "/", "0" * 32):
        with pytest.raises(RecordingError):
            await store.open(COMPLIANCE, bad)
    _, path = await store.open(COMPLIANCE, rec.id)
    assert path.is_relative_to(store.store_dir.resolve())
    log = [(e.actor, e.action, e.result) for e in reversed(await store.audit.entries(20))]
    assert ("1001", "search", "denied") in log and ("1001", "listen", "denied") in log
    assert log.count(("carol", "listen", "refused")) == 4
    assert ("carol", "listen", "ok") in log and ("carol", "search", "ok") in log
    assert await store.verify() == []


async def test_verify_detects_flipped_byte_missing_file_and_broken_chain(
    store: RecordingStore, db: Database
) -> None:
    a = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav"), CallFacts())
    b = await store.ingest(make_wav(store.spool_dir / "2.1--2.2.wav"), CallFacts())
    f = store.store_dir / a.path
    data = bytearray(f.read_bytes())
    data[1000] ^= 0x01
    f.write_bytes(bytes(data))
    (store.store_dir / b.path).unlink()
    async with db.sessions() as s, s.begin():
        await s.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="mallory"))
    problems = await store.verify()
    assert f"recording {a.id}: file differs from its hash ({a.path})" in problems
    assert f"recording {b.id}: file missing ({b.path})" in problems
    assert "audit entry 1: altered (hash does not match)" in problems
    with pytest.raises(RecordingError, match="integrity"):
        await store.open(COMPLIANCE, a.id)


async def test_purge_respects_retention_and_legal_hold(store: RecordingStore, db: Database) -> None:
    old = await store.ingest(make_wav(store.spool_dir / "1.1--1.2.wav"), CallFacts(queue="support"))
    held = await store.ingest(
        make_wav(store.spool_dir / "2.1--2.2.wav"), CallFacts(queue="support")
    )
    await store.set_hold(ADMIN, held.id, True, "dispute 4711")
    with pytest.raises(AccessDenied):
        await store.purge(COMPLIANCE)
    later = date.today() + timedelta(days=366)
    assert await store.purge(ADMIN, today=later) == [old.id]
    assert not (store.store_dir / old.path).exists() and (store.store_dir / held.path).exists()
    actions = [e.action for e in await store.audit.entries(10)]
    assert "purge" in actions and "hold" in actions
    assert await store.verify() == []


async def test_users_passwords_are_hashed(db: Database) -> None:
    users = Users(db)
    await users.add("carol", "compliance", "correct horse battery")
    assert await users.authenticate("carol", "correct horse battery") is not None
    assert await users.authenticate("carol", "wrong password!!") is None
    assert await users.authenticate("nobody", "whatever12345") is None
    with pytest.raises(ValueError):
        await users.add("eve", "root", "long enough pw")


async def test_lost_stored_copy_is_restored_from_the_spool(store: RecordingStore) -> None:
    name = "1795390746.0--1795390751.1.wav"
    src = make_wav(store.spool_dir / name, 1.0)
    backup = src.read_bytes()
    rec = await store.ingest(src, CallFacts())
    (store.store_dir / rec.path).unlink()  # the stored copy is lost...
    (store.spool_dir / name).write_bytes(backup)  # ...and the original turns up again
    again = await store.ingest(store.spool_dir / name)
    assert again.id == rec.id and (store.store_dir / rec.path).exists()
    assert await store.verify() == []
    assert (await store.audit.entries(1))[0].action == "restore"
