"""Interaction records: what each caller did in the IVR, for agents and reports.

One row per call through the IVR, keyed by Asterisk's linkedid (``call_id``).
The record is written twice: when the call enters the flow (so a crashed
server still leaves a trace) and when it leaves (with the whole path).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select

from hotline.db import Database
from hotline.tables import InteractionRow

Outcome = Literal["in_progress", "self_served", "queued", "abandoned", "error"]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Interaction:
    id: str
    call_id: str
    flow: str
    caller_number: str = ""
    caller_name: str = ""
    channel: str = ""
    customer_id: int | None = None
    language: str = "en"
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: Outcome = "in_progress"
    queue: str | None = None
    intent: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    self_service: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def path(self) -> list[str]:
        return [s["node"] for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call_id,
            "flow": self.flow,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "channel": self.channel,
            "customer_id": self.customer_id,
            "language": self.language,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "outcome": self.outcome,
            "queue": self.queue,
            "intent": self.intent,
            "path": self.path,
            "steps": self.steps,
            "inputs": self.inputs,
            "transcripts": self.transcripts,
            "self_service": self.self_service,
            "error": self.error,
        }


_FIELDS = (
    "call_id",
    "flow",
    "caller_number",
    "caller_name",
    "channel",
    "customer_id",
    "language",
    "started_at",
    "ended_at",
    "outcome",
    "queue",
    "intent",
    "steps",
    "inputs",
    "transcripts",
    "self_service",
    "error",
)


def _from_row(row: InteractionRow) -> Interaction:
    started = row.started_at
    ended = row.ended_at
    # SQLite hands back naive datetimes; everything we store is UTC.
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    if ended is not None and ended.tzinfo is None:
        ended = ended.replace(tzinfo=UTC)
    return Interaction(
        id=row.id,
        call_id=row.call_id,
        flow=row.flow,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        channel=row.channel,
        customer_id=row.customer_id,
        language=row.language,
        started_at=started,
        ended_at=ended,
        outcome=row.outcome,  # type: ignore[arg-type]
        queue=row.queue,
        intent=row.intent,
        steps=list(row.steps or []),
        inputs=dict(row.inputs or {}),
        transcripts=list(row.transcripts or []),
        self_service=list(row.self_service or []),
        error=row.error,
    )


class InteractionStore:
    """Interaction records in the database, with the latest hand-offs kept in memory.

    When the IVR and the CTI share one process (``hotline serve``), the screen
    pop for a call reads the record the IVR just handed over from memory:
    the agent's phone rings milliseconds after the hand-off, and a database
    round trip there is the slowest part of a pop.
    """

    HANDOFF_CACHE = 5000

    def __init__(self, db: Database) -> None:
        self._db = db
        self._recent: OrderedDict[str, Interaction] = OrderedDict()

    def _remember(self, interaction: Interaction) -> None:
        snapshot = copy.deepcopy(interaction)
        for key in (interaction.id, interaction.call_id):
            self._recent[key] = snapshot
            self._recent.move_to_end(key)
        while len(self._recent) > self.HANDOFF_CACHE:
            self._recent.popitem(last=False)

    async def save(self, interaction: Interaction) -> None:
        """Insert or update the record (the same call saved again overwrites)."""
        if interaction.ended_at is not None:
            self._remember(interaction)
        async with self._db.sessions() as s, s.begin():
            row = await s.get(InteractionRow, interaction.id)
            if row is None:
                row = InteractionRow(id=interaction.id)
                s.add(row)
            for name in _FIELDS:
                setattr(row, name, getattr(interaction, name))

    async def get(self, key: str) -> Interaction | None:
        """By interaction id or by call id (the newest for that call)."""
        cached = self._recent.get(key)
        if cached is not None:
            return copy.deepcopy(cached)
        async with self._db.sessions() as s:
            row = await s.get(InteractionRow, key)
            if row is None:
                row = await s.scalar(
                    select(InteractionRow)
                    .where(InteractionRow.call_id == key)
                    .order_by(InteractionRow.started_at.desc())
                    .limit(1)
                )
            return _from_row(row) if row else None

    async def recent(self, limit: int = 20, caller: str | None = None) -> list[Interaction]:
        async with self._db.sessions() as s:
            q = select(InteractionRow).order_by(InteractionRow.started_at.desc()).limit(limit)
            if caller is not None:
                q = q.where(InteractionRow.caller_number == caller)
            return [_from_row(r) for r in await s.scalars(q)]
