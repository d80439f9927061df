"""The audit log's sealing keys: the key file's permissions, its format, key rotation."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hotline.records.audit import AuditLog
from hotline.records.seal import (
    CheckpointRead,
    KeyFileError,
    Sealer,
    append_checkpoint,
    key_id,
    make_checkpoint,
    read_checkpoints,
)
from hotline.storage.db import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_file_is_created_0600_in_a_folder_created_0700(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "keys" / "audit.key"
    sealer = Sealer.load_or_create(key_file)
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700 and mode(key_file.parent.parent) == 0o700
    assert list(sealer.keys) == [sealer.current]
    kid, key_hex = key_file.read_text().split()
    assert kid == sealer.current == key_id(bytes.fromhex(key_hex))
    assert len(bytes.fromhex(key_hex)) == 32
    again = Sealer.load_or_create(key_file)  # an existing key is kept, not replaced
    assert again == sealer
    assert [p.name for p in key_file.parent.iterdir()] == ["audit.key"]  # no temporary left


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    Sealer.load_or_create(key_file)
    os.chmod(key_file, 0o644)
    with pytest.raises(KeyFileError, match="mode 0644 lets others read it"):
        Sealer.load(key_file)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no key in it"),
        ("abc\n", "not 'KEY_ID HEX_KEY'"),
        ("0123456789abcdef " + "11" * 32 + "\n", "key id does not fit the key"),
    ],
)
def test_a_malformed_key_file_is_refused(tmp_path: Path, text: str, why: str) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(text)
    key_file.chmod(0o600)
    with pytest.raises(KeyFileError, match=why):
        Sealer.load(key_file)


def test_seals_verify_only_with_their_key() -> None:
    a, b = Sealer.generate(), Sealer.generate()
    kid, seal = a.seal_entry("ab" * 32)
    assert a.entry_ok(kid, "ab" * 32, seal) is True
    assert a.entry_ok(kid, "cd" * 32, seal) is False
    assert b.entry_ok(kid, "ab" * 32, seal) is None  # unknown key id
    # An entry's seal is not a checkpoint's: the two are domain-separated.
    assert a.checkpoint_ok(kid, 1, "ab" * 32, "2026-11-30T06:00:00+00:00", seal) is False


def test_rotation_keeps_old_keys_and_seals_with_the_new_one(tmp_path: Path) -> None:
    key_file = tmp_path / "audit.key"
    first = Sealer.load_or_create(key_file)
    kid, seal = first.seal_entry("ab" * 32)
    rotated = Sealer.rotate(key_file)
    assert rotated.current != first.current and set(rotated.keys) == {
        first.current,
        rotated.current,
    }
    assert rotated.entry_ok(kid, "ab" * 32, seal) is True
    assert rotated.seal_entry("ab" * 32)[0] == rotated.current
    assert mode(key_file) == 0o600
    assert Sealer.load(key_file) == rotated


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await database.migrate()
    yield database
    await database.close()


async def test_entries_sealed_before_a_rotation_still_verify(db: Database, tmp_path: Path) -> None:
    key_file, checkpoints = tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl"
    before = AuditLog.open(db, key_file, checkpoints)
    await before.record("carol", "listen", "rec1")
    await before.record("carol", "listen", "rec2")
    Sealer.rotate(key_file)
    after = AuditLog.open(db, key_file, checkpoints)
    await after.record("carol", "listen", "rec3")
    ids = [e.key_id for e in reversed(await after.entries())]
    assert ids == [before.sealer.current, before.sealer.current, after.sealer.current]
    assert before.sealer.current != after.sealer.current
    report = await after.check()
    assert report.ok, report.problems
    assert report.sealed == 3

    # A key taken out of the key file: what it sealed is named, not passed.
    old_line, new_line = key_file.read_text().splitlines()
    key_file.write_text(new_line + "\n")
    report = await AuditLog.open(db, key_file, checkpoints).check()
    assert [(p.seq, p.kind) for p in report.problems] == [
        (None, "unknown-key"),
        (None, "unknown-key"),
        (1, "unknown-key"),
        (2, "unknown-key"),
    ]
    assert old_line.split()[0] in report.problems[2].message


def test_a_later_read_of_the_checkpoint_file_goes_on_where_the_first_stopped(
    tmp_path: Path,
) -> None:
    """verify reads the file twice (before the walk, and under the lock): the second
    read checks only the new lines yet says what a full read says."""
    sealer, path = Sealer.generate(), tmp_path / "checkpoints.jsonl"
    for seq in (1, 2):
        append_checkpoint(path, make_checkpoint(sealer, seq, f"{seq:064x}"))
    first = read_checkpoints(path, sealer)
    with path.open("ab") as f:
        f.write(b"not json\n")
    append_checkpoint(path, make_checkpoint(sealer, 3, f"{3:064x}"))

    def facts(r: CheckpointRead) -> tuple[object, ...]:
        return (r.count, r.first_seq, r.newest, r.problems, r.lines)

    later = read_checkpoints(path, sealer, first)
    assert facts(later) == facts(read_checkpoints(path, sealer))
    assert later.newest is not None and later.newest.seq == 3
    assert later.problems == ((3, "checkpoint-unreadable", "unreadable"),)

    # A file that ends in a line cut short is read again from the start next time,
    # and one that shrank (cut, replaced) too.
    with path.open("ab") as f:
        f.write(b'{"seq": 4')
    cut = read_checkpoints(path, sealer, later)
    assert cut.end is None
    append_checkpoint(path, make_checkpoint(sealer, 5, f"{5:064x}"))
    assert facts(read_checkpoints(path, sealer, cut)) == facts(read_checkpoints(path, sealer))
    path.write_bytes(path.read_bytes()[: first.end])
    assert facts(read_checkpoints(path, sealer, later)) == facts(read_checkpoints(path, sealer))
