"""The MQTT payloads agent desktops receive: their types and how they are built.

The wire contract is the JSON Schemas in ``cti/schemas/`` (docs/mqtt.md); the
TypedDicts here are the same contract for mypy, and tests/unit/test_payloads.py
keeps the two in step.  The builders are pure: the service does the look-ups
and passes the time in.

Every payload starts with ``schema_version``.  :meth:`cti.mqtt.MqttPublisher.publish`
puts it first too, so the key is sent once, first, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, TypedDict

from cti.state import (
    Agent,
    AgentStateName,
    CallEvent,
    CallEventDetail,
    CallEventKind,
    QueueStats,
    ScreenPop,
)
from hotline.records.customers import Customer
from hotline.records.interactions import Interaction, Outcome, SelfService, Transcript

# The payloads' version: cti.mqtt.SCHEMA_VERSION, the schemas' "schema_version" const.
SchemaVersion = Literal[1]
SCHEMA_VERSION: SchemaVersion = 1

# A screen pop lists at most this many of the caller's earlier calls.
RECENT_INTERACTIONS = 3


def timestamp(t: float) -> str:
    """A payload time: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


# -- screen pop: hotline/agents/{agent}/screenpop --------------------------------------


class LastBill(TypedDict):
    date: str  # ISO date
    amount: float


class RecentInteraction(TypedDict):
    call_id: str
    started_at: str  # ISO 8601
    outcome: Outcome
    intent: str | None


class ScreenPopCustomer(TypedDict):
    """The caller's profile from the customer directory."""

    id: int
    name: str
    account: str
    language: str
    balance: float
    last_bill: LastBill | None
    bill_due_date: str | None  # ISO date
    open_ticket: str | None
    recent_interactions: list[RecentInteraction]  # newest first, at most three


class ScreenPopIvr(TypedDict):
    """What the caller did in the IVR before the queue."""

    interaction_id: str
    path: list[str]  # node ids, in order
    intent: str | None
    inputs: dict[str, str]  # node or variable -> value (sensitive ones masked)
    transcripts: list[Transcript]
    language: str
    self_service: list[SelfService]
    outcome: Outcome


class ScreenPopPayload(TypedDict):
    schema_version: SchemaVersion
    type: Literal["screenpop"]
    call_id: str  # Asterisk linkedid
    agent: str
    queue: str
    caller_number: str
    caller_name: str
    customer: ScreenPopCustomer | None  # None: caller unknown, or the look-up failed
    ivr: ScreenPopIvr | None  # None: no IVR record, or the look-up failed
    wait_seconds: float
    callback: bool
    ts: str


def recent_interactions(call_id: str, recent: Sequence[Interaction]) -> list[RecentInteraction]:
    """The caller's earlier calls (``recent``, newest first), without this one."""
    earlier: list[RecentInteraction] = [
        {
            "call_id": i.call_id,
            "started_at": i.started_at.isoformat(),
            "outcome": i.outcome,
            "intent": i.intent,
        }
        for i in recent
        if i.call_id != call_id
    ]
    return earlier[:RECENT_INTERACTIONS]


def customer_part(
    customer: Customer, call_id: str, recent: Sequence[Interaction]
) -> ScreenPopCustomer:
    return {
        "id": customer.id,
        "name": customer.name,
        "account": customer.account,
        "language": customer.language,
        "balance": customer.balance_cents / 100,
        "last_bill": None
        if customer.last_bill_date is None
        else {
            "date": customer.last_bill_date.isoformat(),
            "amount": (customer.last_bill_cents or 0) / 100,
        },
        "bill_due_date": customer.bill_due_date.isoformat() if customer.bill_due_date else None,
        "open_ticket": customer.open_ticket,
        "recent_interactions": recent_interactions(call_id, recent),
    }


def ivr_part(interaction: Interaction) -> ScreenPopIvr:
    return {
        "interaction_id": interaction.id,
        "path": interaction.path,
        "intent": interaction.intent,
        "inputs": interaction.inputs,
        "transcripts": interaction.transcripts,
        "language": interaction.language,
        "self_service": interaction.self_service,
        "outcome": interaction.outcome,
    }


def screen_pop_payload(
    pop: ScreenPop,
    interaction: Interaction | None,
    customer: Customer | None,
    recent: Sequence[Interaction],
    now: float,
) -> ScreenPopPayload:
    """Who is calling and everything they did in the IVR.

    ``recent`` is the caller's latest interactions, newest first (this call's
    own record among them is left out); only read when ``customer`` is given.
    """
    call = pop.call
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "screenpop",
        "call_id": call.call_id,
        "agent": pop.agent,
        "queue": pop.queue,
        "caller_number": call.caller_number,
        "caller_name": call.caller_name,
        "customer": None if customer is None else customer_part(customer, call.call_id, recent),
        "ivr": None if interaction is None else ivr_part(interaction),
        "wait_seconds": pop.wait_s,
        "callback": call.callback,
        "ts": timestamp(now),
    }


# -- agent state: hotline/agents/{agent}/state (retained) ------------------------------


class AgentStatePayload(TypedDict):
    schema_version: SchemaVersion
    type: Literal["agent_state"]
    agent: str
    state: AgentStateName
    since: str  # when the state began
    call_id: str | None  # set while ringing, busy or on hold
    queues: list[str]  # sorted


def agent_state_payload(agent: Agent) -> AgentStatePayload:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "agent_state",
        "agent": agent.number,
        "state": agent.shown_state,
        "since": timestamp(agent.since),
        "call_id": agent.call_id,
        "queues": sorted(agent.queues),
    }


# -- queue statistics: hotline/queues/{queue}/stats (retained) -------------------------


class QueueStatsPayload(QueueStats):
    """:class:`cti.state.QueueStats` with the envelope; on the wire the figures
    come between ``type`` and ``ts``."""

    schema_version: SchemaVersion
    type: Literal["queue_stats"]
    ts: str


def queue_stats_payload(stats: QueueStats, now: float) -> QueueStatsPayload:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "queue_stats",
        **stats,
        "ts": timestamp(now),
    }


# -- call events: hotline/calls/{call_id}/events ---------------------------------------


class CallEventPayload(CallEventDetail):
    """The envelope; the :class:`cti.state.CallEventDetail` keys of the event follow ``ts``."""

    schema_version: SchemaVersion
    type: Literal["call_event"]
    call_id: str
    event: CallEventKind
    ts: str


def call_event_payload(event: CallEvent, now: float) -> CallEventPayload:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "call_event",
        "call_id": event.call_id,
        "event": event.kind,
        "ts": timestamp(now),
        **event.detail,
    }
