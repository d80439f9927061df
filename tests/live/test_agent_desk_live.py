"""The agent desk against the real Asterisk: a pause with a reason is what
Asterisk reports (QueueStatus) and what the retained state topic shows, a
paused agent is not rung, and after a call the agent is in wrap-up for
``wrapup_s`` then ready (or ready at once when they finish early).

Its own CTI (as ``hotline serve`` builds it) with a short wrap-up
(``HOTLINE_DESK__WRAPUP_S``), publishing to the project broker under a private
prefix.  Run only as ``flock /tmp/hotline-live.lock .venv/bin/pytest tests/live/…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from cti import setup as cti_feature
from cti.ami import AmiEvent
from harness.mqtt import project_broker_env, server_login
from harness.sipp import Agent, Audio, Dtmf, Keys, Pause, run_caller
from harness.wait import wait_for
from hotline.config import Config
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.storage.db import Database
from ivr.flow.engine import Services
from tests.live.conftest import live_config
from tests.support.paths import REPO

pytestmark = pytest.mark.asterisk

WRAPUP_S = 4.0
# An unknown caller (no PIN asked): 1 for billing, then 0 for an agent.
BILLING_CALL: list[Pause | Dtmf | Keys | Audio] = [
    Pause(1500),
    Keys("1"),
    Pause(2500),
    Keys("0"),
    Pause(4000),
]


@pytest.fixture
async def desk_cti(
    live_records: tuple[Database, CustomerDirectory, InteractionStore],
    live_server: Services,
    project_broker: Config,
) -> AsyncIterator[tuple[cti_feature.Cti, Config]]:
    _db, directory, interactions = live_records
    tag = uuid.uuid4().hex[:8]
    cfg = live_config(
        **project_broker_env(project_broker),
        HOTLINE_MQTT__PREFIX=f"hotline/test-desk-{tag}",
        HOTLINE_MQTT__CLIENT_ID=f"hotline-test-desk-{tag}",
        HOTLINE_AMI__RECONNECT_MIN_S="0.2",
        HOTLINE_DESK__WRAPUP_S=str(WRAPUP_S),
    )
    secret = (REPO / ".run" / "ami_secret").read_text().strip()
    async with cti_feature.setup(cfg, cti_feature.CtiDeps(directory, interactions, secret)) as cti:
        await cti.connect()
        await wait_for(
            lambda: cti.ami.logged_in and {"1001", "1002"} <= set(cti.state.agents),
            timeout=10,
            what="the CTI logged in, agents known",
        )
        try:
            yield cti, cfg
        finally:
            # Whatever happened, the agents are left as the other tests expect them.
            for agent in ("1001", "1002"):
                with contextlib.suppress(Exception):
                    await cti.ami.queue_pause(f"PJSIP/agent{agent}", False)


async def member(cti: cti_feature.Cti, agent: str) -> AmiEvent:
    """What Asterisk itself reports for the agent (QueueStatus), first queue."""
    reply = await cti.ami.action({"Action": "QueueStatus", "Member": f"PJSIP/agent{agent}"})
    members = [m for m in reply if m.get("Event") == "QueueMember"]
    assert members, reply
    return members[0]


async def retained_state(cfg: Config, agent: str, phase: str) -> dict[str, Any]:
    """What a page that subscribes now gets at once (the retained state message),
    once it shows ``phase``: the server publishes a moment after the event."""
    topic = f"{cfg.mqtt.prefix}/agents/{agent}/state"
    b = cfg.broker
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        async with aiomqtt.Client(b.host, b.port, **server_login(cfg)) as client:
            await client.subscribe(topic, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert message.retain  # the first message of a fresh subscription
                    seen = json.loads(bytes(message.payload))
                    break
        if seen.get("phase") == phase:
            return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"the retained state never showed {phase}: {seen}")


async def billing_call(caller: str, *phones: Agent) -> None:
    for phone in phones:
        await phone.start()
    try:
        result = await run_caller(BILLING_CALL, number=caller)
        assert result.ok, result.stderr
    finally:
        for phone in phones:
            await phone.stop()


async def test_a_paused_agent_is_paused_in_asterisk_and_not_rung(
    desk_cti: tuple[cti_feature.Cti, Config],
) -> None:
    cti, cfg = desk_cti
    rung: list[tuple[str, str]] = []
    cti.bus.subscribe(
        "AgentCalled", lambda ev: rung.append((str(ev.get("CallerIDNum")), str(ev["MemberName"])))
    )
    await cti.desk.set_state("1001", "pause", "Break")
    await wait_for(lambda: cti.state.agents["1001"].phase == "paused", 5, what="1001 paused")
    reported = await member(cti, "1001")
    assert (reported["Paused"], reported["PausedReason"]) == ("1", "Break")
    shown = await retained_state(cfg, "1001", "paused")
    assert (shown["pause_reason"], shown["state"]) == ("Break", "paused")

    caller = "5550481"
    await billing_call(caller, Agent("1001"), Agent("1002"))
    assert [who for number, who in rung if number == caller] == ["1002"]

    await cti.desk.set_state("1001", "ready")
    await wait_for(lambda: cti.state.agents["1001"].phase == "ready", 5, what="1001 ready")
    reported = await member(cti, "1001")
    assert reported["Paused"] == "0"
    assert (await retained_state(cfg, "1001", "ready"))["pause_reason"] is None


async def test_after_a_call_wrap_up_for_wrapup_s_then_ready_or_finished_early(
    desk_cti: tuple[cti_feature.Cti, Config],
) -> None:
    cti, cfg = desk_cti
    await billing_call("5550482", Agent("1001"))
    await wait_for(lambda: cti.state.agents["1001"].phase == "wrapup", 10, what="wrap-up")
    started = time.monotonic()
    reported = await member(cti, "1001")
    assert (reported["Paused"], reported["PausedReason"]) == ("1", "Wrap-up")
    shown = await retained_state(cfg, "1001", "wrapup")
    assert shown["wrapup_until"] is not None
    assert 0 < shown["wrapup_until"] - time.time() <= WRAPUP_S
    await wait_for(lambda: cti.state.agents["1001"].phase == "ready", 10, what="ready")
    assert time.monotonic() - started < WRAPUP_S + 2
    assert (await member(cti, "1001"))["Paused"] == "0"

    # Extended, then finished early: ready at once, long before the (new) end.
    await billing_call("5550483", Agent("1001"))
    await wait_for(lambda: cti.state.agents["1001"].phase == "wrapup", 10, what="wrap-up")
    await cti.desk.extend_wrapup("1001", 60)
    await wait_for(
        lambda: (cti.state.agents["1001"].wrapup_until or 0) > time.time() + 30,
        5,
        what="extended",
    )
    await cti.desk.finish_wrapup("1001")
    await wait_for(lambda: cti.state.agents["1001"].phase == "ready", 3, what="finished")
    assert (await member(cti, "1001"))["Paused"] == "0"
    assert (await retained_state(cfg, "1001", "ready"))["wrapup_until"] is None


async def test_log_out_removes_the_agent_from_asterisk_and_log_in_brings_them_back(
    desk_cti: tuple[cti_feature.Cti, Config],
) -> None:
    cti, _cfg = desk_cti
    try:
        await cti.desk.set_state("1002", "logout")
        reply = await cti.ami.action({"Action": "QueueStatus", "Member": "PJSIP/agent1002"})
        assert not [m for m in reply if m.get("Event") == "QueueMember"], reply
        await wait_for(lambda: cti.state.agents["1002"].phase == "offline", 5, what="offline")
        await cti.desk.set_state("1002", "login")
        reply = await cti.ami.action({"Action": "QueueStatus", "Member": "PJSIP/agent1002"})
        queues = sorted(str(m["Queue"]) for m in reply if m.get("Event") == "QueueMember")
        assert queues == ["billing", "support"]
        await wait_for(lambda: cti.state.agents["1002"].phase == "ready", 5, what="ready again")
    finally:
        # Logging in again put 1002 after 1003 in support: the demo's order back.
        subprocess.run([str(REPO / "scripts" / "sandbox.sh"), "members"], check=True)
