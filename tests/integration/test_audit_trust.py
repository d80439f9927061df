"""The audit log proves itself: sealed entries, a checkpoint outside the database, one chain.

Each attack is what someone with write access to the database (but not to the
key file) could do: delete the newest entries or all of them, edit an entry
and re-hash the chain from there, strip seals.  Each must be reported, by
``AuditLog.check`` and by ``hotline audit verify``/``hotline recordings verify``
(exit 1, the entry named).  Two processes appending at once must build one
chain.  Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from hotline.records.audit import GENESIS, AuditLog, AuditReport, entry_hash
from hotline.storage.db import Database
from hotline.storage.tables import AuditRow
from tests.support.paths import REPO


def key_file(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "audit.key"


def checkpoint_file(tmp_path: Path) -> Path:
    return tmp_path / "audit-checkpoints.jsonl"


@pytest.fixture
def audit(db: Database, tmp_path: Path) -> AuditLog:
    return AuditLog.open(db, key_file(tmp_path), checkpoint_file(tmp_path))


async def fill(audit: AuditLog, n: int) -> None:
    for i in range(n):
        await audit.record("carol", "listen", f"rec{i}", "ok", {"i": i})


def kinds(report: AuditReport) -> list[tuple[int | None, str]]:
    return [(p.seq, p.kind) for p in report.problems]


async def test_an_untouched_log_is_intact_sealed_and_checkpointed(audit: AuditLog) -> None:
    await fill(audit, 5)
    report = await audit.check()
    assert report.ok, report.problems
    assert report.entries == report.sealed == 5
    assert report.checkpoint is not None and report.checkpoint.seq == 5
    assert report.summary().startswith(
        "audit log intact: 5 entries, sealed, newest checkpoint seq 5 at "
    )
    entries = await audit.entries(5)
    assert all(e.seal and e.key_id == audit.sealer.current for e in entries)
    assert len(checkpoint_file_lines(audit)) == 5


def checkpoint_file_lines(audit: AuditLog) -> list[str]:
    return audit.checkpoint_file.read_text().splitlines()


async def test_deleting_the_newest_entry_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 5)
    async with db.sessions() as s, s.begin():
        await s.execute(delete(AuditRow).where(AuditRow.seq == 5))
    report = await audit.check()
    assert kinds(report) == [(5, "truncated")]
    assert "entry 5 removed" in report.problems[0].message
    assert not report.ok and report.summary() == "audit log: 1 problem(s)"


async def test_deleting_every_entry_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 4)
    async with db.sessions() as s, s.begin():
        await s.execute(delete(AuditRow))
    report = await audit.check()
    assert kinds(report) == [(1, "truncated")]
    assert "entries 1..4 removed" in report.problems[0].message


async def test_deleting_an_entry_in_the_middle_names_it(audit: AuditLog, db: Database) -> None:
    await fill(audit, 5)
    async with db.sessions() as s, s.begin():
        await s.execute(delete(AuditRow).where(AuditRow.seq == 3))
    assert kinds(await audit.check()) == [(3, "missing")]


async def rechain_from(db: Database, seq: int, **changes: str) -> None:
    """Edit entry ``seq`` and re-hash it and every later entry, seals left as they were."""
    async with db.sessions() as s, s.begin():
        rows = list(await s.scalars(select(AuditRow).order_by(AuditRow.seq)))
        prev = GENESIS
        for row in rows:
            if row.seq == seq:
                for name, value in changes.items():
                    setattr(row, name, value)
            if row.seq >= seq:
                row.prev_hash = prev
                row.hash = entry_hash(
                    prev,
                    row.seq,
                    row.at,
                    row.actor,
                    row.action,
                    row.target,
                    row.result,
                    dict(row.detail),
                )
            prev = row.hash


async def test_editing_and_rehashing_the_chain_without_the_key_is_detected(
    audit: AuditLog, db: Database
) -> None:
    await fill(audit, 5)
    await rechain_from(db, 3, actor="mallory")
    report = await audit.check()
    assert kinds(report) == [
        (3, "rechained"),
        (4, "rechained"),
        (5, "rechained"),
        (5, "checkpoint-mismatch"),
    ]
    assert "audit entry 3: seal wrong" in report.problems[0].message


async def test_editing_without_rehashing_is_named(audit: AuditLog, db: Database) -> None:
    await fill(audit, 3)
    async with db.sessions() as s, s.begin():
        await s.execute(update(AuditRow).where(AuditRow.seq == 2).values(result="denied"))
    assert kinds(await audit.check()) == [(2, "edited")]


async def test_stripping_seals_and_rechaining_is_detected(audit: AuditLog, db: Database) -> None:
    await fill(audit, 4)
    await rechain_from(db, 2, target="elsewhere")
    async with db.sessions() as s, s.begin():
        await s.execute(update(AuditRow).values(seal=None, key_id=None))
    report = await audit.check()
    assert [k for k in kinds(report) if k[1] == "unsealed"] == [
        (n, "unsealed") for n in (1, 2, 3, 4)
    ]
    assert (4, "checkpoint-mismatch") in kinds(report)


async def test_entries_from_before_sealing_are_reported_as_such(
    audit: AuditLog, db: Database
) -> None:
    # A log written before revision 0006: chained, not sealed.
    prev = GENESIS
    async with db.sessions() as s, s.begin():
        for seq in (1, 2):
            at = datetime(2026, 1, seq, tzinfo=UTC)
            h = entry_hash(prev, seq, at, "os:root", "user_add", f"u{seq}", "ok", {})
            s.add(
                AuditRow(
                    seq=seq,
                    at=at,
                    actor="os:root",
                    action="user_add",
                    target=f"u{seq}",
                    result="ok",
                    detail={},
                    prev_hash=prev,
                    hash=h,
                )
            )
            prev = h
    report = await audit.check()
    assert report.ok, report.problems
    assert "unsealed (before sealing was introduced" in report.summary()
    await fill(audit, 2)
    report = await audit.check()
    assert report.ok, report.problems
    assert (report.unsealed_before_sealing, report.sealed) == (2, 2)
    assert "sealed from entry 3 (2 unsealed, before sealing was introduced)" in report.summary()
    # An entry after the first sealed one made to look unsealed is flagged.
    async with db.sessions() as s, s.begin():
        await s.execute(update(AuditRow).where(AuditRow.seq == 4).values(seal=None, key_id=None))
    assert kinds(await audit.check()) == [(4, "unsealed")]


async def test_a_cut_or_edited_checkpoint_file_is_reported(audit: AuditLog) -> None:
    await fill(audit, 4)
    path = audit.checkpoint_file
    lines = path.read_text().splitlines(keepends=True)
    # Cut short: the log is now ahead of every checkpoint.
    path.write_text("".join(lines[:2]))
    assert kinds(await audit.check()) == [(3, "checkpoint-behind")]
    # An edited line (the head moved back to hide a deletion) fails its seal.
    edited = json.loads(lines[3])
    edited["seq"] = 2
    path.write_text("".join(lines[:3]) + json.dumps(edited) + "\n")
    assert [p.kind for p in (await audit.check()).problems] == [
        "checkpoint-seal",
        "checkpoint-behind",
    ]
    # A line cut mid-write, and a missing file.
    path.write_text("".join(lines) + lines[3][:20])
    report = await audit.check()
    assert kinds(report) == [(None, "checkpoint-unreadable")]
    assert f"{path}:5: unreadable (cut short)" in report.problems[0].message
    path.unlink()
    assert kinds(await audit.check()) == [(None, "checkpoint-missing")]
    # The next append starts a new file: one that begins late is reported too.
    await audit.record("carol", "listen", "rec5")
    assert kinds(await audit.check()) == [(1, "checkpoint-restarted")]


WRITER = """
import asyncio, sys
from pathlib import Path
from hotline.records.audit import AuditLog
from hotline.storage.db import Database

async def main(url, key, checkpoints, who, n):
    db = Database(url)
    audit = AuditLog.open(db, Path(key), Path(checkpoints))
    for i in range(int(n)):
        await audit.record(who, "listen", f"rec{i}")
    await db.close()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_appending_at_once_build_one_chain(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    assert key_file(tmp_path).exists()  # made by the fixture, before the writers start
    args = [db.url, str(key_file(tmp_path)), str(checkpoint_file(tmp_path))]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, *args, who, "200"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("server", "cli")
    ]
    for w in writers:
        _, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    async with db.sessions() as s:
        rows = list(await s.scalars(select(AuditRow).order_by(AuditRow.seq)))
    assert [r.seq for r in rows] == list(range(1, 401))
    actors = [r.actor for r in rows]
    assert actors.count("server") == actors.count("cli") == 200
    report = await audit.check()
    assert report.ok, report.problems[:5]
    assert report.checkpoint is not None and report.checkpoint.seq == 400
    assert len(checkpoint_file_lines(audit)) == 400


def hotline(tmp_path: Path, db: Database, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOTLINE_DATABASE__URL": db.url,
        "HOTLINE_AUDIT__KEY_FILE": str(key_file(tmp_path)),
        "HOTLINE_AUDIT__CHECKPOINT_FILE": str(checkpoint_file(tmp_path)),
        "HOTLINE_RECORDINGS__STORE_DIR": str(tmp_path / "store"),
        "HOTLINE_RECORDINGS__SPOOL_DIR": str(tmp_path / "spool"),
        "HOTLINE_AMI__ENABLED": "false",
    }
    return subprocess.run(
        [str(REPO / ".venv/bin/hotline"), *argv],
        cwd=tmp_path,  # no hotline.toml here: defaults and the overrides above
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_cli_says_intact_or_names_each_bad_entry(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await fill(audit, 3)
    good = hotline(tmp_path, db, "audit", "verify")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith(
        "audit log intact: 3 entries, sealed, newest checkpoint seq 3 at "
    )
    assert len(good.stdout.splitlines()) == 1
    as_json = hotline(tmp_path, db, "audit", "verify", "--json")
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])
    recordings = hotline(tmp_path, db, "recordings", "verify")
    assert recordings.returncode == 0, recordings.stderr
    assert "audit log intact: 3 entries" in recordings.stdout

    async with db.sessions() as s, s.begin():
        await s.execute(delete(AuditRow).where(AuditRow.seq == 3))
    bad = hotline(tmp_path, db, "audit", "verify")
    assert bad.returncode == 1
    assert "audit log truncated: it ends at entry 2" in bad.stdout
    assert bad.stdout.splitlines()[-1] == "audit log: 1 problem(s)"
    as_json = hotline(tmp_path, db, "audit", "verify", "--json")
    assert as_json.returncode == 1
    assert [(p["seq"], p["kind"]) for p in json.loads(as_json.stdout)] == [(3, "truncated")]
    recordings = hotline(tmp_path, db, "recordings", "verify")
    assert recordings.returncode == 1
    assert "audit log truncated" in recordings.stdout

    await rechain_from(db, 1, actor="mallory")
    bad = hotline(tmp_path, db, "audit", "verify")
    assert bad.returncode == 1
    assert "audit entry 1: seal wrong" in bad.stdout and "audit entry 2: seal wrong" in bad.stdout


async def test_the_cli_refuses_to_verify_without_the_key(
    audit: AuditLog, db: Database, tmp_path: Path
) -> None:
    await fill(audit, 1)
    key_file(tmp_path).unlink()
    run = hotline(tmp_path, db, "audit", "verify")
    assert run.returncode == 2 and "audit key file" in run.stderr
    assert not key_file(tmp_path).exists(), "verify never makes a new key"
