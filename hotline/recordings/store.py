"""The recording store: crash-safe ingest, integrity checks, retention, audited access.

Ingest of one spool file (what MixMonitor wrote), in an order that survives a
kill -9 between any two steps:

1. hash the spool file;
2. copy it to ``<store>/YYYY/MM/DD/.<name>.tmp`` (0600, folders 0700), fsync,
   and check the copy's hash against the original;
3. rename the copy to its final name and fsync the folder;
4. insert the metadata row (unique by spool file name), sealed, and its
   ``ingest`` audit entry, in one transaction;
5. only then delete the spool file.

A crash before 3 leaves a ``.tmp`` (removed on the next run) and the spool
file (ingested again); after 3 the next run finds the final file with the
right hash and reuses it; after 4 it finds the row and only finishes step 5.
So there is never a row without its file, never a row without its audit
entry, and never a deleted original without a verified copy.

A spool file is named ``LINKEDID--UNIQUEID.wav`` (the dialplan's MixMonitor):
a queue call's linkedid is Asterisk's ``1700000000.42``, a callback's is the
channel id Hotline originated it with, ``cb-<callback id prefix>-<attempt>-<time>``.
A ``.wav`` named neither way is not left in the spool unseen: it is moved to
``<store>/quarantine/`` (verified copy first), audited, and reported by
``/health`` and ``hotline recordings verify``.

Each row is sealed (HMAC with the audit log's key, hotline.records.seal) over
its metadata and its file's hash: a file swapped together with the row's
``sha256`` fails verification unless the key was taken too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
import wave
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.recordings.crypt import (
    CryptError,
    EncryptedReader,
    SiteKeys,
    encrypt_file,
    open_encrypted,
    rewrap,
)
from hotline.records.audit import AuditLog, AuditReport
from hotline.records.interactions import InteractionStore
from hotline.records.users import AccessDenied, Actor
from hotline.storage.db import Database
from hotline.storage.files import fsync_dir
from hotline.storage.tables import CallbackRow, RecordingRow

log = logging.getLogger("hotline.recordings")

RECORDING_ID = re.compile(r"^[0-9a-f]{32}$")
# A queue call's linkedid, or the channel id of a callback Hotline originated
# (cti.callbacks: ``cb-<first 12 of the callback id>-<attempt>-<unix time>``).
_CALL = r"[0-9]+\.[0-9]+|cb-[0-9a-f]{1,32}-[0-9]+-[0-9]+"
SPOOL_NAME = re.compile(rf"^(?P<call_id>{_CALL})--(?P<leg>{_CALL})\.wav$")
CALLBACK_CALL = re.compile(r"^cb-(?P<prefix>[0-9a-f]{1,32})-[0-9]+-[0-9]+$")
CHUNK = 1 << 20
QUARANTINE = "quarantine"
# How many verified files ``open`` remembers (a Range request does not re-hash).
_VERIFIED_CACHE = 1024


class RecordingError(Exception):
    """A recording cannot be found, served, stored or changed; the message says why."""


class RecordingNotFound(RecordingError):
    """No recording has that id (or the caller may not know that it exists)."""


class IntegrityError(RecordingError):
    """A stored file or a copy does not match the hash recorded for it."""


class NotARecording(RecordingError):
    """A spool file that is not one of ours (the name does not say which call it is)."""


@dataclass
class CallFacts:
    """What the CTI knows about a recorded call when it ends."""

    caller: str = ""
    agent: str = ""
    queue: str = ""
    callback_id: str = ""


@dataclass
class Recording:
    id: str
    call_id: str
    path: str
    caller: str
    agent: str
    queue: str
    started_at: datetime
    ended_at: datetime
    duration_s: float
    format: str
    size: int
    sha256: str
    paused: list[dict[str, Any]]
    retention_until: date
    legal_hold: bool
    hold_reason: str | None = None
    callback_id: str = ""
    encrypted: bool = False
    # The audio's own hash (what an export hashes to); the file's is ``sha256``.
    audio_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "caller": self.caller,
            "agent": self.agent,
            "queue": self.queue,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration_s": self.duration_s,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "path": self.path,
            "paused": self.paused,
            "retention_until": self.retention_until.isoformat(),
            "legal_hold": self.legal_hold,
            "hold_reason": self.hold_reason,
            "callback_id": self.callback_id,
            "encrypted": self.encrypted,
            "audio_sha256": self.audio_sha256 or self.sha256,
        }


def recording_from_row(r: RecordingRow) -> Recording:
    return Recording(
        r.id,
        r.call_id,
        r.path,
        r.caller,
        r.agent,
        r.queue,
        r.started_at,
        r.ended_at,
        r.duration_s,
        r.format,
        r.size,
        r.sha256,
        list(r.paused or []),
        r.retention_until,
        r.legal_hold,
        r.hold_reason,
        r.callback_id or "",
        bool(r.encrypted),
        r.audio_sha256 or r.sha256,
    )


def sealed_metadata(r: RecordingRow) -> bytes:
    """What a recording's seal covers: every column but the seal itself, canonically."""
    return json.dumps(
        {
            "id": r.id,
            "call_id": r.call_id,
            "source": r.source,
            "path": r.path,
            "caller": r.caller,
            "agent": r.agent,
            "queue": r.queue,
            "callback_id": r.callback_id or "",
            "started_at": _utc(r.started_at).isoformat(timespec="microseconds"),
            "ended_at": _utc(r.ended_at).isoformat(timespec="microseconds"),
            "duration_s": r.duration_s,
            "format": r.format,
            "size": r.size,
            "sha256": r.sha256,
            "encrypted": bool(r.encrypted),
            "audio_sha256": r.audio_sha256,
            "paused": r.paused or [],
            "retention_until": r.retention_until.isoformat(),
            "legal_hold": bool(r.legal_hold),
            "hold_reason": r.hold_reason,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    ).encode()


def _copy_row(r: RecordingRow) -> RecordingRow:
    return RecordingRow(**{c.key: getattr(r, c.key) for c in RecordingRow.__table__.columns})


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass
class SweepReport:
    ingested: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # too young or call still live
    failed: list[str] = field(default_factory=list)
    # Not named after a call: moved to <store>/quarantine/ (or, failing that, still waiting).
    quarantined: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpoolState:
    """What waits in the spool: how many recordings, and the oldest one's age."""

    files: int
    oldest_age_s: float


# -- file work (runs in a thread) ------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _private_folder(folder: Path, root: Path) -> None:
    """``folder`` and the folders between it and ``root`` (``root`` too), created 0700."""
    chain = [folder, *folder.parents]
    upto = chain[: chain.index(root) + 1] if root in chain else [folder]
    missing = [p for p in upto if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
        os.chmod(p, 0o700)  # the process umask may have narrowed it less


def _copy_verified(src: Path, tmp: Path, expected: str) -> None:
    h = hashlib.sha256()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                h.update(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        if h.hexdigest() != expected or _sha256(tmp) != expected:
            raise IntegrityError(f"copy of {src.name} does not match the original")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _encrypt_verified(src: Path, tmp: Path, expected: str, keys: SiteKeys) -> str:
    """Encrypt ``src`` into ``tmp`` (0600), decrypt it back, check the audio's hash;
    return the hash of the encrypted file (what the row records)."""
    try:
        info = encrypt_file(src, tmp, keys)
        os.chmod(tmp, 0o600)
        if info.sha256 != expected or _audio_sha256(tmp, keys) != expected:
            raise IntegrityError(f"encrypted copy of {src.name} does not match the original")
        return info.file_sha256
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _audio_sha256(path: Path, keys: SiteKeys) -> str:
    """The hash of an encrypted file's audio, every chunk authenticated (blocking)."""
    h = hashlib.sha256()
    with open_encrypted(path, keys) as reader:
        for piece in reader.iter_plain(CHUNK):
            h.update(piece)
    return h.hexdigest()


def _stored_copy(final: Path, expected: str, keys: SiteKeys | None) -> str | None:
    """The file hash of ``final`` when it already holds the audio hashing to ``expected``
    (a crash after the rename), else None (blocking)."""
    if not final.exists():
        return None
    if keys is None:
        return expected if _sha256(final) == expected else None
    try:
        if _audio_sha256(final, keys) != expected:
            return None
    except CryptError:
        return None
    return _sha256(final)


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate() or 8000)
    except (wave.Error, EOFError, OSError):
        # MixMonitor's header may lag behind the data: estimate from size (8 kHz slin).
        return max(0.0, (path.stat().st_size - 44) / 16000)


# The durable steps of an ingest, in order (the module docstring says what each leaves).
# "inserted" is inside the transaction: the row is written, its audit entry not yet.
IngestStep = Literal["copied", "renamed", "inserted", "recorded"]


class RecordingStore:
    def __init__(
        self,
        db: Database,
        store_dir: Path,
        spool_dir: Path,
        audit: AuditLog,
        interactions: InteractionStore | None = None,
        retention_days: dict[str, int] | None = None,
        default_retention_days: int = 365,
        after_step: Callable[[IngestStep], None] | None = None,
        keys: SiteKeys | None = None,
    ) -> None:
        self._db = db
        # Site keys when recordings are stored encrypted ([recordings] encrypt).
        self.keys = keys
        self.store_dir = store_dir
        self.spool_dir = spool_dir
        self.audit = audit
        self._interactions = interactions
        self._retention = retention_days or {}
        self._default_days = default_retention_days
        self._ingest_lock = asyncio.Lock()
        # Told after each durable ingest step: the crash drills (harness/crash_ingest.py)
        # kill the process there and check that a restart loses and doubles nothing.
        self._after_step = after_step
        # Files ``open`` verified, by recording id: (inode, size, mtime_ns, sha256).
        # A player's Range and HEAD requests then cost a stat, not a re-hash.
        self._verified: OrderedDict[str, tuple[int, int, int, str]] = OrderedDict()

    def _step(self, step: IngestStep) -> None:
        if self._after_step is not None:
            self._after_step(step)

    def retention_for(self, queue: str, day: date) -> date:
        return day + timedelta(days=self._retention.get(queue, self._default_days))

    # -- ingest ----------------------------------------------------------------------------
    async def ingest(self, spool_file: Path, facts: CallFacts | None = None) -> Recording:
        async with self._ingest_lock:
            return await self._ingest(spool_file, facts)

    async def _ingest(self, spool_file: Path, facts: CallFacts | None) -> Recording:
        name = spool_file.name
        m = SPOOL_NAME.match(name)
        if m is None:
            raise NotARecording(
                f"{name}: not a recording of ours (expected LINKEDID--UNIQUEID.wav)"
            )
        async with self._db.sessions() as s:
            row = await s.scalar(select(RecordingRow).where(RecordingRow.source == name))
        if row is not None:
            # Crashed after the row (only the original is left to remove), or the
            # stored copy has gone since: store it again from this original.
            final = self.store_dir / row.path
            intact = await asyncio.to_thread(final.exists) and (
                await asyncio.to_thread(_sha256, final) == row.sha256
            )
            if not intact:
                row = await self._restore(row, spool_file, final)
            await asyncio.to_thread(spool_file.unlink, missing_ok=True)
            return recording_from_row(row)
        stat = await asyncio.to_thread(spool_file.stat)
        digest = await asyncio.to_thread(_sha256, spool_file)
        ended = datetime.fromtimestamp(stat.st_mtime, UTC)
        duration = round(await asyncio.to_thread(_wav_seconds, spool_file), 2)
        folder = self.store_dir / ended.strftime("%Y/%m/%d")
        final = folder / name
        tmp = folder / f".{name}.tmp"
        file_digest = await asyncio.to_thread(_stored_copy, final, digest, self.keys)
        if file_digest is None:
            file_digest = await self._write_copy(spool_file, folder, tmp, digest)
            self._step("copied")
            await asyncio.to_thread(os.replace, tmp, final)
            await asyncio.to_thread(fsync_dir, folder)
        self._step("renamed")
        facts = await self._complete_facts(m["call_id"], facts)
        rec = RecordingRow(
            id=uuid.uuid4().hex,
            call_id=m["call_id"],
            source=name,
            path=str(final.relative_to(self.store_dir)),
            caller=facts.caller,
            agent=facts.agent,
            queue=facts.queue,
            callback_id=facts.callback_id,
            started_at=ended - timedelta(seconds=duration),
            ended_at=ended,
            duration_s=duration,
            format="wav",
            size=stat.st_size,
            sha256=file_digest,
            audio_sha256=digest if self.keys is not None else None,
            encrypted=self.keys is not None,
            # Recording starts when the agent answers: the IVR leg, where card
            # data is keyed, is never recorded, so nothing had to be paused.
            paused=[],
            retention_until=self.retention_for(facts.queue, ended.date()),
            legal_hold=False,
        )
        self._seal(rec)

        async def insert(s: AsyncSession) -> None:
            # A fresh object each time: the audit log retries on a conflict.
            s.add(_copy_row(rec))
            await s.flush()
            self._step("inserted")

        # The row and its audit entry in one transaction: no crash leaves a
        # recording that was never audited (or an entry for one never stored).
        # The key id says the row was sealed: removing the seal later shows.
        detail: dict[str, Any] = {
            "call_id": rec.call_id,
            "sha256": digest,
            "size": rec.size,
            "key_id": rec.key_id,
        }
        if rec.callback_id:
            detail["callback_id"] = rec.callback_id
        await self.audit.record_with(insert, "system", "ingest", rec.id, "ok", detail)
        self._step("recorded")
        await asyncio.to_thread(spool_file.unlink, missing_ok=True)
        log.info(
            "recording stored",
            extra={
                "recording": rec.id,
                "call": rec.call_id,
                "bytes": rec.size,
                "seconds": duration,
            },
        )
        return recording_from_row(rec)

    async def _restore(self, row: RecordingRow, spool_file: Path, final: Path) -> RecordingRow:
        """Store the file of an existing row again from its original, in the row's own form."""
        audio = row.audio_sha256 or row.sha256
        if await asyncio.to_thread(_sha256, spool_file) != audio:
            raise IntegrityError(
                f"{spool_file.name}: differs from the recording already stored "
                "under this name; kept in the spool"
            )
        tmp = final.with_name(f".{final.name}.tmp")
        await asyncio.to_thread(_private_folder, final.parent, self.store_dir)
        if not row.encrypted:
            await asyncio.to_thread(_copy_verified, spool_file, tmp, audio)
            file_digest = audio
        elif self.keys is None:
            raise RecordingError(
                f"{spool_file.name}: its recording is encrypted but no site key is configured"
            )
        else:
            file_digest = await asyncio.to_thread(
                _encrypt_verified, spool_file, tmp, audio, self.keys
            )
        await asyncio.to_thread(os.replace, tmp, final)
        await asyncio.to_thread(fsync_dir, final.parent)
        row.sha256 = file_digest
        self._seal(row)
        restored = _copy_row(row)

        async def update_row(s: AsyncSession) -> None:
            await s.merge(_copy_row(restored))

        # A new encryption gives a new file hash: the row follows, in the entry's transaction.
        await self.audit.record_with(
            update_row, "system", "restore", row.id, "ok", {"sha256": file_digest, "from": "spool"}
        )
        return restored

    async def _write_copy(self, src: Path, folder: Path, tmp: Path, digest: str) -> str:
        """The verified copy of ``src`` at ``tmp`` (encrypted when keys are set); its hash."""
        await asyncio.to_thread(_private_folder, folder, self.store_dir)
        if self.keys is None:
            await asyncio.to_thread(_copy_verified, src, tmp, digest)
            return digest
        return await asyncio.to_thread(_encrypt_verified, src, tmp, digest, self.keys)

    def _seal(self, row: RecordingRow) -> None:
        row.key_id, row.seal = self.audit.sealer.seal_recording(sealed_metadata(row))

    async def _complete_facts(self, call_id: str, facts: CallFacts | None) -> CallFacts:
        """What the CTI said, completed from the records: the callback, or the IVR's hand-off."""
        facts = facts or CallFacts()
        cb = CALLBACK_CALL.match(call_id)
        if cb is not None:
            async with self._db.sessions() as s:
                found = list(
                    await s.scalars(
                        select(CallbackRow)
                        .where(CallbackRow.id.startswith(cb["prefix"], autoescape=True))
                        .limit(2)
                    )
                )
            if len(found) == 1:
                row = found[0]
                return CallFacts(
                    caller=facts.caller or row.number,
                    agent=facts.agent or row.agent or "",
                    queue=facts.queue or row.queue,
                    callback_id=row.id,
                )
            return facts
        if facts.caller or facts.queue or self._interactions is None:
            return facts
        # The sweeper's metadata when the CTI saw no event: what the IVR recorded.
        it = await self._interactions.get(call_id)
        if it is None:
            return facts
        return CallFacts(
            caller=it.caller_number, agent=facts.agent, queue=it.queue or "", callback_id=""
        )

    async def sweep(
        self, min_age_s: float = 5.0, is_live: Callable[[str], bool] = lambda _c: False
    ) -> SweepReport:
        """Ingest every finished spool file (missed events, crashes, restarts).

        Raises what the database raises (the caller retries: ``sweep_forever``).
        """
        report = SweepReport()
        await asyncio.to_thread(self._remove_stale_tmp)
        files = await asyncio.to_thread(lambda: sorted(self.spool_dir.glob("*.wav")))
        now = datetime.now(UTC).timestamp()
        for f in files:
            try:
                age = now - (await asyncio.to_thread(f.stat)).st_mtime
            except FileNotFoundError:
                continue
            m = SPOOL_NAME.match(f.name)
            if age < min_age_s or (m is not None and is_live(m["call_id"])):
                report.waiting.append(f.name)
                continue
            try:
                if m is None:
                    await self.quarantine(f)
                    report.quarantined.append(f.name)
                else:
                    await self.ingest(f)
                    report.ingested.append(f.name)
            except (OSError, RecordingError) as e:
                # Disk full or the like: the original stays in the spool for the next sweep.
                log.error(
                    "ingest failed; original kept in the spool: %s", e, extra={"file": f.name}
                )
                report.failed.append(f.name)
        return report

    async def quarantine(self, spool_file: Path) -> Path:
        """Move a spool file that names no call to ``<store>/quarantine/``, verified, audited."""
        async with self._ingest_lock:
            folder = self.store_dir / QUARANTINE
            final = folder / spool_file.name
            if await asyncio.to_thread(final.exists):
                # Same name again: keep both, the later one under a unique name.
                final = folder / f"{spool_file.stem}.{uuid.uuid4().hex[:8]}{spool_file.suffix}"
            digest = await asyncio.to_thread(_sha256, spool_file)
            size = (await asyncio.to_thread(spool_file.stat)).st_size
            tmp = folder / f".{final.name}.tmp"
            await asyncio.to_thread(_private_folder, folder, self.store_dir)
            await asyncio.to_thread(_copy_verified, spool_file, tmp, digest)
            await asyncio.to_thread(os.replace, tmp, final)
            await asyncio.to_thread(fsync_dir, folder)
            await self.audit.record(
                "system",
                "quarantine",
                f"{QUARANTINE}/{final.name}",
                "ok",
                {"source": spool_file.name, "sha256": digest, "size": size},
            )
            await asyncio.to_thread(spool_file.unlink, missing_ok=True)
            log.warning(
                "spool file names no call: quarantined",
                extra={"file": spool_file.name, "stored_as": str(final)},
            )
            return final

    def quarantined(self) -> list[str]:
        """The files in ``<store>/quarantine/`` (blocking: run in a thread)."""
        folder = self.store_dir / QUARANTINE
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def spool_state(self) -> SpoolState:
        """The recordings waiting in the spool (blocking: run in a thread)."""
        now = datetime.now(UTC).timestamp()
        oldest, count = now, 0
        for f in self.spool_dir.glob("*.wav"):
            try:
                mtime = f.stat().st_mtime
            except FileNotFoundError:
                continue
            count += 1
            oldest = min(oldest, mtime)
        return SpoolState(count, round(max(0.0, now - oldest), 1) if count else 0.0)

    def _remove_stale_tmp(self) -> None:
        if self.store_dir.exists():
            for tmp in self.store_dir.glob("*/*/*/.*.tmp"):
                tmp.unlink(missing_ok=True)
            for tmp in self.store_dir.glob(f"{QUARANTINE}/.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- access (audited) ------------------------------------------------------------------------
    async def search(
        self,
        actor: Actor,
        *,
        caller: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
        call_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Recording]:
        criteria = {
            k: v
            for k, v in {
                "caller": caller,
                "agent": agent,
                "queue": queue,
                "call_id": call_id,
                "since": since,
                "until": until,
            }.items()
            if v is not None
        }
        if not actor.may("search"):
            await self.audit.record(actor.label, "search", "", "denied", _plain(criteria))
            raise AccessDenied(f"{actor.name} may not search recordings")
        q = select(RecordingRow).order_by(RecordingRow.started_at.desc()).limit(limit)
        for col in ("caller", "agent", "queue", "call_id"):
            if criteria.get(col) is not None:
                q = q.where(getattr(RecordingRow, col) == criteria[col])
        if since is not None:
            q = q.where(RecordingRow.started_at >= since)
        if until is not None:
            q = q.where(RecordingRow.started_at < until)
        async with self._db.sessions() as s:
            found = [recording_from_row(r) for r in await s.scalars(q)]
        await self.audit.record(
            actor.label, "search", "", "ok", {**_plain(criteria), "results": len(found)}
        )
        return found

    async def open(
        self, actor: Actor, recording_id: str, purpose: str = "listen"
    ) -> tuple[Recording, Path]:
        """The recording and its verified file, for listening or export."""
        if not RECORDING_ID.match(recording_id):
            await self.audit.record(
                actor.label, purpose, recording_id[:100], "refused", {"why": "malformed id"}
            )
            raise RecordingNotFound("no such recording")
        if not actor.may(purpose):
            await self.audit.record(actor.label, purpose, recording_id, "denied")
            raise AccessDenied(f"{actor.name} may not {purpose} recordings")
        async with self._db.sessions() as s:
            row = await s.get(RecordingRow, recording_id)
        if row is None:
            await self.audit.record(
                actor.label, purpose, recording_id, "refused", {"why": "unknown id"}
            )
            raise RecordingNotFound("no such recording")
        path = (self.store_dir / row.path).resolve()
        if not path.is_relative_to(self.store_dir.resolve()):
            await self.audit.record(
                actor.label, purpose, recording_id, "refused", {"why": "path outside the store"}
            )
            raise RecordingNotFound("no such recording")
        why = self._seal_problem(row)
        if why is None and not await self._file_matches(row, path):
            why = "file missing or altered"
        if why is not None:
            await self.audit.record(actor.label, purpose, recording_id, "failed", {"why": why})
            raise IntegrityError("recording failed its integrity check; reported")
        await self.audit.record(actor.label, purpose, recording_id, "ok", {"sha256": row.sha256})
        return recording_from_row(row), path

    def _seal_problem(self, row: RecordingRow) -> str | None:
        """Why the row's seal does not vouch for it, or None (unsealed old rows pass here)."""
        if row.seal is None or row.key_id is None:
            return None
        ok = self.audit.sealer.recording_ok(row.key_id, sealed_metadata(row), row.seal)
        if ok is None:
            return f"sealed with unknown key id {row.key_id}"
        return None if ok else "seal wrong: the row was changed without the key"

    async def _file_matches(self, row: RecordingRow, path: Path) -> bool:
        """The file hashes to the row's ``sha256``; a file verified before and unchanged
        since (same inode, size and mtime) is not hashed again."""
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return False
        mark = (st.st_ino, st.st_size, st.st_mtime_ns, row.sha256)
        if self._verified.get(row.id) == mark:
            self._verified.move_to_end(row.id)
            return True
        if await asyncio.to_thread(_sha256, path) != row.sha256:
            self._verified.pop(row.id, None)
            return False
        self._verified[row.id] = mark
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return True

    async def export(self, actor: Actor, recording_id: str, out: Path) -> Recording:
        """Write the recording's audio (decrypted when stored encrypted) to ``out``."""
        rec, path = await self.open(actor, recording_id, "export")
        if rec.encrypted:
            await asyncio.to_thread(self._decrypt_to, path, out)
        else:
            await asyncio.to_thread(shutil.copyfile, path, out)
        return rec

    def reader(self, path: Path) -> EncryptedReader:
        """An encrypted recording's audio, chunk by chunk (blocking: call in a thread)."""
        if self.keys is None:
            raise RecordingError("this recording is encrypted but no site key is configured")
        try:
            return open_encrypted(path, self.keys)
        except CryptError as e:
            raise IntegrityError(f"recording cannot be decrypted: {e}") from e

    def _decrypt_to(self, path: Path, out: Path) -> None:
        with self.reader(path) as r:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                try:
                    for piece in r.iter_plain(CHUNK):
                        f.write(piece)
                except CryptError as e:
                    raise IntegrityError(f"recording cannot be decrypted: {e}") from e

    # -- administration ------------------------------------------------------------------------
    async def set_hold(self, actor: Actor, recording_id: str, hold: bool, reason: str = "") -> None:
        actor.require("hold")
        if not RECORDING_ID.match(recording_id):
            raise RecordingNotFound("no such recording")

        async def change(s: AsyncSession) -> bool:
            row = await s.get(RecordingRow, recording_id, with_for_update=True)
            if row is None:
                return False
            row.legal_hold, row.hold_reason = hold, (reason or None) if hold else None
            if row.seal is not None or self._seal_problem(row) is None:
                self._seal(row)  # the seal follows the change it vouches for
            return True

        found, _ = await self.audit.record_with(
            change,
            actor.label,
            "hold" if hold else "release",
            recording_id,
            "ok",
            {"reason": reason},
        )
        if not found:
            # Rolled back with the entry: nothing was changed, so nothing was audited.
            raise RecordingNotFound("no such recording")

    async def purge(self, actor: Actor, today: date | None = None) -> list[str]:
        """Delete recordings past retention, except those under legal hold; each one audited.

        The delete itself re-checks retention and hold: a hold placed after the
        candidates were read still saves the recording.
        """
        actor.require("retention")
        today = today or date.today()
        async with self._db.sessions() as s:
            rows = list(
                await s.scalars(
                    select(RecordingRow).where(
                        RecordingRow.retention_until < today, RecordingRow.legal_hold.is_(False)
                    )
                )
            )
        purged = []
        for row in rows:

            async def remove(s: AsyncSession, rid: str = row.id) -> bool:
                gone = await s.execute(
                    delete(RecordingRow).where(
                        RecordingRow.id == rid,
                        RecordingRow.retention_until < today,
                        RecordingRow.legal_hold.is_(False),
                    )
                )
                if getattr(gone, "rowcount", 0) != 1:
                    raise _HeldMeanwhile
                return True

            try:
                await self.audit.record_with(
                    remove,
                    actor.label,
                    "purge",
                    row.id,
                    "ok",
                    {
                        "call_id": row.call_id,
                        "sha256": row.sha256,
                        "retention_until": row.retention_until.isoformat(),
                    },
                )
            except _HeldMeanwhile:
                log.info("purge skipped: held meanwhile", extra={"recording": row.id})
                continue
            self._verified.pop(row.id, None)
            await asyncio.to_thread((self.store_dir / row.path).unlink, missing_ok=True)
            purged.append(row.id)
        return purged

    async def rewrap_all(self, actor: Actor) -> tuple[int, int]:
        """Re-wrap every encrypted recording's data key under the current site key.

        The audio is never re-encrypted: only each file's 56-byte key slot is
        rewritten.  The file's hash changes, so each rewrap updates the row
        (hash and seal) in the transaction of its ``rewrap`` audit entry; a
        file rewrapped before a crash (row still naming the old hash) is
        recognised on the next run by decrypting it and checking its audio
        against ``audio_sha256``.  Returns ``(rewrapped, already current)``.
        """
        actor.require("retention")
        keys = self.keys
        if keys is None:
            raise RecordingError("recordings are not encrypted here ([recordings] encrypt)")
        async with self._db.sessions() as s:
            rows = list(await s.scalars(select(RecordingRow).where(RecordingRow.encrypted)))
        done = current = 0
        for row in rows:
            path = self.store_dir / row.path
            changed = await asyncio.to_thread(rewrap, path, keys)
            digest = await asyncio.to_thread(_sha256, path)
            if not changed and digest == row.sha256:
                current += 1
                continue
            if not changed and await asyncio.to_thread(_audio_sha256, path, keys) != (
                row.audio_sha256 or ""
            ):
                raise IntegrityError(f"recording {row.id}: file differs from its hash")
            row.sha256 = digest
            self._seal(row)
            fresh = _copy_row(row)

            async def update_row(s: AsyncSession, fresh: RecordingRow = fresh) -> None:
                await s.merge(_copy_row(fresh))

            await self.audit.record_with(
                update_row,
                actor.label,
                "rewrap",
                row.id,
                "ok",
                {"key_id": keys.current, "sha256": digest},
            )
            self._verified.pop(row.id, None)
            done += 1
        return done, current

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Re-hash every stored file; report missing, altered and orphan files, and the chain."""
        files, audit = await self.check(progress)
        return files + [p.message for p in audit.problems]

    async def check(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[str], AuditReport]:
        """The recordings' problems, one sentence each, and the audit log's report.

        Per recording: file missing, file differs (from the row's hash), seal
        wrong (the row was changed, its hash included, without the key), sealed
        with an unknown key, unsealed where sealing had begun; then files in the
        store with no row, and files in quarantine.
        """
        problems: list[str] = []
        async with self._db.sessions() as s:
            rows = list(await s.scalars(select(RecordingRow).order_by(RecordingRow.started_at)))
        ingested = await self.audit.by_target("ingest")
        known = set()
        for i, row in enumerate(rows, start=1):
            path = self.store_dir / row.path
            known.add(path.resolve())
            entry = ingested.get(row.id)
            if row.seal is None:
                if entry is not None and entry.detail.get("key_id"):
                    problems.append(
                        f"recording {row.id}: unsealed, but it was sealed when stored "
                        f"(audit entry {entry.seq}): the seal was removed"
                    )
            elif (why := self._seal_problem(row)) is not None:
                problems.append(f"recording {row.id}: {why}")
            if not await asyncio.to_thread(path.exists):
                problems.append(f"recording {row.id}: file missing ({row.path})")
            elif await asyncio.to_thread(_sha256, path) != row.sha256:
                problems.append(f"recording {row.id}: file differs from its hash ({row.path})")
            elif row.encrypted and (why := await asyncio.to_thread(self._undecryptable, path)):
                problems.append(f"recording {row.id}: {why} ({row.path})")
            if progress is not None:
                progress(i, len(rows))
        files = await asyncio.to_thread(lambda: list(self.store_dir.glob("*/*/*/*.wav")))
        for f in files:
            if f.resolve() not in known:
                problems.append(f"orphan file with no record: {f.relative_to(self.store_dir)}")
        # A recording the audit log saw stored, never purged, whose row is gone:
        # removed from the database (the file with it, or the file is an orphan).
        rows_by_id = {r.id for r in rows}
        purged = await self.audit.by_target("purge")
        for rid, entry in ingested.items():
            if rid not in rows_by_id and rid not in purged:
                problems.append(
                    f"recording {rid}: removed: stored at audit entry {entry.seq} "
                    f"(call {entry.detail.get('call_id', '?')}) but its row is gone and no "
                    "purge was audited"
                )
        for name in await asyncio.to_thread(self.quarantined):
            problems.append(
                f"quarantined spool file {QUARANTINE}/{name}: names no call "
                "(not LINKEDID--UNIQUEID.wav); listen to it and file it by hand"
            )
        return problems, await self.audit.check()

    def _undecryptable(self, path: Path) -> str | None:
        """Why an encrypted file cannot be played here (no key, unknown key), or None."""
        if self.keys is None:
            return "encrypted, but no site key is configured ([recordings] key_file)"
        try:
            open_encrypted(path, self.keys).close()
        except CryptError as e:
            return f"cannot be decrypted: {e}"
        return None


class _HeldMeanwhile(Exception):
    """The recording was held (or kept longer) after purge read it: not deleted."""


def _plain(criteria: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in criteria.items()}
