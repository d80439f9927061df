"""Recordings encrypted at rest: round trips, Range reads, tampering, key files and rotation."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from hotline.recordings.crypt import (
    CHUNK_SIZE,
    HEADER_SIZE,
    SLOT_OFFSET,
    TAG,
    CryptError,
    DecryptError,
    EncryptedInfo,
    KeyFileError,
    NotEncrypted,
    SiteKeys,
    UnknownKey,
    encrypt_file,
    is_encrypted,
    open_encrypted,
    rewrap,
    site_key_id,
)

SMALL = 1024  # chunk size of the exhaustive Range tests: the same code, fewer bytes


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def encrypted(
    tmp_path: Path, data: bytes, keys: SiteKeys, chunk_size: int = CHUNK_SIZE
) -> tuple[Path, EncryptedInfo]:
    src, dst = tmp_path / "call.wav", tmp_path / "call.wav.enc"
    src.write_bytes(data)
    return dst, encrypt_file(src, dst, keys, chunk_size)


def decrypt_all(path: Path, keys: SiteKeys) -> bytes:
    with open_encrypted(path, keys) as r:
        return b"".join(r.iter_plain())


def chunk_offset(index: int, chunk_size: int = CHUNK_SIZE) -> int:
    return HEADER_SIZE + index * (chunk_size + TAG)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.fixture
def keys() -> SiteKeys:
    return SiteKeys.generate()


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, CHUNK_SIZE * 7 // 2],
    ids=["0", "1", "chunk-1", "chunk", "chunk+1", "3.5chunks"],
)
def test_round_trip(tmp_path: Path, keys: SiteKeys, size: int) -> None:
    data = os.urandom(size)
    path, info = encrypted(tmp_path, data, keys)
    chunks = max(1, -(-size // CHUNK_SIZE))
    raw = path.read_bytes()
    assert info.size == size and info.key_id == keys.current
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.file_sha256 == hashlib.sha256(raw).hexdigest()  # as written, no re-read needed
    assert info.file_size == len(raw) == HEADER_SIZE + size + TAG * chunks
    assert is_encrypted(path) and not is_encrypted(tmp_path / "call.wav")
    if size >= 16:
        assert data[:16] not in raw
    with open_encrypted(path, keys) as r:
        assert r.size == size and r.chunks == chunks
        assert b"".join(r.iter_plain()) == data
        assert b"".join(r.iter_plain(piece_size=1)) == data  # one chunk per piece
        assert r.chunks_decrypted == 2 * chunks


def test_a_plain_wav_is_not_encrypted(tmp_path: Path, keys: SiteKeys) -> None:
    wav = tmp_path / "plain.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    assert not is_encrypted(wav)
    with pytest.raises(NotEncrypted):
        open_encrypted(wav, keys)
    with pytest.raises(NotEncrypted):
        rewrap(wav, keys)


def test_a_failed_encryption_leaves_no_file(tmp_path: Path, keys: SiteKeys) -> None:
    with pytest.raises(FileNotFoundError):
        encrypt_file(tmp_path / "missing.wav", tmp_path / "out", keys)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="chunk size"):
        encrypted(tmp_path, b"x", keys, chunk_size=0)


# -- Range reads ---------------------------------------------------------------------------


def boundaries(size: int, chunk_size: int) -> list[int]:
    points = {0, 1, size - 2, size - 1}
    for k in range(1, size // chunk_size + 1):
        points |= {k * chunk_size - 1, k * chunk_size, k * chunk_size + 1}
    return sorted(p for p in points if 0 <= p < size)


@pytest.mark.parametrize("size", [1, SMALL - 1, SMALL, SMALL + 1, SMALL * 7 // 2])
def test_range_reads_at_every_boundary_decrypt_only_their_chunks(
    tmp_path: Path, keys: SiteKeys, size: int
) -> None:
    data = os.urandom(size)
    path, _ = encrypted(tmp_path, data, keys, SMALL)
    points = boundaries(size, SMALL)
    with open_encrypted(path, keys) as r:
        for start in points:
            for end in points:
                if end < start:
                    continue
                before = r.chunks_decrypted
                assert r.read_range(start, end) == data[start : end + 1], (start, end)
                assert r.chunks_decrypted - before == end // SMALL - start // SMALL + 1
                assert b"".join(r.iter_range(start, end, piece_size=SMALL)) == data[start : end + 1]
        for start, end in [(-1, 0), (0, size), (1, 0)]:
            with pytest.raises(ValueError, match="not within"):
                r.read_range(start, end)


def test_a_range_reads_though_a_chunk_outside_it_is_corrupt(tmp_path: Path, keys: SiteKeys) -> None:
    data = os.urandom(SMALL * 7 // 2)
    path, _ = encrypted(tmp_path, data, keys, SMALL)
    flip(path, chunk_offset(2, SMALL) + 5)  # chunk 2 of 0..3
    with open_encrypted(path, keys) as r:
        assert r.read_range(0, 2 * SMALL - 1) == data[: 2 * SMALL]
        assert r.read_range(3 * SMALL, len(data) - 1) == data[3 * SMALL :]
        with pytest.raises(DecryptError, match="chunk 2 of 4") as e:
            r.read_range(2 * SMALL - 1, 2 * SMALL)
        assert e.value.chunk == 2


# -- tampering -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0, 1, 2, 3])
@pytest.mark.parametrize("where", ["ciphertext", "tag"])
def test_a_flipped_byte_in_any_chunk_names_the_chunk(
    tmp_path: Path, keys: SiteKeys, chunk: int, where: str
) -> None:
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 7 // 2), keys, SMALL)
    end = chunk_offset(chunk + 1, SMALL) if chunk < 3 else path.stat().st_size
    flip(path, chunk_offset(chunk, SMALL) + 3 if where == "ciphertext" else end - 1)
    with pytest.raises(DecryptError, match=f"chunk {chunk} of 4") as e:
        decrypt_all(path, keys)
    assert e.value.chunk == chunk


@pytest.mark.parametrize(
    ("cut", "chunk"),
    [
        (SMALL // 2 + TAG, 3),  # the last (half) chunk dropped
        (1, 3),  # one byte of the last tag
        (SMALL // 2 + TAG + 100, 2),  # cut in the middle of chunk 2
    ],
)
def test_truncation_is_detected(tmp_path: Path, keys: SiteKeys, cut: int, chunk: int) -> None:
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 7 // 2), keys, SMALL)
    os.truncate(path, path.stat().st_size - cut)
    with pytest.raises(DecryptError, match=f"cut short in chunk {chunk}") as e:
        open_encrypted(path, keys)
    assert e.value.chunk == chunk


def test_truncation_to_whole_chunks_with_the_length_edited_to_match(
    tmp_path: Path, keys: SiteKeys
) -> None:
    """The file is consistent in size, but the length and "last chunk" are in every aad."""
    data = os.urandom(SMALL * 3)
    path, _ = encrypted(tmp_path, data, keys, SMALL)
    os.truncate(path, chunk_offset(2, SMALL))  # chunks 0 and 1 left
    with path.open("r+b") as f:
        f.seek(11)
        f.write((2 * SMALL).to_bytes(8, "big"))
    with open_encrypted(path, keys) as r, pytest.raises(DecryptError, match="chunk 0 of 2"):
        r.read_range(0, 0)


def test_bytes_appended_are_detected(tmp_path: Path, keys: SiteKeys) -> None:
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 2), keys, SMALL)
    with path.open("ab") as f:
        f.write(b"\x00" * (SMALL + TAG))
    with pytest.raises(DecryptError, match="appended after the last chunk"):
        open_encrypted(path, keys)


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 2), (0, 2)])
def test_swapped_chunks_are_detected(tmp_path: Path, keys: SiteKeys, a: int, b: int) -> None:
    """Three full chunks: any two can swap places without changing the file's size."""
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 3), keys, SMALL)
    raw = bytearray(path.read_bytes())
    stride = SMALL + TAG
    ca = raw[chunk_offset(a, SMALL) : chunk_offset(a, SMALL) + stride]
    cb = raw[chunk_offset(b, SMALL) : chunk_offset(b, SMALL) + stride]
    raw[chunk_offset(a, SMALL) : chunk_offset(a, SMALL) + stride] = cb
    raw[chunk_offset(b, SMALL) : chunk_offset(b, SMALL) + stride] = ca
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptError, match=f"chunk {a} of 3"):
        decrypt_all(path, keys)
    with open_encrypted(path, keys) as r, pytest.raises(DecryptError, match=f"chunk {b} of 3"):
        r.read_range(b * SMALL, b * SMALL)


def test_a_chunk_from_another_file_is_detected(tmp_path: Path, keys: SiteKeys) -> None:
    data = os.urandom(SMALL * 2)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, _ = encrypted(tmp_path / "a", data, keys, SMALL)
    two, _ = encrypted(tmp_path / "b", data, keys, SMALL)
    raw = bytearray(one.read_bytes())
    raw[chunk_offset(1, SMALL) :] = two.read_bytes()[chunk_offset(1, SMALL) :]
    one.write_bytes(bytes(raw))
    with pytest.raises(DecryptError, match="chunk 1 of 2"):
        decrypt_all(one, keys)


@pytest.mark.parametrize(
    ("offset", "value", "why"),
    [
        # chunk size 1024 -> 1000: still 2 chunks and the same file size, so only the aad tells
        (7, (SMALL - 24).to_bytes(4, "big"), "chunk 0 of 2 fails"),
        (11, (SMALL * 3 // 2 - 1).to_bytes(8, "big"), "the header's length was altered"),
        (19, b"\x00" * 8, "chunk 0 of 2 fails"),  # nonce prefix
    ],
    ids=["chunk-size", "length", "nonce-prefix"],
)
def test_an_edited_header_is_detected(
    tmp_path: Path, keys: SiteKeys, offset: int, value: bytes, why: str
) -> None:
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 3 // 2), keys, SMALL)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(value)
    assert path.stat().st_size == size
    with pytest.raises(DecryptError, match=why):
        decrypt_all(path, keys)


def test_an_empty_recording_is_authenticated_too(tmp_path: Path, keys: SiteKeys) -> None:
    path, _ = encrypted(tmp_path, b"", keys)
    with path.open("r+b") as f:
        f.seek(19)
        f.write(b"\x00" * 8)  # nonce prefix
    with pytest.raises(DecryptError, match="chunk 0 of 1"):
        decrypt_all(path, keys)


def test_an_edited_key_id_or_wrapped_key_is_detected(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "recordings.key"
    old = SiteKeys.load_or_create(key_file)
    path, _ = encrypted(tmp_path, os.urandom(100), old, SMALL)
    new = SiteKeys.rotate(key_file)
    with path.open("r+b") as f:  # another known key id: the data key does not unwrap
        f.seek(SLOT_OFFSET)
        f.write(new.current.encode())
    with pytest.raises(DecryptError, match=f"does not unwrap under site key {new.current}"):
        open_encrypted(path, new)
    with path.open("r+b") as f:  # an id in no key file
        f.seek(SLOT_OFFSET)
        f.write(b"0123456789abcdef")
    with pytest.raises(UnknownKey, match="0123456789abcdef") as e:
        open_encrypted(path, new)
    assert e.value.key_id == "0123456789abcdef"
    with path.open("r+b") as f:  # the right id, a wrapped key altered
        f.seek(SLOT_OFFSET)
        f.write(old.current.encode())
        f.seek(HEADER_SIZE - 1)
        f.write(b"\x00")
    with pytest.raises(DecryptError, match="does not unwrap"):
        open_encrypted(path, new)


def test_the_wrong_site_key(tmp_path: Path, keys: SiteKeys) -> None:
    path, _ = encrypted(tmp_path, os.urandom(100), keys)
    other = SiteKeys.generate()
    with pytest.raises(UnknownKey, match=f"site key {keys.current}"):
        open_encrypted(path, other)
    # A key file that claims the id with another key: the data key does not unwrap.
    liar = SiteKeys({keys.current: other.current_key}, keys.current)
    with pytest.raises(DecryptError, match="does not unwrap"):
        open_encrypted(path, liar)


def test_an_unsupported_version_is_refused(tmp_path: Path, keys: SiteKeys) -> None:
    path, _ = encrypted(tmp_path, b"abc", keys)
    with path.open("r+b") as f:
        f.seek(6)
        f.write(b"\x02")
    with pytest.raises(CryptError, match="version 2 not supported"):
        open_encrypted(path, keys)


# -- site keys and rotation ----------------------------------------------------------------


def test_the_key_file_is_created_0600_in_a_folder_created_0700(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "keys" / "recordings.key"
    keys = SiteKeys.load_or_create(key_file)
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700 and mode(key_file.parent.parent) == 0o700
    kid, key_hex = key_file.read_text().split()
    assert kid == keys.current == site_key_id(bytes.fromhex(key_hex))
    assert len(bytes.fromhex(key_hex)) == 32
    assert SiteKeys.load_or_create(key_file) == keys  # an existing key is kept
    assert [p.name for p in key_file.parent.iterdir()] == ["recordings.key"]


@pytest.mark.parametrize("perm", [0o644, 0o640, 0o604])
def test_a_key_file_others_can_read_is_refused(tmp_path: Path, perm: int) -> None:
    key_file = tmp_path / "recordings.key"
    SiteKeys.load_or_create(key_file)
    os.chmod(key_file, perm)
    with pytest.raises(KeyFileError, match=f"mode {perm:04o} lets others read it"):
        SiteKeys.load(key_file)
    with pytest.raises(KeyFileError):
        SiteKeys.rotate(key_file)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "no key in it"),
        ("abc\n", "not 'KEY_ID HEX_KEY'"),
        ("0123456789abcdef " + "11" * 32 + "\n", "key id does not fit"),
        (f"{site_key_id(b'1' * 16)} {(b'1' * 16).hex()}\n", "not 32 bytes"),
    ],
)
def test_a_malformed_key_file_is_refused(tmp_path: Path, text: str, why: str) -> None:
    key_file = tmp_path / "recordings.key"
    key_file.write_text(text)
    key_file.chmod(0o600)
    with pytest.raises(KeyFileError, match=why):
        SiteKeys.load(key_file)


def test_rotation_rewraps_the_data_key_and_leaves_the_audio_alone(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "recordings.key"
    old = SiteKeys.load_or_create(key_file)
    data = os.urandom(SMALL * 7 // 2)
    path, _ = encrypted(tmp_path, data, old, SMALL)
    before = path.read_bytes()

    new = SiteKeys.rotate(key_file)
    assert new.current != old.current and set(new.keys) == {old.current, new.current}
    assert mode(key_file) == 0o600
    assert decrypt_all(path, new) == data  # still opens: the old key stays in the file
    assert rewrap(path, new) is True
    after = path.read_bytes()
    assert after[HEADER_SIZE:] == before[HEADER_SIZE:]  # the chunks are untouched
    assert after[:SLOT_OFFSET] == before[:SLOT_OFFSET]
    assert after[SLOT_OFFSET : SLOT_OFFSET + 16] == new.current.encode()
    with open_encrypted(path, new) as r:
        assert r.key_id == new.current
        assert b"".join(r.iter_plain()) == data
    only_new = SiteKeys({new.current: new.current_key}, new.current)
    assert decrypt_all(path, only_new) == data  # the old key could now be retired
    with pytest.raises(UnknownKey):
        open_encrypted(path, old)
    assert rewrap(path, new) is False  # already current: nothing written
    assert path.read_bytes() == after


def test_rewrap_refuses_a_file_whose_data_key_fails(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "recordings.key"
    old = SiteKeys.load_or_create(key_file)
    path, _ = encrypted(tmp_path, os.urandom(SMALL * 2), old, SMALL)
    flip(path, chunk_offset(0, SMALL))
    before = path.read_bytes()
    new = SiteKeys.rotate(key_file)
    with pytest.raises(DecryptError, match="chunk 0"):
        rewrap(path, new)
    assert path.read_bytes() == before
