"""The audit log's sealing keys and its checkpoint file, both kept outside the database.

**Keys.**  The key file holds one HMAC-SHA-256 key per line, ``KEY_ID HEX_KEY``
(``#`` starts a comment); the last line is the current key, which seals new
entries, and every earlier line stays so entries sealed with it still verify.
A key id is the key's fingerprint (``KEY_ID = sha256("hotline-audit-key" +
key)[:16]``), so a line whose id does not fit its key is refused.  The file is
created on first start, mode 0600, in a folder created 0700; a key file any
other user can read is refused.  :meth:`Sealer.rotate` appends a new key.

**Checkpoints.**  Every append also appends one JSON line to the checkpoint
file, ``{"seq", "hash", "at", "key_id", "seal"}``: the new head of the chain,
sealed.  One ``write`` on an ``O_APPEND`` descriptor and an ``fsync``, so lines
from two processes never interleave.  Removing entries from the database
(the newest included, or all) leaves the log behind its newest checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hotline.storage.files import fsync_dir
from hotline.storage.keyfile import (
    KeyFileError,
    KeyKind,
    append_key,
    ensure_key_file,
    load_keys,
)

__all__ = ["KeyFileError", "Sealer", "key_id"]  # KeyFileError: where callers import it from

KEY_BYTES = 32
_ENTRY = b"hotline-audit-entry-v1:"
_CHECKPOINT = b"hotline-audit-checkpoint-v1:"
_RECORDING = b"hotline-recording-v1:"


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"hotline-audit-key" + key).hexdigest()[:16]


# Keys of at least 16 bytes (those made here: 32).
AUDIT_KEYS = KeyKind("audit key file", key_id, KEY_BYTES, 16, 1024)


@dataclass(frozen=True)
class Sealer:
    """HMAC-SHA-256 keys by id; ``current`` seals what is written now."""

    keys: Mapping[str, bytes]
    current: str

    # -- sealing ------------------------------------------------------------------

    def seal_entry(self, entry_hash: str) -> tuple[str, str]:
        """``(key_id, seal)`` of an audit entry's chained hash, with the current key."""
        return self.current, self._mac(self.current, _ENTRY + entry_hash.encode())

    def entry_ok(self, key: str, entry_hash: str, seal: str) -> bool | None:
        """Whether ``seal`` fits; ``None`` when ``key`` is not a known key id."""
        return self._check(key, _ENTRY + entry_hash.encode(), seal)

    def seal_checkpoint(self, seq: int, head: str, at: str) -> tuple[str, str]:
        return self.current, self._mac(self.current, _checkpoint_message(seq, head, at))

    def checkpoint_ok(self, key: str, seq: int, head: str, at: str, seal: str) -> bool | None:
        return self._check(key, _checkpoint_message(seq, head, at), seal)

    def seal_recording(self, metadata: bytes) -> tuple[str, str]:
        """``(key_id, seal)`` of a recording row's canonical metadata (its file hash included)."""
        return self.current, self._mac(self.current, _RECORDING + metadata)

    def recording_ok(self, key: str, metadata: bytes, seal: str) -> bool | None:
        return self._check(key, _RECORDING + metadata, seal)

    def _mac(self, key: str, message: bytes) -> str:
        return hmac.new(self.keys[key], message, hashlib.sha256).hexdigest()

    def _check(self, key: str, message: bytes, seal: str) -> bool | None:
        if key not in self.keys:
            return None
        return hmac.compare_digest(self._mac(key, message), seal)

    # -- the key file (hotline.storage.keyfile) -----------------------------------

    @classmethod
    def generate(cls) -> Sealer:
        """A sealer with one new random key (tests; nothing is written)."""
        key = AUDIT_KEYS.new_key()
        return cls({key_id(key): key}, key_id(key))

    @classmethod
    def load(cls, key_file: Path) -> Sealer:
        """Every key in ``key_file``; the last one is current."""
        return cls(*load_keys(key_file, AUDIT_KEYS))

    @classmethod
    def load_or_create(cls, key_file: Path) -> Sealer:
        """The keys in ``key_file``, creating it (0600, folder 0700) with one key if missing."""
        ensure_key_file(key_file, AUDIT_KEYS)
        return cls.load(key_file)

    @classmethod
    def rotate(cls, key_file: Path) -> Sealer:
        """Append a new key to ``key_file``: it seals from now on; the old ones still verify."""
        append_key(key_file, AUDIT_KEYS)
        return cls.load(key_file)


def _checkpoint_message(seq: int, head: str, at: str) -> bytes:
    return _CHECKPOINT + f"{seq}:{head}:{at}".encode()


# -- checkpoints -------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str  # ISO 8601, UTC, as sealed
    key_id: str
    seal: str
    line: int = 0  # its line in the file (1-based), when read

    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)

    def to_line(self) -> bytes:
        return (
            json.dumps(
                {
                    "seq": self.seq,
                    "hash": self.hash,
                    "at": self.at,
                    "key_id": self.key_id,
                    "seal": self.seal,
                },
                separators=(",", ":"),
            )
            + "\n"
        ).encode()


def make_checkpoint(sealer: Sealer, seq: int, head: str) -> Checkpoint:
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    kid, seal = sealer.seal_checkpoint(seq, head, at)
    return Checkpoint(seq, head, at, kid, seal)


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append one line with one ``write`` (``O_APPEND``) and ``fsync`` it (blocking)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        data = checkpoint.to_line()
        if os.write(fd, data) != len(data):
            raise OSError(f"{path}: short write of an audit checkpoint")
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


@dataclass(frozen=True)
class CheckpointRead:
    """What the checkpoint file says, read line by line (it is never held whole)."""

    exists: bool
    count: int = 0  # well-formed lines sealed with a known key
    first_seq: int | None = None  # the lowest seq of any well-formed line: sealing began there
    newest: Checkpoint | None = None  # the highest sequence number (the later line on a tie)
    problems: tuple[tuple[int, str, str], ...] = ()  # (line, kind, why)
    # Lines read and the byte offset after them, where a later read goes on; None
    # when the file ended in a line cut short (a later read starts over).
    lines: int = 0
    end: int | None = 0


def read_checkpoints(
    path: Path, sealer: Sealer, since: CheckpointRead | None = None
) -> CheckpointRead:
    """Every checkpoint line, each checked against its seal (blocking).

    With ``since`` (an earlier read of the same file), only the lines appended
    after it are read and checked, and the result covers the whole file; if
    the file is shorter than it was, it is read again from the start.
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return CheckpointRead(exists=False)
    with f:
        if (
            since is None
            or since.end is None
            or not since.exists
            or os.fstat(f.fileno()).st_size < since.end
        ):
            since = CheckpointRead(exists=True)
        count, first, newest = since.count, since.first_seq, since.newest
        problems = list(since.problems)
        f.seek(since.end or 0)
        n, whole = since.lines, True
        for n, raw in enumerate(f, start=since.lines + 1):
            whole = raw.endswith(b"\n")
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                cp = Checkpoint(
                    int(obj["seq"]),
                    str(obj["hash"]),
                    str(obj["at"]),
                    str(obj["key_id"]),
                    str(obj["seal"]),
                    n,
                )
            except (ValueError, KeyError, TypeError):
                why = "unreadable" if raw.endswith(b"\n") else "unreadable (cut short)"
                problems.append((n, "checkpoint-unreadable", why))
                continue
            # Where the file begins counts every well-formed line: a forged first
            # line is reported for its seal anyway.
            first = cp.seq if first is None else min(first, cp.seq)
            ok = sealer.checkpoint_ok(cp.key_id, cp.seq, cp.hash, cp.at, cp.seal)
            if ok is None:
                problems.append((n, "unknown-key", f"sealed with unknown key id {cp.key_id}"))
                continue
            if not ok:
                problems.append((n, "checkpoint-seal", "seal wrong (the line was edited)"))
                continue
            count += 1
            if newest is None or cp.seq >= newest.seq:
                newest = cp
        end = f.tell() if whole else None
    return CheckpointRead(True, count, first, newest, tuple(problems), n, end)
