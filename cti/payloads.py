"""The MQTT payloads agent desktops receive: their types and how they are built.

The wire contract is the JSON Schemas in ``cti/schemas/`` (docs/mqtt.md); the
TypedDicts here are the same contract for mypy, and tests/unit/test_payloads.py
keeps the two in step.  The builders are pure: the service does the look-ups
and passes the time in.

Every payload starts with ``schema_version``.  :meth:`cti.mqtt.MqttPublisher.publish`
puts it first too, so the key is sent once, first, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal, TypedDict

from cti.state import (
    Agent,
    AgentPhase,
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
# ...and at most this many entries of their history across channels.
HISTORY_ENTRIES = 5
# The opener is one line of at most this many characters.
OPENER_MAX = 240


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
    flags: list[str]  # vip, churn_risk, ... from the directory


class TimelineStep(TypedDict):
    """One step of the caller's IVR journey, as the agent reads it."""

    node: str
    type: str  # menu, collect, verify, action, deflect, ...
    at_s: float  # since the call entered the flow
    duration_s: float | None  # None: the record was saved while the step ran
    result: str | None  # how the step ended: an option key, ok, paid, verified, ...
    input: str | None  # what the caller pressed or entered here (sensitive ones masked)
    said: str | None  # what the recogniser heard here
    confidence: float | None  # of ``said``
    tries: list[str]  # failed tries: no_input, invalid:7, ...


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
    timeline: list[TimelineStep]  # every step, in order
    time_in_ivr_s: float | None  # from entering the flow to the hand-off


HistoryKind = Literal["call", "ivr", "callback", "link"]


class HistoryEntry(TypedDict):
    """One earlier contact of the customer or number, across channels."""

    kind: HistoryKind  # call: reached an agent queue; ivr: stayed in the IVR;
    # callback: booked one (outcome: its status); link: was sent a self-service link
    call_id: str
    at: str  # ISO 8601: when the call began
    outcome: str  # the IVR's outcome; a callback's status; link_sent
    intent: str | None
    queue: str | None
    disposition: str | None  # what the agent recorded (cti/desk.py)
    disposition_note: str | None
    disposed_by: str | None
    summary: str  # what was done in the IVR, one line ("" when nothing)


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
    callback_id: str | None  # the callback being dialled (callback pops)
    history: list[HistoryEntry]  # newest first, at most five, this call left out
    opener: str | None  # one line from what the IVR learned (None: it learned nothing)


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
        "flags": list(customer.flags),
    }


def timeline(interaction: Interaction) -> list[TimelineStep]:
    """The steps with what the caller pressed or said at each (inputs are masked
    by the IVR as it records them; a collect step's input is under its variable
    in ``inputs``, not here)."""
    heard: dict[str, Transcript] = {}
    for t in interaction.transcripts:
        heard[t["node"]] = t  # the last one a node heard
    out: list[TimelineStep] = []
    for step in interaction.steps:
        node = step["node"]
        transcript = heard.get(node)
        said = transcript["text"] if transcript else None
        if said is None and step.get("heard"):
            said = step["heard"][-1]
        out.append(
            {
                "node": node,
                "type": step["type"],
                "at_s": round(step["at_ms"] / 1000, 1),
                "duration_s": round(step["ms"] / 1000, 1) if "ms" in step else None,
                "result": step.get("result"),
                "input": interaction.inputs.get(node),
                "said": said,
                "confidence": round(transcript["confidence"], 2) if transcript else None,
                "tries": list(step.get("tries", [])),
            }
        )
    return out


def time_in_ivr(interaction: Interaction) -> float | None:
    if interaction.ended_at is not None:
        return round(max(0.0, (interaction.ended_at - interaction.started_at).total_seconds()), 1)
    if interaction.steps:
        last = interaction.steps[-1]
        return round((last["at_ms"] + last.get("ms", 0)) / 1000, 1)
    return None


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
        "timeline": timeline(interaction),
        "time_in_ivr_s": time_in_ivr(interaction),
    }


def screen_pop_payload(
    pop: ScreenPop,
    interaction: Interaction | None,
    customer: Customer | None,
    recent: Sequence[Interaction],
    now: float,
    *,
    callbacks: Mapping[str, str] | None = None,
) -> ScreenPopPayload:
    """Who is calling and everything they did in the IVR.

    ``recent`` is the customer's or number's latest interactions, newest first
    (this call's own record among them is left out): the ``history``, and the
    customer's ``recent_interactions``.  ``callbacks``: the status of each
    callback those records booked, by callback id.
    """
    call = pop.call
    language = opener_language(interaction, customer)
    earlier = [i for i in recent if i.id != (interaction.id if interaction else None)]
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
        "callback_id": call.callback_id,
        "history": history_entries(call.call_id, earlier, callbacks or {}, language),
        "opener": opener(interaction, customer, now, callback=call.callback),
    }


# -- history and opener: what the agent reads first ------------------------------------

# The site's currency as the IVR says it (dialplans/hotline.yaml: "dollars").
_CURRENCY = {"en": "{} dollars", "ko": "{}달러"}
_METHOD = {
    "en": {"pin": "PIN", "birth_date": "date of birth", "account": "account number"},
    "ko": {"pin": "비밀번호", "birth_date": "생년월일", "account": "계좌번호"},
}
_PHRASES = {
    "en": {
        "bill": "calling about the bill",
        "bill_due": "calling about the bill of {amount} due {when}",
        "bill_overdue": "calling about the bill of {amount}, overdue since {day}",
        "support": "calling for technical support",
        "support_ticket": "calling for technical support (open: {ticket})",
        "agent": "asked for an agent",
        "other": "calling about {intent}",
        "today": "today",
        "tomorrow": "tomorrow",
        "on": "on {day}",
        "paid": "paid {amount} by card in the IVR",
        "paid_at": "paid {amount} by card in the IVR at {time}",
        "declined": "a card payment was declined in the IVR",
        "balance": "heard the balance in the IVR",
        "callback_booked": "booked a callback",
        "callback_of": "callback booked at {time}",
        "link_sent": "was sent a self-service link",
        "verified": "verified by {method}",
        "not_verified": "not verified ({method} failed)",
    },
    "ko": {
        "bill": "요금 문의",
        "bill_due": "요금 문의 ({amount}, {when} 납부 기한)",
        "bill_overdue": "요금 문의 ({amount}, {day} 납부 기한 지남)",
        "support": "기술 지원 문의",
        "support_ticket": "기술 지원 문의 (진행 중: {ticket})",
        "agent": "상담원 연결 요청",
        "other": "{intent} 문의",
        "today": "오늘",
        "tomorrow": "내일",
        "on": "{day}",
        "paid": "IVR에서 카드로 {amount} 납부 완료",
        "paid_at": "{time}에 IVR에서 카드로 {amount} 납부 완료",
        "declined": "IVR 카드 결제 거절됨",
        "balance": "IVR에서 잔액 확인",
        "callback_booked": "콜백 예약",
        "callback_of": "{time}에 예약한 콜백",
        "link_sent": "셀프서비스 링크 받음",
        "verified": "{method} 인증 완료",
        "not_verified": "{method} 인증 실패",
    },
}
_BILLING_INTENTS = ("billing", "pay_bill", "balance")


def opener_language(interaction: Interaction | None, customer: Customer | None) -> str:
    """The caller's language, if the opener speaks it (en, ko), else en."""
    language = interaction.language if interaction else customer.language if customer else "en"
    return language if language in _PHRASES else "en"


def _amount(value: float, language: str) -> str:
    text = f"{value:.0f}" if round(value, 2) == round(value) else f"{value:.2f}"
    return _CURRENCY[language].format(text)


def _day(d: date, language: str) -> str:
    return f"{d.month}월 {d.day}일" if language == "ko" else f"{d.day} {d:%b}"


def _clock(interaction: Interaction, at_ms: int) -> str:
    """Local wall-clock time of a moment in the call (HH:MM)."""
    return (interaction.started_at + timedelta(milliseconds=at_ms)).astimezone().strftime("%H:%M")


def _topic(
    interaction: Interaction, customer: Customer | None, paid: bool, today: date, lang: str
) -> str | None:
    say = _PHRASES[lang]
    intent = interaction.intent
    if intent in _BILLING_INTENTS:
        if customer is not None and customer.has_bill_due and not paid:
            assert customer.bill_due_date is not None
            due, amount = customer.bill_due_date, _amount(customer.balance_cents / 100, lang)
            if due < today:
                return say["bill_overdue"].format(amount=amount, day=_day(due, lang))
            when = (
                say["today"]
                if due == today
                else say["tomorrow"]
                if due == today + timedelta(days=1)
                else say["on"].format(day=_day(due, lang))
            )
            return say["bill_due"].format(amount=amount, when=when)
        return say["bill"]
    if intent == "support":
        if customer is not None and customer.open_ticket:
            return say["support_ticket"].format(ticket=customer.open_ticket[:60])
        return say["support"]
    if intent == "agent":
        return say["agent"]
    if intent:
        return say["other"].format(intent=intent.replace("_", " "))
    return None


def done_in_ivr(interaction: Interaction, lang: str, *, with_time: bool = True) -> list[str]:
    """What the caller did in the IVR, phrase by phrase (self-service, verification)."""
    say = _PHRASES[lang]
    paid_step = next(
        (s for s in interaction.steps if s["type"] == "action" and s.get("result") == "paid"), None
    )
    out: list[str] = []
    for task in interaction.self_service:
        kind, outcome = task["task"], task["outcome"]
        if kind == "pay_bill" and outcome == "paid":
            amount = _amount(float(task.get("amount", 0.0)), lang)
            if with_time and paid_step is not None:
                at = _clock(interaction, paid_step["at_ms"] + paid_step.get("ms", 0))
                out.append(say["paid_at"].format(amount=amount, time=at))
            else:
                out.append(say["paid"].format(amount=amount))
        elif kind == "pay_bill" and outcome == "declined":
            out.append(say["declined"])
        elif kind == "balance" and outcome == "done":
            out.append(say["balance"])
        elif kind == "deflection" and outcome in ("callback_booked", "link_sent"):
            out.append(say[outcome])
        elif kind == "verify" and outcome in ("verified", "failed", "locked"):
            method = _METHOD[lang].get(str(task.get("method", "pin")), str(task.get("method")))
            key = "verified" if outcome == "verified" else "not_verified"
            out.append(say[key].format(method=method))
    # Each phrase once, in order (a caller can check the balance twice).
    return list(dict.fromkeys(out))


def opener(
    interaction: Interaction | None,
    customer: Customer | None,
    now: float,
    *,
    callback: bool = False,
) -> str | None:
    """One plain line for the agent from what the IVR learned: why the caller
    calls (intent, a bill due), what they did there (paid, when; verified), in
    the caller's language (en, ko).  None when the IVR learned nothing.

    "Calling about the bill of 42 dollars due today; verified by PIN."
    """
    if interaction is None:
        return None
    lang = opener_language(interaction, customer)
    done = done_in_ivr(interaction, lang)
    paid = any(t["task"] == "pay_bill" and t["outcome"] == "paid" for t in interaction.self_service)
    parts: list[str] = []
    if callback:
        parts.append(_PHRASES[lang]["callback_of"].format(time=_clock(interaction, 0)))
        done = [d for d in done if d != _PHRASES[lang]["callback_booked"]]
    topic = _topic(interaction, customer, paid, date.fromtimestamp(now), lang)
    if topic:
        parts.append(topic)
    parts += done
    if not parts:
        return None
    line = "; ".join(parts)
    line = line[0].upper() + line[1:] + "."
    line = " ".join(line.split())  # one line, whatever a ticket text held
    return line if len(line) <= OPENER_MAX else line[: OPENER_MAX - 1] + "…"


def _callback_of(interaction: Interaction) -> str | None:
    """The id of the callback this call booked, if it booked one."""
    for step in interaction.steps:
        if step.get("callback"):
            return step["callback"]
    return None


def history_entries(
    call_id: str, earlier: Sequence[Interaction], callbacks: Mapping[str, str], language: str
) -> list[HistoryEntry]:
    """Earlier contacts, newest first (``earlier`` is), this call left out."""
    out: list[HistoryEntry] = []
    for it in earlier:
        if it.call_id == call_id:
            continue
        callback = _callback_of(it)
        kind: HistoryKind
        booked = any(
            t["task"] == "deflection" and t["outcome"] == "callback_booked" for t in it.self_service
        )
        if callback is not None or booked:
            kind, outcome = "callback", callbacks.get(callback or "", "booked")
        elif it.link_sent_at is not None:
            kind, outcome = "link", "link_sent"
        elif it.outcome == "queued":
            kind, outcome = "call", it.outcome
        else:
            kind, outcome = "ivr", it.outcome
        out.append(
            {
                "kind": kind,
                "call_id": it.call_id,
                "at": it.started_at.isoformat(),
                "outcome": outcome,
                "intent": it.intent,
                "queue": it.queue,
                "disposition": it.disposition,
                "disposition_note": it.disposition_note,
                "disposed_by": it.disposed_by,
                "summary": "; ".join(done_in_ivr(it, language, with_time=False)),
            }
        )
    return out[:HISTORY_ENTRIES]


# -- agent state: hotline/agents/{agent}/state (retained) ------------------------------


class AgentStatePayload(TypedDict):
    schema_version: SchemaVersion
    type: Literal["agent_state"]
    agent: str
    state: AgentStateName
    since: str  # when the state began
    call_id: str | None  # set while ringing, busy or on hold
    queues: list[str]  # sorted
    phase: AgentPhase  # as the phone reads: ringing, talking, wrapup, ready, paused, offline
    pause_reason: str | None  # why Asterisk has the agent paused (None: not paused)
    wrapup_until: float | None  # epoch seconds the desk's wrap-up ends (None: not in one)


def agent_state_payload(agent: Agent) -> AgentStatePayload:
    return {
        "schema_version": SCHEMA_VERSION,
        "type": "agent_state",
        "agent": agent.number,
        "state": agent.shown_state,
        "since": timestamp(agent.since),
        "call_id": agent.call_id,
        "queues": sorted(agent.queues),
        "phase": agent.phase,
        "pause_reason": agent.pause_reason if agent.paused else None,
        "wrapup_until": None if agent.wrapup_until is None else round(agent.wrapup_until, 3),
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
