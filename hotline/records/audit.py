"""The tamper-evident audit log: every access and every metadata change, hash-chained.

Each entry's hash covers its own fields and the previous entry's hash, so
changing, removing or reordering any entry breaks every hash after it;
``verify`` walks the chain and names the first entry that does not fit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from hotline.storage.db import Database
from hotline.storage.tables import AuditRow

GENESIS = "0" * 64


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
    )


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # one writer in this process keeps the chain linear

    async def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        result: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        detail = detail or {}
        async with self._lock, self._db.sessions() as s, s.begin():
            last = await s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
            seq = 1 if last is None else last.seq + 1
            prev = GENESIS if last is None else last.hash
            at = datetime.now(UTC)
            h = entry_hash(prev, seq, at, actor, action, target, result, detail)
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
            )
            s.add(row)
        return _entry(row)

    async def entries(self, limit: int = 50, actor: str | None = None) -> list[AuditEntry]:
        async with self._db.sessions() as s:
            q = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
            if actor is not None:
                q = q.where(AuditRow.actor == actor)
            return [_entry(r) for r in await s.scalars(q)]

    async def count(self) -> int:
        async with self._db.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(AuditRow)) or 0)

    async def verify(self) -> list[str]:
        """Problems with the chain, or [] when every entry is intact and in place."""
        problems: list[str] = []
        prev, expected_seq = GENESIS, 1
        async with self._db.sessions() as s:
            result = await s.stream_scalars(select(AuditRow).order_by(AuditRow.seq))
            async for row in result:
                e = _entry(row)
                if e.seq != expected_seq:
                    problems.append(f"audit entry {expected_seq} is missing (next is {e.seq})")
                if e.prev_hash != prev:
                    problems.append(f"audit entry {e.seq}: does not follow entry {e.seq - 1}")
                if (
                    entry_hash(
                        e.prev_hash, e.seq, e.at, e.actor, e.action, e.target, e.result, e.detail
                    )
                    != e.hash
                ):
                    problems.append(f"audit entry {e.seq}: altered (hash does not match)")
                prev, expected_seq = e.hash, e.seq + 1
        return problems
