"""The MQTT payloads against their JSON Schemas (cti/schemas/, docs/mqtt.md).

Every builder in cti/payloads.py is fed realistic inputs and what the
publisher would send is validated against its schema; and the TypedDicts are
compared key by key with the schemas, so the typed contract and the published
one cannot drift apart.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol, get_args, get_type_hints

import pytest
from jsonschema import Draft202012Validator

import cti
from cti.ami import parse_message, split_messages
from cti.mqtt import SCHEMA_VERSION, MqttPublisher
from cti.payloads import (
    AgentStatePayload,
    CallEventPayload,
    LastBill,
    QueueStatsPayload,
    RecentInteraction,
    ScreenPopCustomer,
    ScreenPopIvr,
    ScreenPopPayload,
    agent_state_payload,
    call_event_payload,
    queue_stats_payload,
    screen_pop_payload,
)
from cti.state import (
    Agent,
    AgentStateName,
    Call,
    CallCenter,
    CallEvent,
    CallEventKind,
    ExpectedCallback,
    Output,
    ScreenPop,
)
from hotline.records.customers import Customer
from hotline.records.interactions import Interaction, Outcome, SelfService

SCHEMAS = Path(cti.__file__).resolve().parent / "schemas"
# Recorded from the sandbox (tests/tools/record_ami.py): two queue calls, one
# answered by agent 1001, one abandoned.
AMI_TRANSCRIPT = SCHEMAS.parents[1] / "tests" / "data" / "ami" / "queue_calls.ami"
# Midday: the queue counters reset at local midnight.
NOW = datetime(2026, 11, 22, 12, 42, 15, 836000, tzinfo=UTC).timestamp()

Json = dict[str, Any]


def schema(name: str) -> Json:
    loaded: Json = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def wire(payload: object) -> Json:
    """What the publisher sends for ``payload``, decoded."""
    publisher = MqttPublisher("127.0.0.1", 1)  # never started: nothing is sent
    assert isinstance(payload, dict)
    publisher.publish("hotline/test", payload)
    body = publisher._buffer[-1].payload
    # The payload carries its schema_version: the publisher adds nothing, moves nothing.
    assert body == json.dumps(payload, ensure_ascii=False, default=str).encode()
    sent: Json = json.loads(body)
    return sent


def assert_valid(payload: object, name: str) -> Json:
    sent = wire(payload)
    s = schema(name)
    Draft202012Validator.check_schema(s)
    validator = Draft202012Validator(s, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(sent)]
    assert not errors, errors
    # Without rfc3339-validator jsonschema skips "date-time": check the timestamps here.
    for key in ("ts", "since"):
        if key in sent:
            assert datetime.fromisoformat(sent[key]).utcoffset() is not None
    assert next(iter(sent)) == "schema_version"
    return sent


# -- inputs ----------------------------------------------------------------------------


def customer(**overrides: Any) -> Customer:
    fields: Json = {
        "id": 42,
        "name": "Ana Lima",
        "phone": "5550301",
        "account": "ACC-0042",
        "language": "en",
        "balance_cents": 12_345,
        "last_bill_date": date(2026, 11, 1),
        "last_bill_cents": 9_900,
        "bill_due_date": date(2026, 11, 30),
        "open_ticket": "T-981",
    }
    fields.update(overrides)
    return Customer(**fields)


def journey(call_id: str = "1795390931.9") -> Interaction:
    """A caller who was identified, paid a bill, asked by voice and was queued."""
    it = Interaction(
        id="fc56b3acbefb417191a5b31c6a952d3f",
        call_id=call_id,
        flow="demo",
        caller_number="5550301",
        caller_name="Ana Lima",
        channel="PJSIP/caller-00000001",
        customer_id=42,
        started_at=datetime(2026, 11, 22, 23, 41, 2, tzinfo=UTC),
        outcome="queued",
        queue="billing",
        intent="billing",
    )
    it.steps += [
        {"node": "identify", "type": "lookup", "at_ms": 3, "ms": 12, "result": "found"},
        {"node": "main_menu", "type": "menu", "at_ms": 15, "ms": 4100, "result": "1"},
        {"node": "card", "type": "collect", "at_ms": 4115, "ms": 9000, "result": "ok", "tries": []},
        {"node": "pay", "type": "action", "at_ms": 13115, "ms": 800, "result": "paid"},
        {
            "node": "billing_menu",
            "type": "menu",
            "at_ms": 13915,
            "ms": 6000,
            "result": "0",
            "tries": ["no_match:uh"],
            "heard": ["uh", "agent please"],
        },
        {
            "node": "offer",
            "type": "deflect",
            "at_ms": 19915,
            "ms": 3000,
            "result": "keep_waiting",
            "estimate_s": 240,
            "estimate_method": "erlang_c",
        },
    ]
    it.inputs.update({"main_menu": "1", "card": "************1111", "billing_menu": "0"})
    it.transcripts += [
        {
            "node": "billing_menu",
            "text": "agent please",
            "confidence": 0.91,
            "language": "en",
            "option": "0",
            "mode": "stream",
            "barged_in": True,
        },
        {"node": "reason", "text": "my bill", "confidence": 0.7, "language": "en", "option": None},
    ]
    paid: SelfService = {"task": "pay_bill", "outcome": "paid", "amount": 123.45, "card": "**11"}
    it.self_service += [
        {"task": "balance", "outcome": "done"},
        paid,
        {"task": "deflection", "queue": "billing", "outcome": "offered"},
        {"task": "deflection", "queue": "billing", "outcome": "declined"},
    ]
    return it


def earlier_calls(this_call: str) -> list[Interaction]:
    """The caller's latest records, newest first: this call's own among them."""
    out = [journey(this_call)]
    earlier: tuple[Outcome, ...] = ("self_served", "abandoned", "deflected", "queued")
    for n, outcome in enumerate(earlier, 1):
        it = Interaction(
            id=f"earlier{n}",
            call_id=f"17953900{n}.1",
            flow="demo",
            started_at=datetime(2026, 11, 22 - n, 10, 0, tzinfo=UTC),
            outcome=outcome,
            intent=None if n % 2 else "billing",
        )
        out.append(it)
    return out


def pop(callback: bool = False, caller_name: str = "Ana Lima") -> ScreenPop:
    call = Call(
        "1795390931.9",
        caller_number="5550301",
        caller_name=caller_name,
        started=NOW - 30,
        queue="billing",
        callback=callback,
    )
    return ScreenPop("1001", call, "billing", 12.5)


# -- screen pops -----------------------------------------------------------------------


def test_screen_pop_with_customer_and_ivr_journey() -> None:
    p = pop()
    payload = screen_pop_payload(p, journey(), customer(), earlier_calls(p.call.call_id), NOW)
    sent = assert_valid(payload, "screenpop")
    assert sent["customer"]["balance"] == 123.45
    assert sent["customer"]["last_bill"] == {"date": "2026-11-01", "amount": 99.0}
    recent = sent["customer"]["recent_interactions"]
    assert [r["call_id"] for r in recent] == ["179539001.1", "179539002.1", "179539003.1"]
    assert sent["ivr"]["path"] == ["identify", "main_menu", "card", "pay", "billing_menu", "offer"]
    assert sent["ivr"]["inputs"]["card"] == "************1111"
    assert sent["ts"] == "2026-11-22T12:42:15.836+00:00"


def test_screen_pop_without_customer_or_ivr() -> None:
    """Unknown caller and no IVR record (or the database failed): caller and queue only."""
    sent = assert_valid(screen_pop_payload(pop(caller_name=""), None, None, [], NOW), "screenpop")
    assert sent["customer"] is None and sent["ivr"] is None
    assert sent["caller_number"] == "5550301" and sent["queue"] == "billing"


def test_screen_pop_customer_without_bill_or_history_for_a_callback() -> None:
    bare = customer(last_bill_date=None, last_bill_cents=None, bill_due_date=None, open_ticket=None)
    payload = screen_pop_payload(pop(callback=True), None, bare, [], NOW)
    sent = assert_valid(payload, "screenpop")
    assert sent["callback"] is True
    assert sent["customer"]["last_bill"] is None
    assert sent["customer"]["recent_interactions"] == []


def test_screen_pop_ivr_record_in_progress_without_customer() -> None:
    it = Interaction(id="abc", call_id="1795390931.9", flow="demo")
    it.steps.append({"node": "greet", "type": "say", "at_ms": 0})  # saved mid-node: no "ms"
    sent = assert_valid(screen_pop_payload(pop(), it, None, [], NOW), "screenpop")
    assert sent["ivr"]["outcome"] == "in_progress" and sent["ivr"]["path"] == ["greet"]


# -- agent states ----------------------------------------------------------------------


@pytest.mark.parametrize("shown", get_args(AgentStateName))
def test_agent_in_each_state(shown: AgentStateName) -> None:
    agent = Agent("1001", since=NOW - 5, queues={"support", "billing"})
    if shown == "paused":
        agent.state, agent.paused = "available", True
    else:
        agent.state = shown
    if shown in ("ringing", "busy", "on_hold"):
        agent.call_id = "1795390931.9"
    sent = assert_valid(agent_state_payload(agent), "agent_state")
    assert sent["state"] == shown
    assert sent["queues"] == ["billing", "support"]
    assert sent["since"] == "2026-11-22T12:42:10.836+00:00"


# -- queue statistics and call events from recorded AMI --------------------------------


def recorded_events() -> list[Json]:
    messages, rest = split_messages(AMI_TRANSCRIPT.read_bytes())
    assert rest.strip() == b""
    return [e for e in (parse_message(m) for m in messages) if e is not None]


def replay(center: CallCenter) -> list[Output]:
    out: list[Output] = []
    for i, ev in enumerate(recorded_events()):
        out += center.apply(ev, now=NOW + i)
    return out


def test_queue_stats_with_callbacks_waiting() -> None:
    center = CallCenter()
    replay(center)
    for what in ("offered", "declined", "offered", "callback_booked", "callback_booked"):
        center.count_deflection("billing", what, now=NOW)
    stats = center.queue_stats("billing", now=NOW + 2000)
    sent = assert_valid(queue_stats_payload(stats, NOW + 2000), "queue_stats")
    assert sent["callbacks_waiting"] == 2
    assert sent["deflection"] == {"offered": 2, "declined": 1, "callback_booked": 2}
    assert sent["answered_today"] == 1
    # The figures sit between the envelope's "type" and "ts", in cti.state's order.
    assert list(sent) == ["schema_version", "type", *stats, "ts"]


def test_queue_stats_of_an_unknown_queue_and_with_agents() -> None:
    center = CallCenter()
    empty = center.queue_stats("sales", now=NOW)
    sent = assert_valid(queue_stats_payload(empty, NOW), "queue_stats")
    assert sent["est_wait_s"] is None and sent["service_level_pct"] is None
    center.queue("sales").members.update({"2001", "2002"})
    center.agent("2001").state = "available"
    center.agent("2002").state = "busy"
    center.queue("sales").callbacks_waiting = 3
    staffed = queue_stats_payload(center.queue_stats("sales", now=NOW), NOW)
    sent = assert_valid(staffed, "queue_stats")
    assert sent["agents_available"] == 1 and sent["agents_busy"] == 1
    assert sent["est_wait_s"] is not None


def callback_and_transfer_events(center: CallCenter) -> list[Output]:
    center.expected_callbacks["cb-chan.1"] = ExpectedCallback(
        id="cb17",
        agent="1002",
        queue="billing",
        number="5550301",
        interaction_id="abc",
        waited_s=61,
    )
    return [
        *center.apply(
            {
                "Event": "Newchannel",
                "Channel": "PJSIP/agent1002-00000009",
                "Uniqueid": "cb-chan.1",
                "Linkedid": "cb-chan.1",
                "Context": "hotline-callbacks",
            },
            now=NOW,
        ),
        *center.apply(
            {"Event": "BlindTransfer", "TransfereeLinkedid": "1795390931.9", "Extension": "2001"},
            now=NOW,
        ),
        *center.apply(
            {"Event": "AttendedTransfer", "OrigTransfererLinkedid": "1795390931.9"}, now=NOW
        ),
    ]


def test_every_kind_of_call_event() -> None:
    center = CallCenter()
    out = replay(center) + callback_and_transfer_events(center)
    events = [o for o in out if isinstance(o, CallEvent)]
    assert {e.kind for e in events} == set(get_args(CallEventKind))
    for e in events:
        sent = assert_valid(call_event_payload(e, NOW), "call_event")
        assert sent["event"] == e.kind
        assert list(sent) == ["schema_version", "type", "call_id", "event", "ts", *e.detail]


def test_callback_ringing_pop_validates() -> None:
    center = CallCenter()
    pops = [o for o in callback_and_transfer_events(center) if isinstance(o, ScreenPop)]
    assert len(pops) == 1
    sent = assert_valid(screen_pop_payload(pops[0], None, None, [], NOW), "screenpop")
    assert sent["callback"] is True and sent["wait_seconds"] == 61


# -- the types and the schemas describe the same thing ---------------------------------


def object_branch(s: Json) -> Json:
    """The object alternative of a ``oneOf: [null, object]`` property, else ``s``."""
    for branch in s.get("oneOf", [s]):
        if branch.get("type") == "object":
            found: Json = branch
            return found
    raise AssertionError(f"no object schema in {s}")


class TypedDictClass(Protocol):
    """A TypedDict class, as far as these checks use one."""

    __required_keys__: frozenset[str]


def parts() -> list[tuple[str, TypedDictClass, Json]]:
    pop_s = schema("screenpop")
    customer_s = object_branch(pop_s["properties"]["customer"])
    ivr_s = object_branch(pop_s["properties"]["ivr"])
    return [
        ("screenpop", ScreenPopPayload, pop_s),
        ("screenpop.customer", ScreenPopCustomer, customer_s),
        (
            "screenpop.customer.last_bill",
            LastBill,
            object_branch(customer_s["properties"]["last_bill"]),
        ),
        (
            "screenpop.customer.recent_interactions[]",
            RecentInteraction,
            customer_s["properties"]["recent_interactions"]["items"],
        ),
        ("screenpop.ivr", ScreenPopIvr, ivr_s),
        ("screenpop.ivr.self_service[]", SelfService, ivr_s["properties"]["self_service"]["items"]),
        ("agent_state", AgentStatePayload, schema("agent_state")),
        ("queue_stats", QueueStatsPayload, schema("queue_stats")),
        ("call_event", CallEventPayload, schema("call_event")),
    ]


@pytest.mark.parametrize(("where", "typed", "s"), parts(), ids=[p[0] for p in parts()])
def test_typed_dict_matches_schema(where: str, typed: TypedDictClass, s: Json) -> None:
    keys = set(get_type_hints(typed))
    required_keys = typed.__required_keys__
    required = set(s.get("required", []))
    assert required <= required_keys, (
        f"{where}: required by the schema, optional or absent in the type"
    )
    if "properties" in s:
        properties = set(s["properties"])
        assert keys <= properties, f"{where}: typed but not in the schema: {keys - properties}"
        if s.get("additionalProperties") is False:
            assert properties <= keys, f"{where}: in the schema but not typed: {properties - keys}"


def test_schema_version_is_the_publishers() -> None:
    for name in ("screenpop", "agent_state", "queue_stats", "call_event"):
        assert schema(name)["properties"]["schema_version"]["const"] == SCHEMA_VERSION
