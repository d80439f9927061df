"""Callbacks: a caller hangs up and keeps their place in the queue.

The IVR books a callback (``CallbackStore.book``); the CTI's dispatcher
(``cti/callbacks.py``) rings an agent, then the caller, when the callback
reaches the front of its queue.  Everything is in the database, so a
restart loses no one: a callback that was being dialled when the server
stopped goes back to the line with that attempt counted.

Numbers come only from the caller ID (or digits the caller confirmed) and
must match the configured pattern before they are stored: nothing a caller
typed reaches Asterisk's Originate unchecked.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hotline.contracts import NUMBER_PATTERN
from hotline.storage.db import Database
from hotline.storage.tables import CallbackRow

Status = Literal["pending", "dialing", "completed", "failed", "cancelled"]
OPEN: tuple[Status, ...] = ("pending", "dialing")

# Digits only, 7 to 15 of them (E.164 allows 15; fewer than 7 are emergency and
# short service numbers, which a spoofed caller ID must not make us call), an
# optional leading +.
DEFAULT_NUMBER_PATTERN = NUMBER_PATTERN


class InvalidNumber(ValueError):
    """The number may not be dialled (empty, anonymous, or outside the allowed pattern)."""


class CallbackLimitReached(Exception):
    """This number has had as many callbacks booked in the window as it may."""

    def __init__(self, booked: int) -> None:
        super().__init__(f"{booked} callbacks already booked for this number in the window")
        self.booked = booked


def utcnow() -> datetime:
    return datetime.now(UTC)


def dialable(number: str, pattern: str = DEFAULT_NUMBER_PATTERN) -> str:
    """The number as Asterisk may dial it (digits only), or InvalidNumber."""
    raw = number.strip()
    if not re.fullmatch(pattern, raw) or not re.fullmatch(DEFAULT_NUMBER_PATTERN, raw):
        # Both: the site's pattern narrows (e.g. national numbers only), never widens.
        raise InvalidNumber(f"number not allowed for callbacks: {raw[-4:]!r} (last 4 shown)")
    return raw.lstrip("+")


@dataclass(slots=True)
class Callback:
    id: str
    queue: str
    number: str
    call_id: str
    requested_at: datetime
    next_attempt_at: datetime
    interaction_id: str | None = None
    customer_id: int | None = None
    language: str = "en"
    status: Status = "pending"
    attempts: int = 0
    agent: str | None = None
    last_result: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "number": self.number,
            "call_id": self.call_id,
            "interaction_id": self.interaction_id,
            "customer_id": self.customer_id,
            "language": self.language,
            "requested_at": self.requested_at.isoformat(),
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "agent": self.agent,
            "last_result": self.last_result,
            "history": self.history,
        }


def _from_row(row: CallbackRow) -> Callback:
    return Callback(
        id=row.id,
        queue=row.queue,
        number=row.number,
        call_id=row.call_id,
        requested_at=row.requested_at,
        next_attempt_at=row.next_attempt_at,
        interaction_id=row.interaction_id,
        customer_id=row.customer_id,
        language=row.language,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        agent=row.agent,
        last_result=row.last_result,
        history=list(row.history or []),
    )


class CallbackStore:
    def __init__(self, db: Database, number_pattern: str = DEFAULT_NUMBER_PATTERN) -> None:
        self._db = db
        self.number_pattern = number_pattern

    async def book(
        self,
        *,
        queue: str,
        number: str,
        call_id: str,
        requested_at: datetime | None = None,
        interaction_id: str | None = None,
        customer_id: int | None = None,
        language: str = "en",
        limit: int | None = None,
        window_s: float = 86400.0,
    ) -> Callback:
        """A new pending callback, or the one this number already has open.

        With ``limit``: :class:`CallbackLimitReached` when the number already
        had that many callbacks booked (whatever became of them) in the last
        ``window_s`` seconds, counted in the database.
        """
        digits = dialable(number, self.number_pattern)
        existing = await self.open_for(digits)
        if existing is not None:
            return existing
        now = utcnow()
        if limit is not None:
            booked = await self.booked_since(digits, now - timedelta(seconds=window_s))
            if booked >= limit:
                raise CallbackLimitReached(booked)
        cb = Callback(
            id=uuid.uuid4().hex,
            queue=queue,
            number=digits,
            call_id=call_id,
            requested_at=requested_at or now,
            next_attempt_at=now,
            interaction_id=interaction_id,
            customer_id=customer_id,
            language=language,
            history=[{"at": now.isoformat(), "event": "booked", "call_id": call_id}],
        )
        try:
            await self._insert(cb, now)
        except IntegrityError:
            # Another call from this number booked between our check and our insert.
            existing = await self.open_for(digits)
            if existing is None:
                raise
            return existing
        return cb

    async def _insert(self, cb: Callback, now: datetime) -> None:
        async with self._db.sessions() as s, s.begin():
            s.add(
                CallbackRow(
                    id=cb.id,
                    queue=cb.queue,
                    number=cb.number,
                    call_id=cb.call_id,
                    interaction_id=cb.interaction_id,
                    customer_id=cb.customer_id,
                    language=cb.language,
                    requested_at=cb.requested_at,
                    status=cb.status,
                    attempts=0,
                    next_attempt_at=cb.next_attempt_at,
                    history=cb.history,
                    updated_at=now,
                )
            )

    async def open_for(self, number: str) -> Callback | None:
        """The pending or dialling callback for this number, if any."""
        digits = number.strip().lstrip("+")
        async with self._db.sessions() as s:
            row = await s.scalar(
                select(CallbackRow)
                .where(CallbackRow.number == digits, CallbackRow.status.in_(OPEN))
                .order_by(CallbackRow.requested_at)
                .limit(1)
            )
            return _from_row(row) if row else None

    async def booked_since(self, number: str, since: datetime) -> int:
        """Callbacks booked for this number (digits) whose caller called since ``since``."""
        digits = number.strip().lstrip("+")
        async with self._db.sessions() as s:
            n = await s.scalar(
                select(func.count())
                .select_from(CallbackRow)
                .where(CallbackRow.number == digits, CallbackRow.requested_at >= since)
            )
            return int(n or 0)

    async def get(self, callback_id: str) -> Callback | None:
        async with self._db.sessions() as s:
            row = await s.get(CallbackRow, callback_id)
            return _from_row(row) if row else None

    async def pending(self, queue: str | None = None) -> list[Callback]:
        """Pending callbacks in the order their callers would have been served."""
        async with self._db.sessions() as s:
            q = select(CallbackRow).where(CallbackRow.status == "pending")
            if queue is not None:
                q = q.where(CallbackRow.queue == queue)
            rows = await s.scalars(q.order_by(CallbackRow.requested_at))
            return [_from_row(r) for r in rows]

    async def list(self, status: str | None = None, limit: int = 100) -> list[Callback]:
        async with self._db.sessions() as s:
            q = select(CallbackRow).order_by(CallbackRow.requested_at.desc()).limit(limit)
            if status is not None:
                q = q.where(CallbackRow.status == status)
            return [_from_row(r) for r in await s.scalars(q)]

    async def _change(
        self, callback_id: str, event: dict[str, Any], expect: tuple[Status, ...], **values: Any
    ) -> Callback | None:
        """Apply ``values`` if the callback is in one of ``expect``; None otherwise."""
        now = utcnow()
        async with self._db.sessions() as s, s.begin():
            row = await s.get(CallbackRow, callback_id, with_for_update=True)
            if row is None or row.status not in expect:
                return None
            for k, v in values.items():
                setattr(row, k, v)
            row.history = [*(row.history or []), {"at": now.isoformat(), **event}]
            row.updated_at = now
            return _from_row(row)

    async def start_attempt(self, callback_id: str, agent: str) -> Callback | None:
        cb = await self.get(callback_id)
        if cb is None:
            return None
        return await self._change(
            callback_id,
            {"event": "dialing", "agent": agent, "attempt": cb.attempts + 1},
            ("pending",),
            status="dialing",
            agent=agent,
            attempts=cb.attempts + 1,
        )

    async def finish_attempt(
        self,
        callback_id: str,
        result: str,
        *,
        connected: bool,
        max_attempts: int,
        retry_after_s: float,
        counts: bool = True,
    ) -> Callback | None:
        """Record an attempt's result: completed, back in line for a retry, or failed.

        ``counts=False`` (the agent did not answer: not the caller's fault)
        gives the attempt back.
        """
        cb = await self.get(callback_id)
        if cb is None:
            return None
        attempts = cb.attempts if counts else max(cb.attempts - 1, 0)
        if connected:
            status: Status = "completed"
        elif attempts >= max_attempts:
            status = "failed"
        else:
            status = "pending"
        return await self._change(
            callback_id,
            {"event": "attempt_result", "result": result, "status": status},
            ("dialing",),
            status=status,
            attempts=attempts,
            last_result=result,
            next_attempt_at=utcnow() + timedelta(seconds=0 if connected else retry_after_s),
        )

    async def cancel(self, callback_id: str, reason: str) -> Callback | None:
        return await self._change(
            callback_id, {"event": "cancelled", "reason": reason}, OPEN, status="cancelled"
        )

    async def recover(self, max_attempts: int = 3, retry_after_s: float = 60.0) -> int:
        """After a restart: callbacks left dialling go back in line, after
        ``retry_after_s`` (the interrupted call may still be ringing); the
        attempt counts, and one that was the last attempt fails."""
        now = utcnow()
        async with self._db.sessions() as s, s.begin():
            rows = list(
                await s.scalars(
                    select(CallbackRow).where(CallbackRow.status == "dialing").with_for_update()
                )
            )
            for row in rows:
                row.status = "failed" if row.attempts >= max_attempts else "pending"
                row.last_result = "interrupted"
                row.next_attempt_at = now + timedelta(seconds=retry_after_s)
                row.history = [
                    *(row.history or []),
                    {"at": now.isoformat(), "event": "interrupted", "status": row.status},
                ]
                row.updated_at = now
            return len(rows)
