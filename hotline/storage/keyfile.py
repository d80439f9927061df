"""Key files kept outside the database: the audit log's sealing keys and the
recordings' site keys share one format and one set of rules.

One key per line, ``KEY_ID HEX_KEY`` (``#`` starts a comment); the last line
is the current key and every earlier one stays so what it sealed or wrapped
still opens.  A key id is the key's fingerprint (each kind of key its own,
:attr:`KeyKind.key_id`), so a line whose id does not fit its key is refused.
The file is created on first use, mode 0600, in folders created 0700, written
whole under a temporary name and linked in place (two processes starting at
once end with one file, never an empty one); a key file others can read is
refused; rotation appends a line with one ``write`` on ``O_APPEND``.  All of
it is blocking file work: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hotline.storage.files import fsync_dir


class KeyFileError(Exception):
    """The key file cannot be read, is malformed, or is readable by others."""


@dataclass(frozen=True)
class KeyKind:
    """What one kind of key file holds."""

    what: str  # how messages name the file: "audit key file"
    key_id: Callable[[bytes], str]  # the fingerprint a line's id must equal
    new_bytes: int  # the length of a key made here
    min_bytes: int  # the shortest key a line may hold
    max_bytes: int  # the longest

    def line(self, key: bytes) -> bytes:
        return f"{self.key_id(key)} {key.hex()}\n".encode()

    def new_key(self) -> bytes:
        return secrets.token_bytes(self.new_bytes)


def load_keys(key_file: Path, kind: KeyKind) -> tuple[dict[str, bytes], str]:
    """Every key in ``key_file`` by id, and the current one's id (the last line's)."""
    what = f"{kind.what} {key_file}"
    try:
        st = key_file.stat()
        text = key_file.read_text()
    except OSError as e:
        raise KeyFileError(f"{what}: {e.strerror}") from e
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{what}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600 it"
        )
    keys: dict[str, bytes] = {}
    current = ""
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            kid, key = parts[0], bytes.fromhex(parts[1])
        except ValueError:
            raise KeyFileError(f"{what}:{n}: not 'KEY_ID HEX_KEY'") from None
        if not kind.min_bytes <= len(key) <= kind.max_bytes:
            size = (
                f"{kind.min_bytes}"
                if kind.min_bytes == kind.max_bytes
                else f"{kind.min_bytes} to {kind.max_bytes}"
            )
            raise KeyFileError(f"{what}:{n}: key is not {size} bytes")
        if kind.key_id(key) != kid:
            raise KeyFileError(f"{what}:{n}: key id does not fit the key")
        keys[kid] = key
        current = kid
    if not keys:
        raise KeyFileError(f"{what}: no key in it")
    return keys, current


def ensure_key_file(key_file: Path, kind: KeyKind) -> None:
    """Create ``key_file`` (0600, folders 0700) with one new key if it is missing."""
    if key_file.exists():
        return
    folder = key_file.parent
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    # Written whole under a temporary name, then linked in place: two processes
    # starting at once both end with the one file, never with an empty one.
    tmp = folder / f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, kind.line(kind.new_key()))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, key_file)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        tmp.unlink()
    fsync_dir(folder)


def append_key(key_file: Path, kind: KeyKind) -> None:
    """Append a new key (the current one from now on) to a key file that loads."""
    load_keys(key_file, kind)  # refuse to append to a file we would not read
    fd = os.open(key_file, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, kind.line(kind.new_key()))  # one write: lines never interleave
        os.fsync(fd)
    finally:
        os.close(fd)
