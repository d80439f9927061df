"""The recording store: crash-safe ingest, integrity checks, retention, audited access.

Ingest of one spool file (what MixMonitor wrote), in an order that survives a
kill -9 between any two steps:

1. hash the spool file;
2. copy it to ``<store>/YYYY/MM/DD/.<name>.tmp``, fsync, and check the copy's
   hash against the original;
3. rename the copy to its final name and fsync the folder;
4. insert the metadata row (unique by spool file name);
5. only then delete the spool file.

A crash before 3 leaves a ``.tmp`` (removed on the next run) and the spool
file (ingested again); after 3 the next run finds the final file with the
right hash and reuses it; after 4 it finds the row and only finishes step 5.
So there is never a row without its file and never a deleted original
without a verified copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import uuid
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, select

from hotline.records.audit import AuditLog, AuditReport
from hotline.records.interactions import InteractionStore
from hotline.records.users import AccessDenied, Actor
from hotline.storage.db import Database
from hotline.storage.files import fsync_dir
from hotline.storage.tables import RecordingRow

log = logging.getLogger("hotline.recordings")

RECORDING_ID = re.compile(r"^[0-9a-f]{32}$")
SPOOL_NAME = re.compile(r"^(?P<call_id>[0-9]+\.[0-9]+)--(?P<leg>[0-9]+\.[0-9]+)\.wav$")
CHUNK = 1 << 20


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
    )


@dataclass
class SweepReport:
    ingested: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # too young or call still live
    failed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # not a MixMonitor file of ours


# -- file work (runs in a thread) ------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_verified(src: Path, tmp: Path, expected: str) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
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


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate() or 8000)
    except (wave.Error, EOFError, OSError):
        # MixMonitor's header may lag behind the data: estimate from size (8 kHz slin).
        return max(0.0, (path.stat().st_size - 44) / 16000)


# The durable steps of an ingest, in order (the module docstring says what each leaves).
IngestStep = Literal["copied", "renamed", "recorded"]


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
    ) -> None:
        self._db = db
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
            raise NotARecording(f"{name}: not a recording of ours (expected LINKEDID--LEG.wav)")
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
                if await asyncio.to_thread(_sha256, spool_file) != row.sha256:
                    raise IntegrityError(
                        f"{name}: differs from the recording already stored "
                        "under this name; kept in the spool"
                    )
                tmp = final.with_name(f".{name}.tmp")
                await asyncio.to_thread(_copy_verified, spool_file, tmp, row.sha256)
                await asyncio.to_thread(os.replace, tmp, final)
                await asyncio.to_thread(fsync_dir, final.parent)
                await self.audit.record(
                    "system", "restore", row.id, "ok", {"sha256": row.sha256, "from": "spool"}
                )
            await asyncio.to_thread(spool_file.unlink, missing_ok=True)
            return recording_from_row(row)
        stat = await asyncio.to_thread(spool_file.stat)
        digest = await asyncio.to_thread(_sha256, spool_file)
        ended = datetime.fromtimestamp(stat.st_mtime, UTC)
        duration = round(await asyncio.to_thread(_wav_seconds, spool_file), 2)
        folder = self.store_dir / ended.strftime("%Y/%m/%d")
        final = folder / name
        tmp = folder / f".{name}.tmp"
        if not (
            await asyncio.to_thread(final.exists)
            and await asyncio.to_thread(_sha256, final) == digest
        ):
            await asyncio.to_thread(_copy_verified, spool_file, tmp, digest)
            self._step("copied")
            await asyncio.to_thread(os.replace, tmp, final)
            await asyncio.to_thread(fsync_dir, folder)
        self._step("renamed")
        facts = facts or await self._facts_from_records(m["call_id"])
        rec = RecordingRow(
            id=uuid.uuid4().hex,
            call_id=m["call_id"],
            source=name,
            path=str(final.relative_to(self.store_dir)),
            caller=facts.caller,
            agent=facts.agent,
            queue=facts.queue,
            started_at=ended - timedelta(seconds=duration),
            ended_at=ended,
            duration_s=duration,
            format="wav",
            size=stat.st_size,
            sha256=digest,
            # Recording starts when the agent answers: the IVR leg, where card
            # data is keyed, is never recorded, so nothing had to be paused.
            paused=[],
            retention_until=self.retention_for(facts.queue, ended.date()),
            legal_hold=False,
        )
        async with self._db.sessions() as s, s.begin():
            s.add(rec)
        await self.audit.record(
            "system",
            "ingest",
            rec.id,
            "ok",
            {"call_id": rec.call_id, "sha256": digest, "size": rec.size},
        )
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

    async def _facts_from_records(self, call_id: str) -> CallFacts:
        """The sweeper's metadata when the CTI saw no event: what the IVR recorded."""
        if self._interactions is None:
            return CallFacts()
        it = await self._interactions.get(call_id)
        if it is None:
            return CallFacts()
        return CallFacts(caller=it.caller_number, queue=it.queue or "")

    async def sweep(
        self, min_age_s: float = 5.0, is_live: Callable[[str], bool] = lambda _c: False
    ) -> SweepReport:
        """Ingest every finished spool file (missed events, crashes, restarts)."""
        report = SweepReport()
        await asyncio.to_thread(self._remove_stale_tmp)
        files = await asyncio.to_thread(lambda: sorted(self.spool_dir.glob("*.wav")))
        now = datetime.now(UTC).timestamp()
        for f in files:
            m = SPOOL_NAME.match(f.name)
            if m is None:
                report.unknown.append(f.name)
                continue
            try:
                age = now - (await asyncio.to_thread(f.stat)).st_mtime
            except FileNotFoundError:
                continue
            if age < min_age_s or is_live(m["call_id"]):
                report.waiting.append(f.name)
                continue
            try:
                await self.ingest(f)
                report.ingested.append(f.name)
            except (OSError, RecordingError) as e:
                # Disk full or the like: the original stays in the spool for the next sweep.
                log.error(
                    "ingest failed; original kept in the spool: %s", e, extra={"file": f.name}
                )
                report.failed.append(f.name)
        return report

    def _remove_stale_tmp(self) -> None:
        if self.store_dir.exists():
            for tmp in self.store_dir.glob("*/*/*/.*.tmp"):
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
        if (
            not await asyncio.to_thread(path.exists)
            or await asyncio.to_thread(_sha256, path) != row.sha256
        ):
            await self.audit.record(
                actor.label, purpose, recording_id, "failed", {"why": "file missing or altered"}
            )
            raise IntegrityError("recording failed its integrity check; reported")
        await self.audit.record(actor.label, purpose, recording_id, "ok", {"sha256": row.sha256})
        return recording_from_row(row), path

    async def export(self, actor: Actor, recording_id: str, out: Path) -> Recording:
        rec, path = await self.open(actor, recording_id, "export")
        await asyncio.to_thread(shutil.copyfile, path, out)
        return rec

    # -- administration ------------------------------------------------------------------------
    async def set_hold(self, actor: Actor, recording_id: str, hold: bool, reason: str = "") -> None:
        actor.require("hold")
        async with self._db.sessions() as s, s.begin():
            row = (
                await s.get(RecordingRow, recording_id)
                if RECORDING_ID.match(recording_id)
                else None
            )
            if row is None:
                raise RecordingNotFound("no such recording")
            row.legal_hold, row.hold_reason = hold, (reason or None) if hold else None
        await self.audit.record(
            actor.label, "hold" if hold else "release", recording_id, "ok", {"reason": reason}
        )

    async def purge(self, actor: Actor, today: date | None = None) -> list[str]:
        """Delete recordings past retention, except those under legal hold; each one audited."""
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
            await self.audit.record(
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
            async with self._db.sessions() as s, s.begin():
                await s.execute(delete(RecordingRow).where(RecordingRow.id == row.id))
            await asyncio.to_thread((self.store_dir / row.path).unlink, missing_ok=True)
            purged.append(row.id)
        return purged

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Re-hash every stored file; report missing, altered and orphan files, and the chain."""
        files, audit = await self.check(progress)
        return files + [p.message for p in audit.problems]

    async def check(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[str], AuditReport]:
        """The files' problems, and the audit log's report (seals and checkpoints included)."""
        problems: list[str] = []
        async with self._db.sessions() as s:
            rows = list(await s.scalars(select(RecordingRow).order_by(RecordingRow.started_at)))
        known = set()
        for i, row in enumerate(rows, start=1):
            path = self.store_dir / row.path
            known.add(path.resolve())
            if not await asyncio.to_thread(path.exists):
                problems.append(f"recording {row.id}: file missing ({row.path})")
            elif await asyncio.to_thread(_sha256, path) != row.sha256:
                problems.append(f"recording {row.id}: file altered ({row.path})")
            if progress is not None:
                progress(i, len(rows))
        files = await asyncio.to_thread(lambda: list(self.store_dir.glob("*/*/*/*.wav")))
        for f in files:
            if f.resolve() not in known:
                problems.append(f"orphan file with no record: {f.relative_to(self.store_dir)}")
        return problems, await self.audit.check()


def _plain(criteria: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in criteria.items()}
