"""Real calls: sipp over SIP/RTP → Asterisk 22 (sandbox) → FastAGI → Hotline.

These are the proof that the IVR works; the scripted-peer tests only cover
paths these cannot reach cheaply.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from harness.sipp import Agent, Dtmf, Keys, Pause, Step, run_caller
from harness.wait import wait_for
from hotline.records.interactions import Interaction
from ivr.flow.engine import Services
from tests.support.bad_clients import BAD_CLIENTS, send_garbage
from tests.support.paths import REPO

pytestmark = pytest.mark.asterisk


async def interaction_for(services: Services, caller: str, after: int = 0) -> Interaction:
    """The newest finished interaction of this caller, beyond the first `after` ones."""

    async def finished() -> Interaction | None:
        calls = await services.interactions.recent(limit=50, caller=caller)
        if len(calls) > after and calls[0].ended_at is not None:
            return calls[0]
        return None

    return await wait_for(
        finished,
        timeout=15,
        interval=0.2,
        what=f"{caller}'s interaction number {after + 1}, finished",
    )


async def count(services: Services, caller: str) -> int:
    return len(await services.interactions.recent(limit=500, caller=caller))


def asterisk_channels() -> str:
    r = subprocess.run(
        [str(REPO / "scripts/sandbox.sh"), "cli", "core show channels concise"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.stdout.strip()


async def test_call_reaches_fastagi_plays_prompt_and_ends_cleanly(live_server: Services) -> None:
    caller = "5550101"
    before = await count(live_server, caller)
    result = await run_caller([Pause(4000)], number=caller)
    assert result.ok, result.stderr  # the caller's BYE got its 200 OK
    it = await interaction_for(live_server, caller, before)
    assert it is not None
    assert it.path[:3] == ["identify", "greet_caller", "main_menu"]
    greeting = it.steps[1]
    # STREAM FILE returns when Asterisk finished playing: "Welcome to Hotline." lasts > 0.8 s.
    assert greeting["ms"] >= 800, it.steps
    assert it.outcome == "abandoned"
    await asyncio.sleep(0.5)
    assert asterisk_channels() == "", "no channel left on the Asterisk side"


async def test_press_1_then_0_rings_agent_1001_in_billing(live_server: Services) -> None:
    caller = "5550102"
    before = await count(live_server, caller)
    agent = Agent("1001")
    await agent.start()
    try:
        result = await run_caller(
            [Pause(1500), Dtmf("1"), Pause(2500), Dtmf("0"), Pause(6000)], number=caller
        )
        assert result.ok, result.stderr
        # The agent's sipp answered one call and got its BYE: 1001's phone rang.
        assert await agent.wait(10) == 0, agent.errors()
    finally:
        await agent.stop()
    it = await interaction_for(live_server, caller, before)
    assert it is not None
    assert it.outcome == "queued" and it.queue == "billing"
    assert it.path == ["identify", "greet_caller", "main_menu", "billing_menu"]
    assert it.inputs == {"main_menu": "1", "billing_menu": "0"}


async def test_known_caller_is_greeted_by_name_once_the_pin_matches(
    live_server: Services,
) -> None:
    caller = "5551234"  # Alice Martin in the demo directory, PIN 2468
    before = await count(live_server, caller)
    # The PIN as SIP INFO digits while the PIN prompt plays (GET DATA).
    result = await run_caller([Pause(3500), Keys("2468#"), Pause(5000)], number=caller)
    assert result.ok, result.stderr
    it = await interaction_for(live_server, caller, before)
    assert it is not None
    alice = await live_server.directory.by_phone(caller)
    assert alice is not None and it.customer_id == alice.id
    assert it.path[:6] == [
        "identify",
        "welcome_known",
        "verify_caller",
        "greet_customer",
        "bill_due",
        "pay_offer",
    ], it.steps
    assert it.steps[2]["result"] == "verified" and it.inputs["verify_caller"] == "****"
    assert it.steps[3]["ms"] >= 800  # "Thank you, Alice." was played


async def test_known_caller_pays_bill_by_dtmf_then_flow_hangs_up(live_server: Services) -> None:
    caller = "5550004"  # Dana Okafor, 120.75 due, PIN 9753
    before = await count(live_server, caller)
    card = "4111111111111111"
    # The PIN, 1 = pay now (RFC 2833 in the RTP), then card and expiry as SIP INFO digits.
    steps: list[Step] = [
        Pause(3500),
        Keys("9753#"),
        Pause(2500),
        Dtmf("1"),
        Pause(1500),
        Keys(card + "#"),
        Pause(1500),
        Keys("1230"),
        Pause(6000),
        Dtmf("2"),
    ]
    result = await run_caller(steps, number=caller, hangup="asterisk", timeout=90)
    assert result.ok, result.stderr  # Asterisk hung up, the caller answered its BYE
    it = await interaction_for(live_server, caller, before)
    assert it is not None
    assert it.outcome == "self_served", "\n".join(map(str, it.steps))
    assert it.inputs["card"] == "************1111"
    assert card not in str(it.to_json())
    assert [t["outcome"] for t in it.self_service] == ["verified", "paid"]
    dana = await live_server.directory.by_phone(caller)
    assert dana is not None and dana.balance_cents == 0


async def test_hangup_mid_menu_is_abandoned(live_server: Services) -> None:
    caller = "5550103"
    before = await count(live_server, caller)
    result = await run_caller([Pause(1500), Dtmf("2"), Pause(1000)], number=caller)
    assert result.ok, result.stderr
    it = await interaction_for(live_server, caller, before)
    assert it is not None
    assert it.outcome == "abandoned"
    assert it.path[-1] == "support_menu"


async def test_garbage_on_fastagi_port_does_not_disturb_a_call(live_server: Services) -> None:
    caller = "5550104"
    before = await count(live_server, caller)
    agent = Agent("1002")
    await agent.start()
    try:
        call = asyncio.create_task(run_caller([Pause(2000), Dtmf("0"), Pause(5000)], number=caller))
        await asyncio.sleep(1.0)
        await asyncio.gather(*(send_garbage(4573, p) for p in BAD_CLIENTS.values()))
        result = await call
        assert result.ok, result.stderr
        assert await agent.wait(10) == 0  # support rang agent 1002 and it answered
    finally:
        await agent.stop()
    it = await interaction_for(live_server, caller, before)
    assert it is not None and it.outcome == "queued" and it.queue == "support"
