"""Recordings encrypted at rest: AES-256-GCM in fixed-size chunks, data keys wrapped by site keys.

Pure synchronous functions (callers run them in a thread).  Each recording
has its own random 32-byte data key; the data key is stored in the file's
header wrapped (AES key wrap, RFC 3394) by a **site key**, named by its key
id.  Rotating the site key re-wraps data keys (:func:`rewrap`: 56 bytes of
header per file); the audio is never re-encrypted.

**Site keys.**  A key file like the audit log's (``hotline/records/seal.py``):
one key per line, ``KEY_ID HEX_KEY`` (``#`` starts a comment), 32 random
bytes each; the last line is the current key, which wraps new data keys, and
every earlier line stays so files wrapped by it still open.  The key id is the
key's fingerprint, ``sha256("hotline-recording-key" + key)[:16]`` in hex (its
own domain string: an audit key and a site key never share an id), so a line
whose id does not fit its key is refused.  The file is created on first use,
mode 0600, its folders created 0700; a key file any other user can read is
refused.  :meth:`SiteKeys.rotate` appends a new key.

**File format** (version 1; integers big-endian)::

    offset size  field
         0    6  magic            b"HLREC1"
         6    1  version          1
         7    4  chunk size       plaintext bytes per chunk (default 65536)
        11    8  plaintext length
        19    8  nonce prefix     random per file
        27   16  site key id      ASCII hex          } the key slot: the only bytes
        43   40  wrapped data key AES-KW(site key)  } rewrap() changes
        83       chunk 0, chunk 1, ...

Chunk ``i`` is ``AES-256-GCM(data key, nonce = prefix || uint32(i), plaintext
bytes [i * chunk size, (i + 1) * chunk size), aad)``, stored as ``ciphertext
|| 16-byte tag``; every chunk is full but the last.  There are
``max(1, ceil(length / chunk size))`` chunks: an empty recording still has
one (empty) chunk, so its header is authenticated too.  ``aad`` is the first
27 bytes of the header (magic, version, chunk size, length, nonce prefix)
followed by one byte, 1 for the last chunk and 0 otherwise (redundant with
the length, which fixes the chunk count; kept so each tag says whether its
chunk ends the file).  So:

- a chunk altered, moved to another index or taken from another file fails
  its tag (the index is in the nonce, the file's nonce prefix and data key
  differ);
- cutting chunks off the end, cutting one short or appending bytes changes
  the file's size, which the header fixes (``83 + length + 16 * chunks``):
  refused at open; and a header whose length was edited to match a shorter
  file fails every chunk's tag (the length and "last chunk" are in the aad);
- the key slot is not in the aad (re-wrapping must not touch the chunks) but
  AES-KW is itself authenticated: another key id fails to unwrap
  (:class:`DecryptError`) or is not in the key file (:class:`UnknownKey`),
  and a data key from another file fails chunk 0.

The plaintext length in the header gives the size for ``Content-Length`` and
Range answers without decrypting; a Range read decrypts only the chunks it
covers.  A file without the magic is a plain WAV (:class:`NotEncrypted`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from hotline.storage.keyfile import (
    KeyFileError,
    KeyKind,
    append_key,
    ensure_key_file,
    load_keys,
)

__all__ = [
    "CHUNK_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "CryptError",
    "DecryptError",
    "EncryptedInfo",
    "EncryptedReader",
    "KeyFileError",
    "NotEncrypted",
    "SiteKeys",
    "UnknownKey",
    "encrypt_file",
    "is_encrypted",
    "open_encrypted",
    "rewrap",
    "site_key_id",
]

MAGIC = b"HLREC1"
VERSION = 1
CHUNK_SIZE = 1 << 16
MAX_CHUNK_SIZE = 1 << 24  # a header asking for more is refused, not allocated
KEY_BYTES = 32
TAG = 16
_NONCE_PREFIX = 8
_MAX_CHUNKS = 1 << 32  # the chunk index is 4 bytes of the nonce
_FIXED = struct.Struct(">6sBIQ8s")  # magic, version, chunk size, length, nonce prefix
_KEY_ID_LEN = 16
_WRAPPED_LEN = KEY_BYTES + 8
SLOT_OFFSET = _FIXED.size  # 27
HEADER_SIZE = SLOT_OFFSET + _KEY_ID_LEN + _WRAPPED_LEN  # 83
_READ = 1 << 20


class CryptError(Exception):
    """An encrypted recording cannot be read or written."""


class DecryptError(CryptError):
    """Authentication failed: the file was altered, truncated or reordered, or the key is wrong.

    ``chunk`` is the chunk that failed (0-based), ``None`` when the header did.
    """

    def __init__(self, message: str, chunk: int | None = None) -> None:
        super().__init__(message)
        self.chunk = chunk


class UnknownKey(CryptError):
    """The file's data key is wrapped by a site key id that is not in the key file."""

    def __init__(self, path: Path, key_id: str) -> None:
        super().__init__(f"{path}: wrapped by site key {key_id}, which is not in the key file")
        self.key_id = key_id


class NotEncrypted(CryptError):
    """The file does not start with the magic: a plain recording."""


# -- site keys -------------------------------------------------------------------------------


def site_key_id(key: bytes) -> str:
    """A site key's id: its fingerprint, 16 hex digits."""
    return hashlib.sha256(b"hotline-recording-key" + key).hexdigest()[:_KEY_ID_LEN]


# AES-256 keys only (32 bytes).
SITE_KEYS = KeyKind("recording key file", site_key_id, KEY_BYTES, KEY_BYTES, KEY_BYTES)


@dataclass(frozen=True)
class SiteKeys:
    """AES-256 site keys by id; ``current`` wraps the data keys of new files.

    Kept in a key file like the audit key (:mod:`hotline.storage.keyfile`).
    """

    keys: Mapping[str, bytes]
    current: str

    @property
    def current_key(self) -> bytes:
        return self.keys[self.current]

    @classmethod
    def generate(cls) -> SiteKeys:
        """One new random key (tests; nothing is written)."""
        key = SITE_KEYS.new_key()
        return cls({site_key_id(key): key}, site_key_id(key))

    @classmethod
    def load(cls, key_file: Path) -> SiteKeys:
        """Every key in ``key_file``; the last one is current."""
        return cls(*load_keys(key_file, SITE_KEYS))

    @classmethod
    def load_or_create(cls, key_file: Path) -> SiteKeys:
        """The keys in ``key_file``, creating it (0600, folders 0700) with one key if missing."""
        ensure_key_file(key_file, SITE_KEYS)
        return cls.load(key_file)

    @classmethod
    def rotate(cls, key_file: Path) -> SiteKeys:
        """Append a new key: it wraps from now on; files wrapped by older ones still open."""
        append_key(key_file, SITE_KEYS)
        return cls.load(key_file)


# -- the header ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    chunk_size: int
    length: int
    nonce_prefix: bytes
    key_id: str
    wrapped: bytes

    @property
    def fixed(self) -> bytes:
        return _FIXED.pack(MAGIC, VERSION, self.chunk_size, self.length, self.nonce_prefix)

    @property
    def slot(self) -> bytes:
        return self.key_id.encode("ascii") + self.wrapped

    def pack(self) -> bytes:
        return self.fixed + self.slot

    @property
    def chunks(self) -> int:
        return max(1, -(-self.length // self.chunk_size))

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.length + TAG * self.chunks


def _read_header(fd: int, path: Path) -> _Header:
    raw = os.pread(fd, HEADER_SIZE, 0)
    if raw[: len(MAGIC)] != MAGIC:
        raise NotEncrypted(f"{path}: not an encrypted recording (no {MAGIC.decode()} magic)")
    if len(raw) > len(MAGIC) and raw[len(MAGIC)] != VERSION:
        raise CryptError(f"{path}: encrypted recording version {raw[len(MAGIC)]} not supported")
    if len(raw) < HEADER_SIZE:
        raise DecryptError(f"{path}: header cut short ({len(raw)} of {HEADER_SIZE} bytes)")
    _, _, chunk_size, length, prefix = _FIXED.unpack_from(raw)
    key_id = raw[SLOT_OFFSET : SLOT_OFFSET + _KEY_ID_LEN]
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE or key_id.strip(b"0123456789abcdef"):
        raise DecryptError(f"{path}: header altered (chunk size {chunk_size}, key id {key_id!r})")
    return _Header(chunk_size, length, prefix, key_id.decode("ascii"), raw[-_WRAPPED_LEN:])


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _aad(fixed: bytes, last: bool) -> bytes:
    return fixed + (b"\x01" if last else b"\x00")


def _unwrap(header: _Header, keys: SiteKeys, path: Path) -> bytes:
    site_key = keys.keys.get(header.key_id)
    if site_key is None:
        raise UnknownKey(path, header.key_id)
    try:
        return aes_key_unwrap(site_key, header.wrapped)
    except InvalidUnwrap:
        raise DecryptError(
            f"{path}: the data key does not unwrap under site key {header.key_id}: "
            "header altered or wrong key"
        ) from None


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptedInfo:
    size: int  # plaintext bytes
    sha256: str  # of the plaintext
    file_sha256: str  # of the encrypted file, as written
    file_size: int
    key_id: str  # the site key that wraps its data key


def encrypt_file(
    src: Path, dst: Path, keys: SiteKeys, chunk_size: int = CHUNK_SIZE
) -> EncryptedInfo:
    """Encrypt ``src`` into ``dst`` (created or replaced, flushed and fsync'd, not renamed).

    The plaintext and file hashes are computed while streaming.  ``src`` must
    not grow or shrink meanwhile (its size goes in the header first):
    :class:`CryptError` if it does.  On any error ``dst`` is removed.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size {chunk_size} not in 1..{MAX_CHUNK_SIZE}")
    data_key = AESGCM.generate_key(bit_length=256)
    aead = AESGCM(data_key)
    plain_h, file_h = hashlib.sha256(), hashlib.sha256()
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            length = os.fstat(fin.fileno()).st_size
            header = _Header(
                chunk_size,
                length,
                secrets.token_bytes(_NONCE_PREFIX),
                keys.current,
                aes_key_wrap(keys.current_key, data_key),
            )
            if header.chunks > _MAX_CHUNKS:
                raise CryptError(f"{src}: too long for chunks of {chunk_size} bytes")
            fixed, raw = header.fixed, header.pack()
            fout.write(raw)
            file_h.update(raw)
            done = 0
            for index in range(header.chunks):
                want = min(chunk_size, length - done)
                piece = fin.read(want)  # buffered: short only at EOF
                if len(piece) != want:
                    raise CryptError(f"{src} shrank while it was encrypted")
                done += want
                plain_h.update(piece)
                sealed = aead.encrypt(
                    _nonce(header.nonce_prefix, index),
                    piece,
                    _aad(fixed, index == header.chunks - 1),
                )
                fout.write(sealed)
                file_h.update(sealed)
            if fin.read(1):
                raise CryptError(f"{src} grew while it was encrypted")
            fout.flush()
            os.fsync(fout.fileno())
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return EncryptedInfo(
        length, plain_h.hexdigest(), file_h.hexdigest(), header.file_size, keys.current
    )


# -- reading ---------------------------------------------------------------------------------


class EncryptedReader:
    """An open encrypted recording.  Reads use ``pread``: threads may share one reader."""

    def __init__(self, path: Path, keys: SiteKeys) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._header = _read_header(self._fd, path)
            size = os.fstat(self._fd).st_size
            expected = self._header.file_size
            if size != expected:
                h = self._header
                if size < expected:
                    chunk = min((size - HEADER_SIZE) // (h.chunk_size + TAG), h.chunks - 1)
                    why = f"cut short in chunk {chunk}"
                else:
                    chunk = h.chunks - 1
                    why = f"bytes appended after the last chunk ({chunk})"
                raise DecryptError(
                    f"{path}: {size} bytes where the header says {expected} ({h.length} bytes "
                    f"in {h.chunks} chunks): {why}, or the header's length was altered",
                    chunk,
                )
            self._aead = AESGCM(_unwrap(self._header, keys, path))
        except BaseException:
            os.close(self._fd)
            raise
        self._fixed = self._header.fixed
        self.chunks_decrypted = 0  # a counter, for tests and benchmarks

    @property
    def size(self) -> int:
        """Plaintext length (the header's; nothing is decrypted)."""
        return self._header.length

    @property
    def chunk_size(self) -> int:
        return self._header.chunk_size

    @property
    def chunks(self) -> int:
        return self._header.chunks

    @property
    def key_id(self) -> str:
        return self._header.key_id

    def read_range(self, start: int, end_inclusive: int) -> bytes:
        """Plaintext bytes ``start..end_inclusive``, decrypting only the chunks they lie in."""
        self._check_range(start, end_inclusive)
        cs = self._header.chunk_size
        first = start // cs
        plain = self._decrypt_chunks(first, end_inclusive // cs)
        return plain[start - first * cs : end_inclusive - first * cs + 1]

    def _check_range(self, start: int, end_inclusive: int) -> None:
        if not 0 <= start <= end_inclusive < self.size:
            raise ValueError(f"range {start}-{end_inclusive} not within 0-{self.size - 1}")

    def iter_range(
        self, start: int, end_inclusive: int, piece_size: int = _READ
    ) -> Iterator[bytes]:
        """Plaintext bytes ``start..end_inclusive`` in pieces of about ``piece_size`` bytes.

        The range is checked now (``ValueError``); chunks are decrypted as the
        pieces are taken, so a failure (:class:`DecryptError`) can come after
        the first pieces: an HTTP answer already begun must be cut off.
        """
        self._check_range(start, end_inclusive)
        return self._pieces(start, end_inclusive, max(1, piece_size // self._header.chunk_size))

    def _pieces(self, start: int, end_inclusive: int, per_read: int) -> Iterator[bytes]:
        cs = self._header.chunk_size
        last = end_inclusive // cs
        for group in range(start // cs, last + 1, per_read):
            plain = self._decrypt_chunks(group, min(group + per_read - 1, last))
            base = group * cs
            yield plain[max(start - base, 0) : end_inclusive - base + 1]

    def iter_plain(self, piece_size: int = _READ) -> Iterator[bytes]:
        """The whole plaintext, every chunk authenticated (export, verify)."""
        if self.size == 0:
            self._decrypt_chunks(0, 0)  # the empty chunk still authenticates the header
            return iter(())
        return self.iter_range(0, self.size - 1, piece_size)

    def _decrypt_chunks(self, first: int, last: int) -> bytes:
        h = self._header
        stride = h.chunk_size + TAG
        offset = HEADER_SIZE + first * stride
        want = min(h.file_size, HEADER_SIZE + (last + 1) * stride) - offset
        raw = os.pread(self._fd, want, offset)
        out: list[bytes] = []
        for index in range(first, last + 1):
            at = (index - first) * stride
            sealed = raw[at : at + stride]
            expect = min(stride, h.file_size - (HEADER_SIZE + index * stride))
            if len(sealed) != expect:
                raise DecryptError(f"{self.path}: chunk {index} cut short", index)
            try:
                out.append(
                    self._aead.decrypt(
                        _nonce(h.nonce_prefix, index),
                        sealed,
                        _aad(self._fixed, index == h.chunks - 1),
                    )
                )
            except InvalidTag:
                raise DecryptError(
                    f"{self.path}: chunk {index} of {h.chunks} fails authentication "
                    "(altered, moved, truncated, or the wrong key)",
                    index,
                ) from None
            self.chunks_decrypted += 1
        return b"".join(out)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EncryptedReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_encrypted(path: Path, keys: SiteKeys) -> EncryptedReader:
    """Open an encrypted recording: header read, size checked, data key unwrapped.

    :class:`NotEncrypted` for a plain file, :class:`UnknownKey` when its site
    key is not in ``keys``, :class:`DecryptError` when it was cut short or
    extended or its data key does not unwrap.  Chunks are authenticated as
    they are read.
    """
    return EncryptedReader(path, keys)


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` starts with the magic (a short or plain file is not)."""
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


# -- rotation --------------------------------------------------------------------------------


def rewrap(path: Path, keys: SiteKeys) -> bool:
    """Re-wrap the file's data key under the current site key; False if it already is.

    The key slot (key id and wrapped key, 56 bytes at offset 27) has a fixed
    size, so it is rewritten in place with one ``pwrite`` and an ``fsync``;
    the chunks are not touched.  The slot lies inside the file's first
    512-byte sector, which disks write whole (NVMe guarantees at least one
    block atomic on power loss), so after a crash the file holds the old slot
    or the new one, and both open while the old key is in the key file.
    Copying every recording to a temporary file and renaming it would cost a
    full rewrite of the archive at each rotation for no gain here.  Before
    writing, the old data key must authenticate chunk 0, so a wrong key is
    never made permanent.  The file's SHA-256 changes: the caller records it.
    """
    with open_encrypted(path, keys) as reader:
        if reader.key_id == keys.current:
            return False
        reader._decrypt_chunks(0, 0)
        data_key = _unwrap(reader._header, keys, path)
        slot = keys.current.encode("ascii") + aes_key_wrap(keys.current_key, data_key)
    fd = os.open(path, os.O_WRONLY)
    try:
        if os.pwrite(fd, slot, SLOT_OFFSET) != len(slot):
            raise OSError(f"{path}: short write of the key slot")
        os.fsync(fd)
    finally:
        os.close(fd)
    return True
