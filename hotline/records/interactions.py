"""Interaction records: what each caller did in the IVR, for agents and reports.

One row per call through the IVR, keyed by Asterisk's linkedid (``call_id``).
The record is written twice: when the call enters the flow (so a crashed
server still leaves a trace) and when it leaves (with the whole path); the
writes go through one batching writer (``InteractionStore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict, cast

from sqlalchemy import and_, func, or_, select

from hotline.storage.db import Database
from hotline.storage.tables import InteractionRow

log = logging.getLogger("hotline.interactions")

# deflected: the caller left with a self-service link or a booked callback.
Outcome = Literal["in_progress", "self_served", "queued", "abandoned", "error", "deflected"]

# A disposition's note is at most this long (the column's length).
NOTE_MAX = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


class Step(TypedDict):
    """One node the caller went through (``ivr/flow/`` writes these).

    The engine appends the step when it enters the node and fills it in while
    the node runs, so a record saved mid-node (a callback booking) lacks ``ms``.
    """

    node: str  # node id
    type: str  # node kind: the model class name, lower case (menu, collect, deflect, ...)
    at_ms: int  # since the call entered the flow
    ms: NotRequired[int]  # time spent in the node
    result: NotRequired[str]  # how the node ended: an option key, "ok", "found", "else", ...
    tries: NotRequired[list[str]]  # menu and collect: failed tries ("no_input", "invalid:7")
    heard: NotRequired[list[str]]  # menu: what the recogniser heard, try by try
    estimate_s: NotRequired[int | None]  # deflect: the wait estimate (None: nobody staffed)
    estimate_method: NotRequired[str]  # deflect: how it was estimated
    callback: NotRequired[str]  # deflect: the id of the callback booked
    reason: NotRequired[str]  # transfer: why, placeholders filled in


class Transcript(TypedDict):
    """What the recogniser heard at a speech menu or listen node."""

    node: str
    text: str
    confidence: float  # mean word confidence, 0..1
    language: str
    option: str | None  # the menu option understood (None: no confident match, or a listen node)
    mode: NotRequired[str]  # menus only: "record" or "stream"
    barged_in: NotRequired[bool]  # menus only: the caller spoke over the prompt


class SelfService(TypedDict):
    """A self-service task, deflection outcome or identity check in the IVR."""

    task: str  # balance, pay_bill, deflection, verify
    # done, declined, paid; deflection: offered, declined, link_sent, ...;
    # verify: verified, failed, locked (no tries left this call), no_customer
    outcome: str
    amount: NotRequired[float]  # pay_bill paid: in currency units
    card: NotRequired[str]  # pay_bill paid: the card number, masked
    queue: NotRequired[str]  # deflection: the queue the offer was for
    method: NotRequired[str]  # verify: pin, birth_date or account
    attempts: NotRequired[int]  # verify: entries the caller made at this step


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
    steps: list[Step] = field(default_factory=list)
    # Node or variable -> what the caller entered (sensitive values masked).
    inputs: dict[str, str] = field(default_factory=dict)
    transcripts: list[Transcript] = field(default_factory=list)
    self_service: list[SelfService] = field(default_factory=list)
    error: str | None = None
    # The link sent by text message, if any: its unguessable token (what a web
    # page resolves; never logged), the digits it went to and when it was sent.
    link_token: str | None = None
    link_to: str | None = None
    link_sent_at: datetime | None = None
    # What the agent who took the call recorded at wrap-up (cti/desk.py): a label
    # configured for the queue, a note, who and when.  Never written by the IVR.
    disposition: str | None = None
    disposition_note: str | None = None
    disposed_by: str | None = None
    disposed_at: datetime | None = None

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
            "link_sent_at": self.link_sent_at.isoformat() if self.link_sent_at else None,
            "disposition": self.disposition,
            "disposition_note": self.disposition_note,
            "disposed_by": self.disposed_by,
            "disposed_at": self.disposed_at.isoformat() if self.disposed_at else None,
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
    "link_token",
    "link_to",
    "link_sent_at",
)


def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (id) DO UPDATE, for executemany over a batch."""
    table = InteractionRow.__table__
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"interaction records on {dialect!r}: use SQLite or PostgreSQL")
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.id],
        set_={name: stmt.excluded[name] for name in _FIELDS},
    )


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts and lists of scalars).

    ``copy.deepcopy`` took 0.36 ms of event-loop time per record (its memo and
    reduce protocol); this walks only dicts and lists, ~10x faster.  Anything
    else in a record (str, numbers, None, datetimes) is immutable.
    """
    kind = type(value)
    if kind is dict:
        return {k: _copy_json(v) for k, v in value.items()}
    if kind is list:
        return [_copy_json(v) for v in value]
    return value


def snapshot(interaction: Interaction) -> Interaction:
    """An independent copy: the engine may go on changing the original."""
    return dataclasses.replace(
        interaction,
        steps=_copy_json(interaction.steps),
        inputs=_copy_json(interaction.inputs),
        transcripts=_copy_json(interaction.transcripts),
        self_service=_copy_json(interaction.self_service),
    )


def _consume_exception(future: asyncio.Future[None]) -> None:
    # The writer already logged it; nobody waits for this one.
    if not future.cancelled():
        future.exception()


def _from_row(row: InteractionRow) -> Interaction:
    return Interaction(
        id=row.id,
        call_id=row.call_id,
        flow=row.flow,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        channel=row.channel,
        customer_id=row.customer_id,
        language=row.language,
        started_at=row.started_at,
        ended_at=row.ended_at,
        outcome=row.outcome,  # type: ignore[arg-type]
        queue=row.queue,
        intent=row.intent,
        # The JSON columns hold what the engine wrote: the types above.
        steps=cast(list[Step], list(row.steps or [])),
        inputs=cast(dict[str, str], dict(row.inputs or {})),
        transcripts=cast(list[Transcript], list(row.transcripts or [])),
        self_service=cast(list[SelfService], list(row.self_service or [])),
        error=row.error,
        link_token=row.link_token,
        link_to=row.link_to,
        link_sent_at=row.link_sent_at,
        disposition=row.disposition,
        disposition_note=row.disposition_note,
        disposed_by=row.disposed_by,
        disposed_at=row.disposed_at,
    )


# The agent's part of a record: kept apart from the IVR's saves (not in _FIELDS).
_DISPOSITION = ("disposition", "disposition_note", "disposed_by", "disposed_at")


class InteractionStore:
    """Interaction records in the database, written behind the calls, in batches.

    A save is a snapshot handed to one writer task.  At 1000 calls in the menu a
    transaction per save (about 1.3 ms of event-loop time each) delayed every
    other call's next AGI command (docs/benchmarks.md, FastAGI), so the writer
    lets queued saves gather for up to ``LINGER_S`` and upserts them in one
    transaction (SQLAlchemy Core, executemany, ~0.1 ms per row), in chunks of
    ``CHUNK_ROWS`` with the event loop free in between.

    ``save`` returns once the row is committed; ``save(..., wait=False)`` only
    queues it (written within ``LINGER_S``, or at once by ``flush``/``close``).
    The newest snapshot of a record wins; a failed write is logged and raised
    to whoever waits for it.

    The latest hand-offs are also kept in memory: when the IVR and the CTI
    share one process (``hotline serve``) the screen pop reads the record the
    IVR just handed over without a database round trip.
    """

    HANDOFF_CACHE = 5000
    BATCH_MAX = 500
    CHUNK_ROWS = 8
    LINGER_S = 0.25
    RETRY_AFTER_S = 0.5

    def __init__(self, db: Database) -> None:
        self._db = db
        self._recent: OrderedDict[str, Interaction] = OrderedDict()
        # Interaction id -> newest snapshot's row values and everyone waiting for it.
        self._pending: dict[str, tuple[dict[str, Any], list[asyncio.Future[None]]]] = {}
        self._wake = asyncio.Event()  # something is queued
        self._now = asyncio.Event()  # someone waits: write without lingering
        self._writer: asyncio.Task[None] | None = None
        self._upsert: Any = None
        self.batches = 0  # statements issued, for tests and benchmarks

    def _remember(self, snapshot: Interaction) -> None:
        known = self._recent.get(snapshot.id)
        if known is not None and known.disposition is not None and snapshot.disposition is None:
            # An IVR save never carries the agent's disposition; the row keeps it.
            for name in _DISPOSITION:
                setattr(snapshot, name, getattr(known, name))
        for key in (snapshot.id, snapshot.call_id):
            self._recent[key] = snapshot
            self._recent.move_to_end(key)
        while len(self._recent) > self.HANDOFF_CACHE:
            self._recent.popitem(last=False)

    async def save(self, interaction: Interaction, *, wait: bool = True) -> None:
        """Insert or update the record (the same call saved again overwrites).

        The record is copied now: the caller may go on changing it.  Raises
        what the database raised when ``wait`` is true.
        """
        copied = snapshot(interaction)
        if copied.ended_at is not None:
            self._remember(copied)
        values = {name: getattr(copied, name) for name in _FIELDS}
        values["id"] = copied.id
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = self._pending.get(copied.id)
        if entry is None:
            self._pending[copied.id] = (values, [waiter])
        else:
            entry[1].append(waiter)  # superseded: one write serves both
            self._pending[copied.id] = (values, entry[1])
        self._wake.set()
        if wait:
            self._now.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="interaction-writer")
        if wait:
            await asyncio.shield(waiter)
        else:
            waiter.add_done_callback(_consume_exception)

    async def flush(self) -> None:
        """Wait until everything saved so far is written (errors are logged, not raised)."""
        waiters = [w for _, ws in self._pending.values() for w in ws]
        if waiters:
            self._now.set()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            if not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.LINGER_S)
            self._wake.clear()
            self._now.clear()
            while self._pending:
                ids = list(itertools.islice(self._pending, self.BATCH_MAX))
                batch = [self._pending.pop(i) for i in ids]
                for (_values, waiters), error in zip(
                    batch, await self._write_resilient([v for v, _ in batch]), strict=True
                ):
                    for w in waiters:
                        if w.done():
                            continue
                        if error is None:
                            w.set_result(None)
                        else:
                            w.set_exception(error)

    async def _write_resilient(self, rows: list[dict[str, Any]]) -> list[Exception | None]:
        """Write a batch; on failure try again once (a database blip), then row by
        row, so one bad row (say, an over-long caller name) costs only its own record."""
        for attempt in (1, 2):
            try:
                await self._write(rows)
                return [None] * len(rows)
            except Exception as e:
                if len(rows) == 1 and attempt == 2:
                    log.exception("writing an interaction record failed; it is lost")
                    return [e]
                log.warning("writing %d interaction record(s) failed: %s", len(rows), e)
                if attempt == 1:
                    await asyncio.sleep(self.RETRY_AFTER_S)
        errors: list[Exception | None] = []
        for row in rows:  # more than one row here: a single row returned above
            errors += await self._write_resilient([row])
        return errors

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async with self._db.engine.begin() as conn:
            if self._upsert is None:
                self._upsert = _upsert_statement(conn.dialect.name)
            for start in range(0, len(rows), self.CHUNK_ROWS):
                if start:
                    await asyncio.sleep(0)  # let the calls' AGI commands through
                await conn.execute(self._upsert, rows[start : start + self.CHUNK_ROWS])
        self.batches += 1

    async def get(self, key: str) -> Interaction | None:
        """By interaction id or by call id (the newest for that call)."""
        cached = self._recent.get(key)
        if cached is not None:
            return snapshot(cached)
        await self.flush()  # read what this process saved
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

    async def by_link_token(self, token: str) -> Interaction | None:
        """The call that sent the link with this token (what a link's web page resolves)."""
        if not token:
            return None
        await self.flush()
        async with self._db.sessions() as s:
            row = await s.scalar(select(InteractionRow).where(InteractionRow.link_token == token))
            return _from_row(row) if row else None

    async def links_sent_to(
        self, to: str, since: datetime, *, up_to: Interaction | None = None
    ) -> int:
        """How many links went to the number ``to`` (digits) since ``since``, by every
        process that shares the database (what this one saved is written first).

        ``up_to``: only those sent before that call's link (by time, then id) and
        its own: the call's place among the number's links, so that of calls
        counting at the same moment the earliest get through.
        """
        await self.flush()
        t = InteractionRow
        q = select(func.count()).select_from(t).where(t.link_to == to, t.link_sent_at >= since)
        if up_to is not None and up_to.link_sent_at is not None:
            at = up_to.link_sent_at
            q = q.where(or_(t.link_sent_at < at, and_(t.link_sent_at == at, t.id <= up_to.id)))
        async with self._db.sessions() as s:
            return int(await s.scalar(q) or 0)

    async def dispose(
        self, key: str, disposition: str, note: str, by: str, at: datetime | None = None
    ) -> Interaction | None:
        """Record an agent's disposition on a call's record (by interaction id, else
        the newest record of that call id); None when there is no such record.

        A second disposition replaces the first.  The caller validates the label
        and the note (``NOTE_MAX``).
        """
        await self.flush()  # the IVR's latest save first: this update must land on it
        async with self._db.sessions() as s, s.begin():
            row = await s.get(InteractionRow, key)
            if row is None:
                row = await s.scalar(
                    select(InteractionRow)
                    .where(InteractionRow.call_id == key)
                    .order_by(InteractionRow.started_at.desc())
                    .limit(1)
                )
            if row is None:
                return None
            row.disposition = disposition
            row.disposition_note = note or None
            row.disposed_by = by
            row.disposed_at = at or utcnow()
            done = _from_row(row)
        for cached_key in (done.id, done.call_id):
            cached = self._recent.get(cached_key)
            if cached is not None and cached.id == done.id:
                for name in _DISPOSITION:
                    setattr(cached, name, getattr(done, name))
        return done

    async def history(
        self,
        *,
        customer_id: int | None,
        caller: str | None,
        limit: int = 5,
        exclude: Collection[str] = (),
    ) -> list[Interaction]:
        """A customer's or a number's latest records, newest first, at most ``limit``,
        without those whose id or call id is in ``exclude`` (the call being popped).

        Two bounded range scans (``ix_interactions_customer_started``,
        ``ix_interactions_caller_started``) merged here, rather than one ``OR``
        a planner may not run on the indexes.
        """
        await self.flush()
        t = InteractionRow
        fetch = limit + len(exclude)
        wheres = []
        if customer_id is not None:
            wheres.append(t.customer_id == customer_id)
        if caller:
            wheres.append(t.caller_number == caller)
        found: dict[str, Interaction] = {}
        async with self._db.sessions() as s:
            for where in wheres:
                q = select(t).where(where).order_by(t.started_at.desc()).limit(fetch)
                for row in await s.scalars(q):
                    found.setdefault(row.id, _from_row(row))
        rows = [i for i in found.values() if i.id not in exclude and i.call_id not in exclude]
        rows.sort(key=lambda i: (i.started_at, i.id), reverse=True)
        return rows[:limit]

    async def recent(self, limit: int = 20, caller: str | None = None) -> list[Interaction]:
        await self.flush()
        async with self._db.sessions() as s:
            q = select(InteractionRow).order_by(InteractionRow.started_at.desc()).limit(limit)
            if caller is not None:
                q = q.where(InteractionRow.caller_number == caller)
            return [_from_row(r) for r in await s.scalars(q)]
