"""AMI framing and the CTI state machine, driven by a transcript recorded from the sandbox.

tests/data/ami/queue_calls.ami was recorded with tests/tools/record_ami.py:
call 1 presses 1 then 0 and is answered by agent 1001; call 2 queues for
support, nobody answers, and the caller hangs up (abandoned).
"""

from __future__ import annotations

import random

import pytest

from cti.ami import AmiEvent, chan_variables, parse_message, split_messages
from cti.state import AgentChanged, CallCenter, CallEvent, Output, QueueChanged, ScreenPop
from tests.support.paths import REPO

TRANSCRIPT = REPO / "tests" / "data" / "ami" / "queue_calls.ami"


def events(data: bytes) -> list[AmiEvent]:
    msgs, rest = split_messages(data)
    assert rest.strip() == b""
    return [e for e in (parse_message(m) for m in msgs) if e is not None]


def replay(center: CallCenter, evs: list[AmiEvent]) -> list[Output]:
    out: list[Output] = []
    for i, ev in enumerate(evs):
        out += center.apply(ev, now=1000.0 + i)
    return out


def test_split_messages_is_independent_of_chunking() -> None:
    data = TRANSCRIPT.read_bytes()
    whole = events(data)
    rng = random.Random(7)
    for _ in range(20):
        buffer, got, pos = b"", [], 0
        while pos < len(data):
            step = rng.randint(1, 300)
            msgs, buffer = split_messages(buffer + data[pos : pos + step])
            got += [parse_message(m) for m in msgs]
            pos += step
        assert [g for g in got if g is not None] == whole


def test_utf8_split_across_reads_is_kept() -> None:
    raw = "Event: Newchannel\r\nCallerIDName: 김민지\r\nLinkedid: 1.1\r\n\r\n".encode()
    cut = raw.index("민".encode()) + 1  # in the middle of a Korean character
    first, rest = split_messages(raw[:cut])
    second, rest = split_messages(rest + raw[cut:])
    assert first == [] and rest == b""
    ev = parse_message(second[0])
    assert ev is not None and ev["CallerIDName"] == "김민지"


def test_repeated_headers_and_chan_variables() -> None:
    ev = parse_message(b"Event: AgentCalled\r\nChanVariable: A=1\r\nChanVariable: B=x=y\r\n")
    assert ev is not None and chan_variables(ev) == {"A": "1", "B": "x=y"}
    assert parse_message(b"not an ami message at all") is None


def test_transcript_tells_the_story_of_both_calls() -> None:
    center = CallCenter()
    out = replay(center, events(TRANSCRIPT.read_bytes()))
    pops = [o for o in out if isinstance(o, ScreenPop)]
    assert [(p.agent, p.queue, p.call.caller_number) for p in pops] == [
        ("1001", "billing", "5550201"),
        ("1002", "support", "5550202"),
    ]
    # The IVR's hand-off facts arrive with the event that rings the phone.
    assert pops[0].call.variables["HOTLINE_INTENT"] == "billing"
    assert len(pops[0].call.variables["HOTLINE_INTERACTION"]) == 32
    first = pops[0].call.call_id
    kinds = [o.kind for o in out if isinstance(o, CallEvent) and o.call_id == first]
    assert kinds == ["ivr_started", "queued", "ringing", "answered", "ended"]
    second = pops[1].call.call_id
    kinds2 = [o.kind for o in out if isinstance(o, CallEvent) and o.call_id == second]
    assert kinds2 == ["ivr_started", "queued", "ringing", "abandoned", "ended"]
    states = [
        o.agent.state for o in out if isinstance(o, AgentChanged) and o.agent.number == "1001"
    ]
    assert states[:3] == ["ringing", "busy", "available"]
    billing = center.queue_stats("billing", now=2000.0)
    assert (billing["answered_today"], billing["abandoned_today"], billing["waiting"]) == (1, 0, 0)
    assert billing["service_level_pct"] == 100.0
    support = center.queue_stats("support", now=2000.0)
    assert (support["answered_today"], support["abandoned_today"]) == (0, 1)
    assert support["service_level_pct"] == 0.0
    assert center.calls == {}  # both calls ended: nothing leaks


def test_queue_waiting_goes_1_then_0() -> None:
    center = CallCenter()
    waiting = []
    for i, ev in enumerate(events(TRANSCRIPT.read_bytes())):
        for o in center.apply(ev, now=1000.0 + i):
            if isinstance(o, QueueChanged) and o.queue == "billing":
                waiting.append(center.queue_stats("billing", now=1000.0 + i)["waiting"])
    assert waiting[0] == 1 and waiting[-1] == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"Event": "AgentCalled"},  # no Linkedid, no Queue
        {"Event": "QueueCallerJoin", "Linkedid": "1.1"},  # no Queue
        {"Event": "QueueMemberStatus", "Queue": "billing"},  # names no agent
        {"Event": "AgentComplete", "Queue": "billing", "MemberName": "1001", "TalkTime": "x"},
        {"Event": "SomethingNew", "Foo": "bar"},
        {"Response": "Success"},
    ],
)
def test_malformed_and_unknown_events_are_skipped(bad: AmiEvent) -> None:
    center = CallCenter()
    assert center.apply(bad) == []
    # and the state machine goes on working afterwards
    evs = events(TRANSCRIPT.read_bytes())
    assert any(isinstance(o, ScreenPop) for o in replay(center, evs))


def test_out_of_order_hangup_before_queue_leave_does_not_leak() -> None:
    center = CallCenter()
    evs = events(TRANSCRIPT.read_bytes())
    leave = [e for e in evs if e.get("Event") == "QueueCallerLeave"]
    others = [e for e in evs if e.get("Event") != "QueueCallerLeave"]
    replay(center, others + leave)  # every leave arrives after the hangups
    assert center.queue_stats("billing", now=9999.0)["waiting"] == 0
    assert center.queue_stats("support", now=9999.0)["waiting"] == 0
    assert center.calls == {}


def test_rebuild_from_queue_status() -> None:
    center = CallCenter()
    center.rebuild(
        [
            {"Event": "QueueParams", "Queue": "billing", "ServiceLevel": "20"},
            {
                "Event": "QueueMember",
                "Queue": "billing",
                "Name": "1001",
                "Location": "PJSIP/agent1001",
                "Status": "2",
                "Paused": "0",
            },
            {
                "Event": "QueueMember",
                "Queue": "billing",
                "Name": "1002",
                "Location": "PJSIP/agent1002",
                "Status": "1",
                "Paused": "1",
            },
            {
                "Event": "QueueEntry",
                "Queue": "billing",
                "Channel": "PJSIP/callers-1",
                "Uniqueid": "5.5",
                "Wait": "12",
            },
        ],
        [
            {
                "Event": "CoreShowChannel",
                "Channel": "PJSIP/callers-1",
                "Uniqueid": "5.5",
                "Linkedid": "5.5",
                "CallerIDNum": "5551234",
            }
        ],
        now=100.0,
    )
    s = center.queue_stats("billing", now=100.0)
    assert s["waiting"] == 1 and s["longest_wait_s"] == 12.0
    assert s["agents_busy"] == 1 and s["agents_available"] == 0
    assert center.agents["1002"].shown_state == "paused"
    assert center.calls["5.5"].caller_number == "5551234"


def test_queue_stats_estimate_the_wait_from_observed_handle_times() -> None:
    """Erlang C inputs come from the events: arrivals, answers, talk times."""
    center = CallCenter()
    for agent in ("1001", "1002"):
        center.apply(
            {
                "Event": "QueueMemberStatus",
                "Queue": "billing",
                "MemberName": agent,
                "Interface": f"PJSIP/agent{agent}",
                "Status": "2",  # in use
                "Paused": "0",
            },
            now=0.0,
        )
    assert center.agents["1001"].interface == "PJSIP/agent1001"
    # Six calls of 120 s each were answered and completed.
    for i in range(6):
        t = 10.0 + i * 100
        center.apply(
            {
                "Event": "QueueCallerJoin",
                "Queue": "billing",
                "Channel": f"c{i}",
                "Linkedid": f"{i}",
            },
            now=t,
        )
        center.apply(
            {
                "Event": "AgentComplete",
                "Queue": "billing",
                "MemberName": "1001",
                "Interface": "PJSIP/agent1001",
                "TalkTime": "120",
                "Linkedid": f"{i}",
            },
            now=t + 130,
        )
        center.queue("billing").callers.clear()
    for agent in ("1001", "1002"):
        center.agents[agent].state = "busy"
    # Three callers waiting: the fourth waits for four completions of 2 busy agents.
    for i in range(3):
        center.queue("billing").callers[f"w{i}"] = (f"w{i}", 700.0)
    s = center.queue_stats("billing", now=710.0)
    assert s["est_wait_method"] == "erlang_c"
    assert s["est_wait_s"] == pytest.approx(4 * 120 / 2)
    # Nobody staffed: no number, and the flow says "no agent is available".
    for agent in ("1001", "1002"):
        center.agents[agent].paused = True
        center.agents[agent].state = "available"
    s = center.queue_stats("billing", now=710.0)
    assert s["est_wait_s"] is None and s["est_wait_method"] == "no_agents"


def test_an_originated_callback_pops_like_a_queue_call_marked_callback() -> None:
    from cti.state import ExpectedCallback

    center = CallCenter()
    center.expected_callbacks["cb-1"] = ExpectedCallback(
        id="cb", agent="1001", queue="billing", number="5550999", interaction_id="i1", waited_s=42.4
    )
    out = center.apply(
        {
            "Event": "Newchannel",
            "Channel": "PJSIP/agent1001-00000001",
            "Uniqueid": "cb-1",
            "Linkedid": "cb-1",
            "CallerIDNum": "5550999",
            "Context": "hotline-callback",
        },
        now=5.0,
    )
    [pop] = [o for o in out if isinstance(o, ScreenPop)]
    assert pop.agent == "1001" and pop.queue == "billing" and pop.wait_s == 42.4
    assert pop.call.callback and pop.call.caller_number == "5550999"
    assert pop.call.variables["HOTLINE_INTERACTION"] == "i1"
    assert center.agents["1001"].state == "ringing"
    assert "cb-1" not in center.expected_callbacks


async def test_the_publisher_drops_buffered_pops_of_calls_the_cti_saw_end() -> None:
    """The CTI as `hotline serve` builds it: its publisher asks the call model if a call lives."""
    from typing import cast

    from cti import setup as cti_feature
    from hotline.config import load_config
    from hotline.records.customers import CustomerDirectory
    from hotline.records.interactions import InteractionStore

    # No broker on port 1 and no AMI connection (connect() is never called): nothing leaves.
    cfg = load_config(REPO / "hotline.toml", environ={"HOTLINE_MQTT__PORT": "1"})
    deps = cti_feature.CtiDeps(
        cast(CustomerDirectory, None), cast(InteractionStore, None), ami_secret="unused"
    )
    async with cti_feature.setup(cfg, deps) as cti:
        publisher = cti.publisher
        assert not publisher.is_live("1700000000.5")  # unknown or ended: a stale pop
        cti.state.apply(
            {
                "Event": "Newchannel",
                "Channel": "PJSIP/callers-1",
                "Linkedid": "1700000000.5",
                "Uniqueid": "1700000000.5",
                "CallerIDNum": "5551234",
                "Context": "from-callers",
            }
        )
        assert publisher.is_live("1700000000.5")
