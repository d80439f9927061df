"""The tamper-evident audit log: every access and every metadata change, hash-chained and sealed.

Each entry's hash covers its own fields and the previous entry's hash, so
changing, removing or reordering any entry breaks every hash after it.  Each
hash is also sealed (HMAC-SHA-256) with a key kept outside the database
(``hotline.records.seal``): someone who can write the database but not read
the key cannot rewrite the chain and re-hash it.  And every append writes a
sealed checkpoint of the new head to a file outside the database, so removing
the newest entries, or all of them, leaves the log behind its checkpoint.

Appends are serialised in the database (SQLite ``BEGIN IMMEDIATE``,
PostgreSQL a transaction-level advisory lock), so two processes (the server
and a CLI command) never fork the chain.  :meth:`AuditLog.check` names every
entry that does not fit and why (docs/recordings.md, "Trusting the audit log").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from hotline.config import Config
from hotline.records.seal import (
    Checkpoint,
    CheckpointRead,
    Sealer,
    append_checkpoint,
    make_checkpoint,
    read_checkpoints,
)
from hotline.storage.db import Database
from hotline.storage.tables import AuditRow

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the audit chain's head ("hotline" in ASCII).
_PG_LOCK = 0x686F746C696E65
_RETRIES = 8

T = TypeVar("T")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    result: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None
    seal: str | None = None


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong: the entry (``seq``, or None for the checkpoint file), a kind, a sentence.

    Kinds: ``missing`` (a gap in the sequence), ``edited`` (hash mismatch),
    ``rechained`` (hashes consistent, seal wrong: rewritten without the key),
    ``unknown-key`` (sealed with a key id not in the key file), ``unsealed``
    (no seal where sealing had begun), ``truncated`` (the log ends before its
    newest checkpoint), ``checkpoint-mismatch`` (the entry differs from its
    checkpoint), ``checkpoint-behind`` (entries newer than every checkpoint),
    ``checkpoint-missing``, ``checkpoint-restarted`` (the file lost its first lines),
    ``checkpoint-unreadable``, ``checkpoint-seal``.
    """

    seq: int | None
    kind: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head: int  # the newest sequence number, 0 when empty
    sealed: int
    unsealed_before_sealing: int  # entries written before sealing was introduced
    checkpoint: Checkpoint | None  # the newest checkpoint
    problems: list[AuditProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.problems:
            return f"audit log: {len(self.problems)} problem(s)"
        parts = [f"audit log intact: {self.entries} {'entry' if self.entries == 1 else 'entries'}"]
        if self.unsealed_before_sealing and self.sealed:
            parts.append(
                f"sealed from entry {self.unsealed_before_sealing + 1} "
                f"({self.unsealed_before_sealing} unsealed, before sealing was introduced)"
            )
        elif self.unsealed_before_sealing:
            parts.append("unsealed (before sealing was introduced; the next entry is sealed)")
        elif self.sealed:
            parts.append("sealed")
        cp = self.checkpoint
        if cp is None:
            parts.append("no checkpoint yet")
        else:
            parts.append(f"newest checkpoint seq {cp.seq} at {cp.when():%Y-%m-%d %H:%M:%S} UTC")
        return ", ".join(parts)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def entry_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    result: str,
    detail: dict[str, Any],
) -> str:
    body = json.dumps(
        [
            prev_hash,
            seq,
            _utc(at).isoformat(timespec="microseconds"),
            actor,
            action,
            target,
            result,
            detail,
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        row.seq,
        _utc(row.at),
        row.actor,
        row.action,
        row.target,
        row.result,
        dict(row.detail or {}),
        row.prev_hash,
        row.hash,
        row.key_id,
        row.seal,
    )


class AuditLog:
    """The log in ``db``, sealed by ``sealer``, its head anchored in ``checkpoint_file``."""

    def __init__(self, db: Database, sealer: Sealer, checkpoint_file: Path) -> None:
        self._db = db
        self.sealer = sealer
        self.checkpoint_file = checkpoint_file
        self._lock = asyncio.Lock()  # fewer database waits; the database serialises processes

    @classmethod
    def open(cls, db: Database, key_file: Path, checkpoint_file: Path) -> AuditLog:
        """The log with the keys in ``key_file`` (created 0600 if missing)."""
        return cls(db, Sealer.load_or_create(key_file), checkpoint_file)

    @classmethod
    def from_config(cls, db: Database, cfg: Config) -> AuditLog:
        """``[audit] key_file`` and ``checkpoint_file``, relative to the configuration's folder."""
        return cls.open(db, cfg.path(cfg.audit.key_file), cfg.path(cfg.audit.checkpoint_file))

    async def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        _, entry = await self.record_with(None, actor, action, target, result, detail)
        return entry

    async def record_with(
        self,
        write: Callable[[AsyncSession], Awaitable[T]] | None,
        actor: str,
        action: str,
        target: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> tuple[T | None, AuditEntry]:
        """Run ``write`` and append the entry in one transaction: both are kept or neither.

        ``write`` may run more than once (a conflict with another process is
        retried): it must build what it adds each time.
        """
        detail = detail or {}
        async with self._lock:
            for attempt in range(_RETRIES):
                try:
                    return await self._append(write, actor, action, target, result, detail)
                except (sa_exc.IntegrityError, sa_exc.OperationalError):
                    # Another process held the head (a busy SQLite past its timeout, or
                    # a duplicate seq on a database without the lock): read it again.
                    if attempt == _RETRIES - 1:
                        raise
                    await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
        raise AssertionError("unreachable")

    async def _append(
        self,
        write: Callable[[AsyncSession], Awaitable[T]] | None,
        actor: str,
        action: str,
        target: str,
        result: str,
        detail: dict[str, Any],
    ) -> tuple[T | None, AuditEntry]:
        async with self._db.sessions() as s, s.begin():
            await self._hold_head(s)
            written = None if write is None else await write(s)
            last = await s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
            seq = 1 if last is None else last.seq + 1
            prev = GENESIS if last is None else last.hash
            at = datetime.now(UTC)
            h = entry_hash(prev, seq, at, actor, action, target, result, detail)
            key_id, seal = self.sealer.seal_entry(h)
            row = AuditRow(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                target=target,
                result=result,
                detail=detail,
                prev_hash=prev,
                hash=h,
                key_id=key_id,
                seal=seal,
            )
            s.add(row)
            await s.flush()
            # Still holding the head: checkpoints are written in chain order.  A crash
            # before the commit leaves a checkpoint of an entry that never was; the
            # next append takes the same seq and a later checkpoint (docs/recordings.md).
            checkpoint = make_checkpoint(self.sealer, seq, h)
            await asyncio.to_thread(append_checkpoint, self.checkpoint_file, checkpoint)
        return written, _entry(row)

    async def _hold_head(self, s: AsyncSession) -> None:
        """Take the chain's write lock until the transaction ends."""
        dialect = self._db.engine.dialect.name
        if dialect == "sqlite":
            await s.execute(text("BEGIN IMMEDIATE"))
        elif dialect == "postgresql":
            await s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})

    async def entries(self, limit: int = 50, actor: str | None = None) -> list[AuditEntry]:
        async with self._db.sessions() as s:
            q = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
            if actor is not None:
                q = q.where(AuditRow.actor == actor)
            return [_entry(r) for r in await s.scalars(q)]

    async def by_target(self, action: str) -> dict[str, AuditEntry]:
        """The newest entry of ``action`` for each target (e.g. each recording's ingest)."""
        out: dict[str, AuditEntry] = {}
        async with self._db.sessions() as s:
            rows = await s.stream_scalars(
                select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.seq)
            )
            async for row in rows:
                out[row.target] = _entry(row)
        return out

    async def count(self) -> int:
        async with self._db.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(AuditRow)) or 0)

    async def verify(self) -> list[str]:
        """Problems with the log, one sentence each, or [] when it is intact."""
        return [p.message for p in (await self.check()).problems]

    async def check(self) -> AuditReport:
        """Walk the chain, check every seal, compare the head with the newest checkpoint."""
        before = await asyncio.to_thread(read_checkpoints, self.checkpoint_file, self.sealer)
        walk = _Walk(self.sealer, before.first_seq)
        async with self._db.sessions() as s:
            result = await s.stream_scalars(select(AuditRow).order_by(AuditRow.seq))
            async for row in result:
                walk.step(_entry(row))
        # The head and the newest checkpoint, read together while no append is in
        # flight (an append writes its checkpoint before it commits): entries
        # appended during the walk are neither "truncated" nor "behind".
        async with self._db.sessions() as s, s.begin():
            await self._hold_head(s)
            # Only the lines appended since the first read: each line's seal is
            # checked once, however long the file has grown.
            cps = await asyncio.to_thread(
                read_checkpoints, self.checkpoint_file, self.sealer, before
            )
            head = int(await s.scalar(select(func.max(AuditRow.seq))) or 0)
            at_checkpoint = (
                None
                if cps.newest is None
                else await s.scalar(select(AuditRow.hash).where(AuditRow.seq == cps.newest.seq))
            )
        problems: list[AuditProblem] = [
            AuditProblem(None, kind, f"checkpoint file {self.checkpoint_file}:{line}: {why}")
            for line, kind, why in cps.problems
        ]
        problems += walk.problems
        problems += self._against_checkpoint(walk, cps, head, at_checkpoint)
        return AuditReport(
            walk.entries,
            walk.head,
            walk.sealed,
            walk.presealed,
            cps.newest,
            problems,
        )

    def _against_checkpoint(
        self, walk: _Walk, cps: CheckpointRead, head: int, at_checkpoint: str | None
    ) -> list[AuditProblem]:
        cp = cps.newest
        if cp is None:
            if not walk.sealed:
                return []
            why = (
                f"is missing, yet {walk.sealed} entries are sealed: the log cannot be "
                "checked for removed newest entries"
                if not cps.exists
                else f"holds no valid checkpoint, yet {walk.sealed} entries are sealed"
            )
            return [
                AuditProblem(
                    None, "checkpoint-missing", f"checkpoint file {self.checkpoint_file} {why}"
                )
            ]
        when = f"{cp.when():%Y-%m-%d %H:%M:%S} UTC"
        if head < cp.seq:
            gone = f"entry {cp.seq}" if head + 1 == cp.seq else f"entries {head + 1}..{cp.seq}"
            return [
                AuditProblem(
                    head + 1,
                    "truncated",
                    f"audit log truncated: it ends at entry {head} but the newest "
                    f"checkpoint ({when}) is entry {cp.seq}: {gone} removed",
                )
            ]
        out: list[AuditProblem] = []
        first_sealed, first_checkpointed = walk.first_sealed, cps.first_seq
        if (
            first_sealed is not None
            and first_checkpointed is not None
            and first_sealed < first_checkpointed
        ):
            out.append(
                AuditProblem(
                    first_sealed,
                    "checkpoint-restarted",
                    f"checkpoint file {self.checkpoint_file} begins at entry "
                    f"{first_checkpointed} but sealing began at entry {first_sealed}: "
                    "its earlier lines are gone (the file was deleted or replaced)",
                )
            )
        if at_checkpoint != cp.hash:
            out.append(
                AuditProblem(
                    cp.seq,
                    "checkpoint-mismatch",
                    f"audit entry {cp.seq}: differs from its checkpoint of {when} "
                    "(the log was rewritten)",
                )
            )
        if head > cp.seq:
            out.append(
                AuditProblem(
                    cp.seq + 1,
                    "checkpoint-behind",
                    f"checkpoint file {self.checkpoint_file} is behind the log: entries "
                    f"{cp.seq + 1}..{head} have no checkpoint (the file was cut short, "
                    "replaced, or another checkpoint file is configured)",
                )
            )
        return out


class _Walk:
    """The chain, entry by entry in seq order: what does not fit."""

    def __init__(self, sealer: Sealer, first_checkpointed: int | None) -> None:
        self.sealer = sealer
        # Sealing began at the first checkpointed entry (or the first sealed one).
        self.sealed_from = first_checkpointed
        self.problems: list[AuditProblem] = []
        self.prev, self.expected = GENESIS, 1
        self.entries = self.head = self.sealed = self.presealed = 0
        self.first_sealed: int | None = None

    def step(self, e: AuditEntry) -> None:
        add = self.problems.append
        self.entries += 1
        self.head = e.seq
        gap = e.seq != self.expected
        if gap:
            missing = (
                f"audit entry {self.expected} is missing"
                if e.seq == self.expected + 1
                else f"audit entries {self.expected}..{e.seq - 1} are missing"
            )
            add(AuditProblem(self.expected, "missing", f"{missing} (next is {e.seq})"))
        edited = False
        if e.prev_hash != self.prev and not gap:
            add(
                AuditProblem(
                    e.seq, "edited", f"audit entry {e.seq}: does not follow entry {e.seq - 1}"
                )
            )
            edited = True
        own = entry_hash(e.prev_hash, e.seq, e.at, e.actor, e.action, e.target, e.result, e.detail)
        if own != e.hash:
            add(
                AuditProblem(e.seq, "edited", f"audit entry {e.seq}: altered (hash does not match)")
            )
            edited = True
        self.prev, self.expected = e.hash, e.seq + 1
        if e.seal is None or e.key_id is None:
            if self.sealed or (self.sealed_from is not None and e.seq >= self.sealed_from):
                begun = self.sealed_from if self.sealed_from is not None else "an earlier entry"
                add(
                    AuditProblem(
                        e.seq,
                        "unsealed",
                        f"audit entry {e.seq}: no seal, but sealing began at entry {begun} "
                        "(the seal was removed)",
                    )
                )
            else:
                self.presealed += 1
            return
        self.sealed += 1
        if self.first_sealed is None:
            self.first_sealed = e.seq
        if self.sealed_from is None:
            self.sealed_from = e.seq
        ok = self.sealer.entry_ok(e.key_id, e.hash, e.seal)
        if ok is None:
            add(
                AuditProblem(
                    e.seq,
                    "unknown-key",
                    f"audit entry {e.seq}: sealed with unknown key id {e.key_id} "
                    "(not in the key file)",
                )
            )
        elif not ok and not edited:
            add(
                AuditProblem(
                    e.seq,
                    "rechained",
                    f"audit entry {e.seq}: seal wrong: its hashes are consistent, so the chain "
                    "was rewritten from here without the key",
                )
            )
