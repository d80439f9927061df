"""The agent desk's decisions, pure: validation, the wrap-up clock and when a
wrap-up starts or ends, the phase an agent is shown in (from AMI events), and
what the screen pop now carries (opener, IVR timeline, history, flags).

The desk against an AMI peer, a database and the CLI: tests/integration/test_agent_desk.py.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from jsonschema import Draft202012Validator

import cti
from cti.desk import (
    InvalidDisposition,
    InvalidReason,
    InvalidRequest,
    NotInWrapup,
    UnknownAgent,
    WrapupClock,
    check_agent,
    check_disposition,
    check_note,
    check_pause_reason,
    ready_when_due,
    wrapup_after_call,
    wrapup_seconds,
)
from cti.payloads import (
    HistoryEntry,
    TimelineStep,
    agent_state_payload,
    opener,
    screen_pop_payload,
)
from cti.state import (
    Agent,
    AgentCallDone,
    AgentChanged,
    Call,
    CallCenter,
    ExpectedCallback,
    ScreenPop,
)
from hotline.config import ConfigError, DeskConfig, load_config
from hotline.records.customers import Customer
from hotline.records.interactions import NOTE_MAX, Interaction, SelfService
from tests.support.paths import REPO

SCHEMAS = Path(cti.__file__).resolve().parent / "schemas"
REASONS = ["Break", "Lunch", "Training", "Back office"]
BILLING = ["Paid", "Payment plan", "Dispute", "Information", "Callback requested"]
NOW = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC).timestamp()


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return loaded


def valid(payload: object, name: str) -> None:
    validator = Draft202012Validator(schema(name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(payload)]
    assert not errors, errors


# -- validation -------------------------------------------------------------------------


def test_pause_reasons_are_the_configured_ones_and_wrap_up_is_not_one() -> None:
    assert check_pause_reason("lunch", REASONS) == "Lunch"  # stored as configured
    assert check_pause_reason(" Back office ", REASONS) == "Back office"
    for bad in (None, "", "  ", "Nap", "Wrap-up"):
        with pytest.raises(InvalidReason, match="Break, Lunch"):
            check_pause_reason(bad, REASONS)
    with pytest.raises(ValueError, match="automatic wrap-up"):
        DeskConfig(pause_reasons=["Break", "wrap-up"])


def test_dispositions_are_per_queue_and_the_note_is_bounded() -> None:
    assert check_disposition("payment PLAN", BILLING, "billing") == "Payment plan"
    with pytest.raises(InvalidDisposition, match="not a disposition of queue billing"):
        check_disposition("Resolved", BILLING, "billing")
    with pytest.raises(InvalidDisposition, match="no dispositions are configured for queue sales"):
        check_disposition("Paid", None, "sales")
    assert check_note("  paid the rest by card \n") == "paid the rest by card"
    assert check_note("x" * NOTE_MAX) == "x" * NOTE_MAX
    with pytest.raises(InvalidDisposition, match=f"at most {NOTE_MAX}"):
        check_note("x" * (NOTE_MAX + 1))
    with pytest.raises(InvalidDisposition, match="NUL"):
        check_note("a\x00b")  # PostgreSQL refuses it in text: refused here, named
    assert issubclass(InvalidDisposition, ValueError)  # a web route's 400


def test_agent_numbers_never_carry_anything_into_an_ami_header() -> None:
    assert check_agent("1001") == "1001"
    for bad in ("", "10 01", "1001\r\nAction: Originate", "a" * 33):
        with pytest.raises(UnknownAgent):
            check_agent(bad)


def test_the_desk_section_is_validated_and_the_demo_one_loads(tmp_path: Path) -> None:
    cfg = load_config(REPO / "hotline.toml", environ={}).desk
    assert cfg.dispositions["billing"] == BILLING
    assert cfg.memberships == {
        "1001": ["billing"],
        "1002": ["billing", "support"],
        "1003": ["support"],
    }
    per_queue = DeskConfig(wrapup_s=30, wrapup_s_by_queue={"billing": 60, "vip": 0})
    assert (per_queue.wrapup_for("billing"), per_queue.wrapup_for("sales")) == (60, 30)
    assert wrapup_seconds(per_queue, ["support", "billing"]) == 60
    assert DeskConfig().wrapup_s == 30  # the default a site gets without the key
    for text, message in [
        ("[desk]\nwrapup_s = -1\n", "desk.wrapup_s"),
        ("[desk]\ndispositions = { billing = [] }\n", "no dispositions"),
        ('[desk]\ndispositions = { billing = ["Paid", "paid"] }\n', "listed twice"),
        ('[desk]\npause_reasons = ["Lunch\\u0007"]\n', "no control characters"),
        ('[desk]\ninterface = "PJSIP/agent"\n', "{agent}"),
        ('[desk]\nmemberships = { "1001" = ["billing", "billing"] }\n', "each queue once"),
    ]:
        f = tmp_path / "hotline.toml"
        f.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(f, environ={})


# -- wrap-up: when it starts, how long, when it ends ---------------------------------------


def agent(**fields: Any) -> Agent:
    a = Agent("1001", state="available", queues={"billing"}, interface="PJSIP/agent1001")
    for k, v in fields.items():
        setattr(a, k, v)
    return a


def test_a_call_starts_a_wrap_up_unless_off_logged_out_or_paused_for_something_else() -> None:
    assert wrapup_after_call(agent(), 30)
    assert wrapup_after_call(agent(paused=True, pause_reason="Wrap-up"), 30)  # starts again
    assert not wrapup_after_call(agent(), 0)  # wrap-up off
    assert not wrapup_after_call(agent(queues=set(), state="offline"), 30)
    # Paused "Lunch" during the call: the lunch stands, no wrap-up over it.
    assert not wrapup_after_call(agent(paused=True, pause_reason="Lunch"), 30)
    assert not wrapup_after_call(None, 30)


def test_a_wrap_up_ends_in_ready_only_if_asterisk_still_has_the_agent_in_it() -> None:
    assert ready_when_due(agent(paused=True, pause_reason="Wrap-up"))
    assert ready_when_due(agent(paused=True, pause_reason="wrap-up"))  # typed in the CLI
    assert not ready_when_due(agent(paused=True, pause_reason="Lunch"))  # paused meanwhile
    assert not ready_when_due(agent())  # made ready already
    assert not ready_when_due(agent(paused=True, pause_reason="Wrap-up", queues=set()))
    assert not ready_when_due(None)


def test_the_wrap_up_clock_extends_within_its_cap() -> None:
    clock = WrapupClock(max_s=600)
    assert clock.start("1001", NOW, 30) == NOW + 30
    assert clock.extend("1001", NOW + 10, 60) == NOW + 90
    # Never more than max_s from now, however often it is extended.
    assert clock.extend("1001", NOW + 10, 600) == NOW + 610
    assert clock.start("1002", NOW, 5000) == NOW + 600
    # An overdue wrap-up (its end not yet sent) extends from now, not from the past.
    clock.set("1003", NOW - 50)
    assert clock.extend("1003", NOW, 30) == NOW + 30
    for bad in (0, -5, 601, float("nan")):
        with pytest.raises(InvalidRequest, match="extend by 1 to 600 seconds"):
            clock.extend("1001", NOW, bad)
    with pytest.raises(NotInWrapup):
        clock.extend("1004", NOW, 30)
    assert clock.stop("1001") == NOW + 610 and clock.ends("1001") is None


# -- the phase, from what Asterisk reports -----------------------------------------------


def member_event(kind: str, **fields: str) -> dict[str, Any]:
    return {
        "Event": kind,
        "Queue": "billing",
        "MemberName": "1001",
        "Interface": "PJSIP/agent1001",
        "StateInterface": "PJSIP/agent1001",
        "Membership": "static",
        "Status": "1",
        "Paused": "0",
        "PausedReason": "",
        **fields,
    }


def call_event(kind: str, **fields: str) -> dict[str, Any]:
    return {
        "Event": kind,
        "Queue": "billing",
        "MemberName": "1001",
        "Interface": "PJSIP/agent1001",
        "Channel": "PJSIP/callers-00000001",
        "Linkedid": "1796000000.1",
        "CallerIDNum": "5551234",
        **fields,
    }


def phases(center: CallCenter, events: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for i, ev in enumerate(events):
        for out in center.apply(ev, now=NOW + i):
            if isinstance(out, AgentChanged):
                seen.append(agent_state_payload(out.agent)["phase"])
    return seen


def test_the_phase_reads_like_the_phone_ringing_talking_wrapup_ready() -> None:
    center = CallCenter()
    center.expected_wrapups["1001"] = NOW + 40  # the desk is starting a 30 s wrap-up
    seen = phases(
        center,
        [
            member_event("QueueMemberStatus"),
            call_event("AgentCalled"),
            call_event("AgentConnect", HoldTime="3"),
            call_event("AgentComplete", TalkTime="60"),
            member_event("QueueMemberPause", Paused="1", PausedReason="Wrap-up"),
            member_event("QueueMemberPause", Paused="0"),
            member_event("QueueMemberPause", Paused="1", PausedReason="Lunch"),
            member_event("QueueMemberRemoved"),
        ],
    )
    assert seen == ["ready", "ringing", "talking", "ready", "wrapup", "ready", "paused", "offline"]


def test_the_state_payload_carries_the_reason_and_the_wrap_up_end() -> None:
    center = CallCenter()
    center.apply(member_event("QueueMemberStatus"), now=NOW)
    center.expected_wrapups["1001"] = NOW + 30
    center.apply(member_event("QueueMemberPause", Paused="1", PausedReason="Wrap-up"), now=NOW)
    sent = agent_state_payload(center.agents["1001"])
    valid(sent, "agent_state")
    assert (sent["state"], sent["phase"], sent["pause_reason"]) == ("paused", "wrapup", "Wrap-up")
    assert sent["wrapup_until"] == NOW + 30
    # Paused for lunch meanwhile (the CLI, another tab): the wrap-up's end is gone.
    center.apply(member_event("QueueMemberPause", Paused="1", PausedReason="Lunch"), now=NOW + 5)
    sent = agent_state_payload(center.agents["1001"])
    assert (sent["phase"], sent["pause_reason"], sent["wrapup_until"]) == ("paused", "Lunch", None)
    center.apply(member_event("QueueMemberPause", Paused="0"), now=NOW + 6)
    sent = agent_state_payload(center.agents["1001"])
    assert (sent["phase"], sent["pause_reason"], sent["wrapup_until"]) == ("ready", None, None)
    # An expected end already past is not taken (the desk's pause never came back).
    center.expected_wrapups["1001"] = NOW - 1
    center.apply(member_event("QueueMemberPause", Paused="1", PausedReason="Wrap-up"), now=NOW + 7)
    assert center.agents["1001"].wrapup_until is None


def test_a_restart_finds_the_pause_reason_in_queue_status() -> None:
    center = CallCenter()
    queue_member = {
        "Event": "QueueMember",
        "Queue": "billing",
        "Name": "1001",
        "Location": "PJSIP/agent1001",
        "Membership": "static",
        "Status": "1",
        "Paused": "1",
        "PausedReason": "Wrap-up",
    }
    center.rebuild([queue_member], [], now=NOW)
    a = center.agents["1001"]
    assert (a.phase, a.pause_reason, a.static_queues) == ("wrapup", "Wrap-up", {"billing"})


def test_only_calls_the_agent_took_start_a_wrap_up() -> None:
    """AgentComplete does; a callback does once its caller answered and it hangs up."""
    center = CallCenter()
    out = center.apply(call_event("AgentComplete", TalkTime="60"), now=NOW)
    assert AgentCallDone("1001", "1796000000.1", "billing", callback=False) in out

    def callback(channel_id: str, caller_answers: bool) -> list[object]:
        center.expected_callbacks[channel_id] = ExpectedCallback(
            "cb1", "1002", "billing", "5551234", None, 60.0
        )
        agent_leg = {"Channel": f"PJSIP/agent1002-{channel_id}", "Linkedid": channel_id}
        seen: list[object] = []
        seen += center.apply({"Event": "Newchannel", "Uniqueid": channel_id, **agent_leg}, NOW)
        if caller_answers:
            seen += center.apply(
                {"Event": "UserEvent", "UserEvent": "HotlineCallback", "Id": "cb1",
                 "Status": "ANSWER", "Channel": "PJSIP/pstn-1", "Linkedid": channel_id},
                NOW + 5,
            )  # fmt: skip
        seen += center.apply({"Event": "Hangup", **agent_leg}, NOW + 60)
        return seen

    talked = callback("cb-1", caller_answers=True)
    assert AgentCallDone("1002", "cb-1", "billing", callback=True) in talked
    unanswered = callback("cb-2", caller_answers=False)
    assert not any(isinstance(o, AgentCallDone) for o in unanswered)


# -- what the pop carries ----------------------------------------------------------------

TODAY = date.fromtimestamp(NOW)


def alice(**overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": 1,
        "name": "Alice Martin",
        "phone": "5551234",
        "account": "100200",
        "language": "en",
        "balance_cents": 4200,
        "last_bill_date": date(2026, 11, 1),
        "last_bill_cents": 4200,
        "bill_due_date": TODAY,
        "open_ticket": None,
        "flags": ("vip",),
    }
    fields.update(overrides)
    return Customer(**fields)


def journey(language: str = "en", paid: bool = True, verified: bool = True) -> Interaction:
    it = Interaction(
        id="i-now",
        call_id="1796000000.1",
        flow="hotline",
        caller_number="5551234",
        customer_id=1,
        language=language,
        started_at=datetime.fromtimestamp(NOW - 300, UTC),
        outcome="queued",
        queue="billing",
        intent="pay_bill",
    )
    it.steps += [
        {"node": "identify", "type": "lookup", "at_ms": 5, "ms": 10, "result": "found"},
        {"node": "verify_caller", "type": "verify", "at_ms": 900, "ms": 6000, "result": "verified"},
        {"node": "pay_offer", "type": "menu", "at_ms": 7000, "ms": 4000, "result": "1"},
        {"node": "card_number", "type": "collect", "at_ms": 11000, "ms": 20000, "result": "ok"},
        {"node": "pay", "type": "action", "at_ms": 31000, "ms": 1500, "result": "paid"},
        {
            "node": "anything_else",
            "type": "menu",
            "at_ms": 32500,
            "ms": 5000,
            "result": "0",
            "tries": ["no_match:uh"],
            "heard": ["uh", "agent"],
        },
    ]
    it.inputs.update(
        {
            "verify_caller": "****",
            "pay_offer": "1",
            "card": "************1111",
            "anything_else": "0",
        }
    )
    it.transcripts.append(
        {"node": "anything_else", "text": "agent", "confidence": 0.93, "language": language,
         "option": "0"}
    )  # fmt: skip
    if verified:
        it.self_service.append(
            {"task": "verify", "outcome": "verified", "method": "pin", "attempts": 1}
        )
    if paid:
        it.self_service.append(
            {"task": "pay_bill", "outcome": "paid", "amount": 42.0, "card": "************1111"}
        )
    it.ended_at = it.started_at + timedelta(seconds=38)
    return it


def local_hhmm(it: Interaction, ms: int) -> str:
    return (it.started_at + timedelta(milliseconds=ms)).astimezone().strftime("%H:%M")


def test_the_opener_says_what_the_ivr_learned_in_one_line() -> None:
    paid = journey()
    at = local_hhmm(paid, 32500)  # when the payment step ended
    assert opener(paid, alice(balance_cents=0, bill_due_date=None), NOW) == (
        f"Calling about the bill; verified by PIN; paid 42 dollars by card in the IVR at {at}."
    )
    unpaid = journey(paid=False, verified=False)
    assert opener(unpaid, alice(), NOW) == "Calling about the bill of 42 dollars due today."
    tomorrow = alice(bill_due_date=TODAY + timedelta(days=1), balance_cents=5820)
    assert opener(unpaid, tomorrow, NOW) == "Calling about the bill of 58.20 dollars due tomorrow."
    late = alice(bill_due_date=date(2026, 11, 2))
    assert opener(unpaid, late, NOW) == "Calling about the bill of 42 dollars, overdue since 2 Nov."
    failed = journey(paid=False, verified=False)
    failed.self_service.append({"task": "verify", "outcome": "locked", "method": "pin"})
    assert "not verified (PIN failed)" in str(opener(failed, alice(), NOW))
    # Nothing learned: no opener rather than an empty or made-up one.
    assert opener(None, alice(), NOW) is None
    bare = Interaction(id="x", call_id="y", flow="hotline")
    assert opener(bare, None, NOW) is None


def test_the_opener_speaks_korean_to_a_korean_caller_and_marks_a_callback() -> None:
    it = journey(language="ko")
    at = local_hhmm(it, 32500)
    assert opener(it, alice(language="ko", balance_cents=0, bill_due_date=None), NOW) == (
        f"요금 문의; 비밀번호 인증 완료; {at}에 IVR에서 카드로 42달러 납부 완료."
    )
    booked = journey(paid=False, verified=False)
    booked.intent = "billing"
    booked.self_service.append(
        {"task": "deflection", "queue": "billing", "outcome": "callback_booked"}
    )
    line = opener(booked, alice(), NOW, callback=True)
    assert line == (
        f"Callback booked at {local_hhmm(booked, 0)}; "
        "calling about the bill of 42 dollars due today."
    )


def earlier(n: int, **fields: Any) -> Interaction:
    it = Interaction(
        id=f"i-{n}",
        call_id=f"17959{n}.1",
        flow="hotline",
        caller_number="5551234",
        customer_id=1,
        started_at=datetime.fromtimestamp(NOW - 86400 * n, UTC),
    )
    for k, v in fields.items():
        setattr(it, k, v)
    return it


BOOKED: SelfService = {"task": "deflection", "queue": "billing", "outcome": "callback_booked"}


def test_the_pop_carries_timeline_history_flags_and_opener_valid_against_the_schema() -> None:
    now_call = journey()
    history = [
        earlier(1, outcome="queued", queue="billing", intent="billing", disposition="Payment plan",
                disposition_note="Pays on the 5th", disposed_by="1002"),
        earlier(2, outcome="self_served", intent="balance",
                self_service=[{"task": "balance", "outcome": "done"}]),
        earlier(3, outcome="deflected", queue="billing",
                steps=[{"node": "offer", "type": "deflect", "at_ms": 0, "callback": "cb9"}],
                self_service=[BOOKED]),
        earlier(4, outcome="deflected", link_sent_at=datetime.fromtimestamp(NOW - 4 * 86400, UTC)),
        earlier(5, outcome="abandoned"),
        earlier(6, outcome="queued"),
    ]  # fmt: skip
    call = Call("1796000000.1", caller_number="5551234", queue="billing")
    pop = ScreenPop("1001", call, "billing", 12.0)
    payload = screen_pop_payload(
        pop, now_call, alice(), history, NOW, callbacks={"cb9": "completed"}
    )
    valid(payload, "screenpop")
    assert payload["customer"] is not None and payload["customer"]["flags"] == ["vip"]
    assert [(h["kind"], h["outcome"]) for h in payload["history"]] == [
        ("call", "queued"),
        ("ivr", "self_served"),
        ("callback", "completed"),
        ("link", "link_sent"),
        ("ivr", "abandoned"),
    ]  # newest first, five at most
    first = payload["history"][0]
    assert (first["disposition"], first["disposition_note"], first["disposed_by"]) == (
        "Payment plan",
        "Pays on the 5th",
        "1002",
    )
    assert payload["history"][1]["summary"] == "heard the balance in the IVR"
    ivr = payload["ivr"]
    assert ivr is not None and ivr["time_in_ivr_s"] == 38.0
    steps = {s["node"]: s for s in ivr["timeline"]}
    assert list(steps) == [s["node"] for s in now_call.steps]
    assert steps["verify_caller"]["input"] == "****"  # masked as the IVR recorded it
    assert steps["anything_else"]["said"] == "agent"
    assert steps["anything_else"]["confidence"] == 0.93
    assert steps["anything_else"]["tries"] == ["no_match:uh"]
    assert (steps["pay"]["at_s"], steps["pay"]["duration_s"], steps["pay"]["result"]) == (
        31.0,
        1.5,
        "paid",
    )
    assert payload["opener"] is not None and payload["opener"].startswith("Calling about the bill")
    # This call's own record never shows in its history.
    again = screen_pop_payload(pop, now_call, alice(), [now_call, *history], NOW)
    assert again["history"][0]["call_id"] == history[0].call_id


def test_new_pop_parts_are_typed_as_the_schema_says() -> None:
    pop_s = schema("screenpop")
    ivr = next(b for b in pop_s["properties"]["ivr"]["oneOf"] if b.get("type") == "object")
    for typed, s in [
        (TimelineStep, ivr["properties"]["timeline"]["items"]),
        (HistoryEntry, pop_s["properties"]["history"]["items"]),
    ]:
        assert set(get_type_hints(typed)) == set(s["properties"]) == set(s["required"])
