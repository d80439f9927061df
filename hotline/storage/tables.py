"""Database tables (SQLAlchemy 2).  Storage only: domain code sees dataclasses."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python.

    SQLite keeps no zone (it hands back naive datetimes) and PostgreSQL hands
    back the session's zone; reading through this type, every row on either
    database has the same, comparable UTC value.  Naive values written are
    taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return self.process_bind_param(value, dialect)


class CustomerRow(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    account: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    balance_cents: Mapped[int] = mapped_column(Integer, default=0)
    last_bill_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    last_bill_cents: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bill_due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    open_ticket: Mapped[str | None] = mapped_column(String(500), nullable=True)
    # What a caller proves who they are with (a flow's ``verify`` step, migration
    # 0007): the PIN only as a salted scrypt hash (hotline.records.customers).
    pin_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    # What an agent should know at a glance, comma-separated names (vip,churn_risk;
    # migration 0009): text, so the call path's point reads can read it.
    flags: Mapped[str | None] = mapped_column(String(200), nullable=True)


class InteractionRow(Base):
    """One call's trip through the IVR, keyed by Asterisk's linkedid (call_id)."""

    __tablename__ = "interactions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str] = mapped_column(String(128), default="")
    flow: Mapped[str] = mapped_column(String(64))
    caller_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    caller_name: Mapped[str] = mapped_column(String(128), default="")
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), nullable=True
    )
    language: Mapped[str] = mapped_column(String(8), default="en")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="in_progress")
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    transcripts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    self_service: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The link this call sent by text message (migration 0007): its unguessable
    # token, the digits it went to and when; a number's links in a window are
    # counted from these.
    link_token: Mapped[str | None] = mapped_column(
        String(32), nullable=True, unique=True, index=True
    )
    link_to: Mapped[str | None] = mapped_column(String(32), nullable=True)
    link_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # What the agent who took the call recorded at wrap-up (migration 0009).
    disposition: Mapped[str | None] = mapped_column(String(64), nullable=True)
    disposition_note: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    disposed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    disposed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        Index("ix_interactions_outcome_started", "outcome", "started_at"),
        Index("ix_interactions_link_to_sent", "link_to", "link_sent_at"),
        # A screen pop's history: a customer's or a number's latest calls.
        Index("ix_interactions_customer_started", "customer_id", "started_at"),
        Index("ix_interactions_caller_started", "caller_number", "started_at"),
    )


class RecordingRow(Base):
    """A stored, verified recording.  A row exists only once its file is in place."""

    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(255), unique=True)  # spool file name
    path: Mapped[str] = mapped_column(String(255))  # relative to the store
    caller: Mapped[str] = mapped_column(String(64), default="", index=True)
    agent: Mapped[str] = mapped_column(String(64), default="", index=True)
    queue: Mapped[str] = mapped_column(String(64), default="", index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    format: Mapped[str] = mapped_column(String(16), default="wav")
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    paused: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    retention_until: Mapped[date] = mapped_column(Date, index=True)
    legal_hold: Mapped[bool] = mapped_column(default=False)
    hold_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The callback this recording belongs to ("" for a queue call).
    callback_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    # The file on disk is encrypted (hotline.recordings.crypt); ``size`` is the
    # audio's length, ``sha256`` the hash of the file as it is on disk.
    encrypted: Mapped[bool] = mapped_column(default=False)
    # The audio's hash when the file is encrypted (None: ``sha256`` is the audio's).
    audio_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # HMAC over the metadata and the file hash (hotline.records.seal); None on
    # rows stored before sealing was introduced (migration 0008).
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seal: Mapped[str | None] = mapped_column(String(128), nullable=True)

    # Officers search by agent or queue over a date range (bench/recordings_bench.py).
    __table_args__ = (
        Index("ix_recordings_agent_started", "agent", "started_at"),
        Index("ix_recordings_queue_started", "queue", "started_at"),
    )


class AuditRow(Base):
    """The tamper-evident log: each entry carries the hash of the one before.

    ``seal`` is an HMAC of ``hash`` with the key ``key_id`` names, a key kept
    outside the database (hotline.records.seal); both are NULL on entries
    written before sealing was introduced (revision 0006).
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seal: Mapped[str | None] = mapped_column(String(128), nullable=True)


class UserRow(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # The agent (queue member PJSIP/agentN) a user of role agent works as (migration 0010).
    agent: Mapped[str | None] = mapped_column(String(32), nullable=True)


# A callback still to be completed (hotline.deflection.callbacks.OPEN), as SQL.
_OPEN_CALLBACK = "status IN ('pending', 'dialing')"


class CallbackRow(Base):
    """A caller who chose to be called back: their place in a queue, kept."""

    __tablename__ = "callbacks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(32), index=True)
    call_id: Mapped[str] = mapped_column(String(64))  # the call that asked for it
    interaction_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    # The place in line: when the caller would have joined the queue.
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    agent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_result: Mapped[str | None] = mapped_column(String(64), nullable=True)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_callbacks_status_queue", "status", "queue", "requested_at"),
        # One open callback per number (migration 0005): the database settles two
        # calls from one number booking at the same moment.
        Index(
            "uq_callbacks_open_number",
            "number",
            unique=True,
            sqlite_where=text(_OPEN_CALLBACK),
            postgresql_where=text(_OPEN_CALLBACK),
        ),
    )
