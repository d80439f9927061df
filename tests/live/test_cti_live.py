"""Screen pops, queue stats and agent states through real Asterisk and real Mosquitto."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from harness.mqtt import Inbox
from harness.sipp import Agent, Keys, Pause, run_caller
from harness.wait import wait_for
from hotline.recordings.store import Recording
from tests.support.paths import REPO

if TYPE_CHECKING:
    from tests.support.live import LiveCti

T = TypeVar("T")

pytestmark = pytest.mark.asterisk


def states(inbox: Inbox, agent: str) -> list[str]:
    seq = [p["state"] for p, _ in inbox.on(f"/agents/{agent}/state")]
    return [s for i, s in enumerate(seq) if i == 0 or seq[i - 1] != s]


async def test_screen_pop_reaches_agent_while_phone_rings(
    cti_live: tuple[LiveCti, Inbox, str],
) -> None:
    _cti, inbox, _prefix = cti_live
    caller = "5550401"
    agent = Agent("1001", answer_delay_ms=2500)
    await agent.start()
    try:
        result = await run_caller(
            [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(7000)], number=caller
        )
        assert result.ok, result.stderr
        assert await agent.wait(10) == 0
    finally:
        await agent.stop()
    pop, t_pop = await inbox.expect("/agents/1001/screenpop", caller_number=caller)
    call_id = pop["call_id"]
    _, t_answer = await inbox.expect(f"/calls/{call_id}/events", event="answered")
    # The phone rang for 2.5 s: the pop was on the agent's topic well before the answer.
    assert t_answer - t_pop > 1.5, (t_pop, t_answer)
    assert pop["schema_version"] == 1 and pop["queue"] == "billing" and pop["agent"] == "1001"
    assert pop["ivr"]["path"] == ["identify", "greet_caller", "main_menu", "billing_menu"]
    assert pop["ivr"]["intent"] == "billing" and pop["ivr"]["outcome"] == "queued"
    assert pop["customer"] is None and pop["callback"] is False
    # Call lifecycle, in order.
    await inbox.expect(f"/calls/{call_id}/events", event="ended")
    kinds = [p["event"] for p, _ in inbox.on(f"/calls/{call_id}/events")]
    assert kinds == ["ivr_started", "queued", "ringing", "answered", "ended"]
    # Agent 1001: ringing -> busy -> available.
    await inbox.expect("/agents/1001/state", state="available", call_id=None)
    seq = states(inbox, "1001")
    i = seq.index("ringing")
    assert seq[i : i + 3] == ["ringing", "busy", "available"]
    # Queue stats went waiting 1 -> 0, and the answer counted.
    waiting = [p["waiting"] for p, _ in inbox.on("/queues/billing/stats")]
    assert 1 in waiting and waiting[-1] == 0
    assert inbox.on("/queues/billing/stats")[-1][0]["answered_today"] >= 1


async def test_known_caller_pop_carries_the_customer(cti_live: tuple[LiveCti, Inbox, str]) -> None:
    _cti, inbox, _prefix = cti_live
    caller = "5550003"  # Kim Minji: Korean, 58.20 due
    agent = Agent("1001", answer_delay_ms=500)
    await agent.start()
    try:
        # her PIN (8642#) first; pay offer: 2 = something else; main menu (now in
        # Korean): 0 = agent
        result = await run_caller(
            [
                Pause(3500),
                Keys("8642#"),
                Pause(9000),
                Keys("2"),
                Pause(1500),
                Keys("0"),
                Pause(5000),
            ],
            number=caller,
        )
        assert result.ok, result.stderr
    finally:
        await agent.stop()
    pop, _ = await inbox.expect("/screenpop", caller_number=caller, timeout=20)
    assert pop["customer"]["name"] == "Kim Minji" and pop["customer"]["balance"] == 58.2
    assert pop["ivr"]["language"] == "ko"
    assert pop["ivr"]["path"][:6] == [
        "identify",
        "welcome_known",
        "verify_caller",
        "greet_customer",
        "bill_due",
        "pay_offer",
    ]


async def test_abandoned_call_shows_in_stats_and_events(
    cti_live: tuple[LiveCti, Inbox, str],
) -> None:
    _cti, inbox, _prefix = cti_live
    before = [p["abandoned_today"] for p, _ in inbox.on("/queues/support/stats")]
    result = await run_caller([Pause(1500), Keys("0"), Pause(3500)], number="5550402")
    assert result.ok, result.stderr
    event, _ = await inbox.expect("/events", event="abandoned", queue="support")
    assert event["hold_s"] >= 1

    async def counted() -> bool:
        s = inbox.on("/queues/support/stats")
        return bool(s and s[-1][0]["abandoned_today"] > (before[-1] if before else 0))

    await wait_for(counted, timeout=10, what="support's abandoned_today counting the call")


async def test_asterisk_restart_reconnects_and_rebuilds(
    cti_live: tuple[LiveCti, Inbox, str],
) -> None:
    cti, inbox, _prefix = cti_live
    logins = cti.ami.logins
    sandbox = str(REPO / "scripts" / "sandbox.sh")
    await asyncio.to_thread(subprocess.run, [sandbox, "down"], check=True, capture_output=True)
    await wait_for(lambda: _value(not cti.ami.logged_in), timeout=5, what="the AMI logged out")
    await asyncio.to_thread(subprocess.run, [sandbox, "up"], check=True, capture_output=True)
    await wait_for(lambda: _value(cti.ami.logins > logins), timeout=20, what="a new AMI login")
    await cti.drained()
    assert {"1001", "1002", "1003"} <= set(cti.state.agents)
    # And calls are tracked again: a pop for the next call arrives.
    agent = Agent("1002", answer_delay_ms=300)
    await agent.start()
    try:
        result = await run_caller([Pause(1500), Keys("0"), Pause(4000)], number="5550403")
        assert result.ok, result.stderr
    finally:
        await agent.stop()
    pop, _ = await inbox.expect("/agents/1002/screenpop", caller_number="5550403")
    assert pop["queue"] == "support"


async def _value(v: T) -> T:
    return v


async def test_every_published_message_matches_its_schema(
    cti_live: tuple[LiveCti, Inbox, str],
) -> None:
    """The MQTT contract: every payload seen in this session validates against cti/schemas."""
    import json

    import jsonschema

    _cti, inbox, prefix = cti_live
    if not inbox.on("/screenpop"):  # run alone: make one call so there is something to check
        agent = Agent("1001", answer_delay_ms=300)
        await agent.start()
        try:
            await run_caller(
                [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(4000)], number="5550404"
            )
        finally:
            await agent.stop()
        await inbox.expect("/screenpop")
    schemas: dict[str, Any] = {}
    for f in (REPO / "cti" / "schemas").glob("*.schema.json"):
        schemas[f.name.removesuffix(".schema.json")] = json.loads(f.read_text())
    seen: set[str] = set()
    for topic, payload, _ in inbox.messages:
        kind = payload["type"]
        jsonschema.validate(
            payload, schemas[kind], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        expected = {
            "screenpop": "/screenpop",
            "agent_state": "/state",
            "queue_stats": "/stats",
            "call_event": "/events",
        }[kind]
        assert topic.startswith(prefix + "/") and topic.endswith(expected)
        seen.add(kind)
    assert seen == {"screenpop", "agent_state", "queue_stats", "call_event"}


async def test_answered_call_is_recorded_and_stored_within_10s(
    cti_live: tuple[LiveCti, Inbox, str], tmp_path: Path
) -> None:
    import hashlib
    import subprocess as sp
    import time

    from hotline.recordings.crypt import is_encrypted
    from hotline.records.users import Actor

    cti, inbox, _prefix = cti_live
    store = cti.recordings
    raw, talk = tmp_path / "raw.wav", tmp_path / "agent.wav"
    sp.run(
        [
            "espeak-ng",
            "-w",
            str(raw),
            "Hello, this is agent one thousand and one. How can I help you today?",
        ],
        check=True,
    )
    sp.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law", str(talk)], check=True)
    caller = "5550501"
    agent = Agent("1001", answer_delay_ms=300, talk_wav=talk)
    await agent.start()
    try:
        result = await run_caller(
            [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(8000)], number=caller
        )
        assert result.ok, result.stderr
    finally:
        await agent.stop()
    hung_up = time.monotonic()
    pop, _ = await inbox.expect("/agents/1001/screenpop", caller_number=caller)
    _, t_answer = await inbox.expect(f"/calls/{pop['call_id']}/events", event="answered")
    officer = Actor("carol", frozenset({"compliance"}))

    async def stored() -> list[Recording]:
        return await store.search(officer, caller=caller)

    found = await wait_for(
        stored, timeout=10, interval=0.25, what="a recording stored within 10 s of hangup"
    )
    assert found, "no recording stored within 10 s of hangup"
    assert time.monotonic() - hung_up < 10
    rec = found[0]
    assert (rec.caller, rec.agent, rec.queue) == (caller, "1001", "billing")
    assert rec.call_id == pop["call_id"]
    assert (rec.retention_until - rec.ended_at.date()).days == 2555  # billing: 7 years
    # Recorded from the answer to the hangup: roughly the last ~6 s of the call,
    # nothing of the IVR before it.
    talk_s = hung_up - t_answer
    assert abs(rec.duration_s - talk_s) < 1.0, (rec.duration_s, talk_s)
    _, path = await store.open(officer, rec.id)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.sha256
    # The demo site stores recordings encrypted, private to the server's user.
    assert rec.encrypted and is_encrypted(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert all(d.stat().st_mode & 0o777 == 0o700 for d in (path.parent, path.parents[1]))
    audio = tmp_path / "exported.wav"
    await store.export(officer, rec.id, audio)
    assert hashlib.sha256(audio.read_bytes()).hexdigest() == rec.audio_sha256
    stat = sp.run(["sox", str(audio), "-n", "stat"], capture_output=True, text=True).stderr
    rms = float(next(line for line in stat.splitlines() if "RMS     amplitude" in line).split()[-1])
    assert rms > 0.01, "the recording is not silent: the agent's voice is in it"
    assert not list((REPO / "recordings" / "spool").glob(f"{rec.call_id}--*.wav"))
