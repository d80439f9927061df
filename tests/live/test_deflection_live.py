"""Callbacks through real Asterisk: the offer, the booking, the agent's leg, then the caller's.

Both billing agents are paused, so nobody can answer billing and the flow
offers a link or a callback.  The caller presses 2 and hangs up; then agent
1001 comes back, and Asterisk (AMI Originate) rings 1001's phone (a sipp
UAS), and once it answers, the caller's phone through the ``pstn`` trunk (a
second sipp UAS on 127.0.0.1:5080).  The second test restarts the server in
between: ``hotline serve --role cti`` in its own process, killed and started
again, with only the database in common.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cti.ami import AmiClient, AmiEvent
from cti.callbacks import CallbackDispatcher, CallbackPolicy
from harness.mqtt import Inbox, project_broker_env
from harness.sipp import Agent, Keys, Pause, Step, run_caller
from harness.wait import poll_until, wait_for
from hotline.config import load_config
from hotline.deflection.callbacks import Callback, CallbackStore
from hotline.deflection.notify import FileNotifier
from hotline.recordings.store import Recording
from hotline.records.users import Actor
from ivr.flow.engine import Services
from tests.support.paths import REPO

if TYPE_CHECKING:
    from tests.support.live import LiveCti

# What the ``deflection_on`` fixture gives: the live CTI, its MQTT inbox, the callback store.
DeflectionOn = tuple["LiveCti", Inbox, CallbackStore]

pytestmark = pytest.mark.asterisk

BILLING_AGENTS = ("1001", "1002")
# Billing (1), a billing agent (3), then during the offer: call me back (2).
CALLBACK_STEPS: list[Step] = [
    Pause(1500),
    Keys("1"),
    Pause(2500),
    Keys("3"),
    Pause(3000),
    Keys("2"),
]


async def pause(ami: AmiClient, agent: str, paused: bool) -> None:
    assert await ami.queue_pause(f"PJSIP/agent{agent}", paused, "test")


async def completed(store: CallbackStore, callback_id: str) -> Callback | None:
    """The callback once it is completed (waits up to 30 s); None if it is not by then
    (the caller asserts, with what it knows: the store, the phones' errors)."""

    async def done() -> Callback | None:
        got = await store.get(callback_id)
        return got if got is not None and got.status == "completed" else None

    return await poll_until(done, timeout=30)


async def status_of(store: CallbackStore, callback_id: str) -> str | None:
    """The callback's status now (None: no such callback)."""
    got = await store.get(callback_id)
    return got.status if got is not None else None


@pytest.fixture
async def deflection_on(
    cti_live: tuple[LiveCti, Inbox, str], live_server: Services, tmp_path: Path
) -> AsyncIterator[DeflectionOn]:
    """The IVR offers deflection with the live CTI's estimate; billing agents paused."""
    cti, inbox, _prefix = cti_live
    store = CallbackStore(live_server.interactions._db)
    live_server.callbacks = store
    live_server.notifier = FileNotifier(tmp_path / "outbox.jsonl")
    live_server.wait_estimate = cti.state.wait_estimate
    live_server.on_deflection = cti.count_deflection
    for a in BILLING_AGENTS:
        await pause(cti.ami, a, True)
    await wait_for(
        lambda: all(cti.state.agents[a].paused for a in BILLING_AGENTS),
        timeout=5,
        what="both billing agents paused in the CTI's state",
    )
    try:
        yield cti, inbox, store
    finally:
        for a in BILLING_AGENTS:
            await pause(cti.ami, a, False)
        live_server.callbacks = live_server.notifier = live_server.wait_estimate = None
        live_server.on_deflection = live_server.on_callback_booked = None


async def book_callback(store: CallbackStore, caller: str) -> Callback:
    result = await run_caller(CALLBACK_STEPS, number=caller, hangup="asterisk", timeout=60)
    assert result.ok, result.stderr
    cb = await store.open_for(caller)
    assert cb is not None, "the caller pressed 2: a callback is booked"
    assert cb.queue == "billing" and cb.status == "pending"
    return cb


async def hang_up_agent(ami: AmiClient, agent: str) -> None:
    await ami.action({"Action": "Hangup", "Channel": f"/^PJSIP\\/agent{agent}-.*$/"})


@contextlib.asynccontextmanager
async def dispatching(cti: LiveCti, store: CallbackStore) -> AsyncIterator[CallbackDispatcher]:
    """A callback dispatcher on the live CTI, as `hotline serve` runs one."""
    dispatcher = CallbackDispatcher(
        store, cti.state, cti.ami, CallbackPolicy(retry_after_s=3, agent_ring_s=15)
    )
    cti.bus.subscribe(CallbackDispatcher.EVENTS, dispatcher.on_event)
    await dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        cti.bus.unsubscribe(CallbackDispatcher.EVENTS, dispatcher.on_event)


async def phones_done(*phones: Agent) -> None:
    """Each phone took all its calls and answered every BYE: the legs were real,
    and no BYE is left for Asterisk to resend to the next test's phone."""
    for phone in phones:
        assert await phone.wait(10) == 0, phone.errors()


async def test_callback_rings_the_agent_then_the_caller_with_a_pop_marked_callback(
    deflection_on: DeflectionOn, live_server: Services, tmp_path: Path
) -> None:
    cti, inbox, store = deflection_on
    caller = "5550777"
    # The agent speaks (a phone sends RTP): MixMonitor records what is bridged.
    talk = tmp_path / "agent.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "mu-law",
            str(talk),
            "synth",
            "3",
            "sine",
            "440",
        ],
        check=True,
    )
    agent = Agent("1001", talk_wav=talk)
    phone = Agent(caller, port=5080, answer_delay_ms=1000)
    async with dispatching(cti, store) as dispatcher:
        live_server.on_callback_booked = dispatcher.poke
        try:
            cb = await book_callback(store, caller)
            await inbox.expect("/queues/billing/stats", timeout=5)
            last = inbox.on("/queues/billing/stats")[-1][0]
            assert last["deflection"].get("offered", 0) >= 1
            assert last["deflection"].get("callback_booked", 0) >= 1
            assert last["est_wait_s"] is None and last["est_wait_method"] == "no_agents"
            await asyncio.sleep(2)
            assert await status_of(store, cb.id) == "pending"  # nobody free: it waits

            await agent.start()
            await phone.start()
            await pause(cti.ami, "1001", False)

            pop, _ = await inbox.expect(
                "/agents/1001/screenpop", timeout=20, callback=True, caller_number=caller
            )
            assert pop["caller_number"] == caller and pop["queue"] == "billing"
            assert pop["ivr"]["path"][-1] == "billing_wait"
            assert pop["ivr"]["outcome"] == "deflected"

            done = await completed(store, cb.id)
            assert done is not None, (await store.get(cb.id), agent.errors(), phone.errors())
            assert done.agent == "1001" and done.attempts == 1 and done.last_result == "answer"
            await asyncio.sleep(1.5)  # agent and caller talk
            await hang_up_agent(cti.ami, "1001")
            await phones_done(agent, phone)  # one call each
        finally:
            await agent.stop()
            await phone.stop()
    # Every agent call is recorded, callbacks too: stored with the callback and
    # found by the caller's number like a queue call.
    officer = Actor("carol", frozenset({"compliance"}))

    async def stored() -> list[Recording]:
        return await cti.recordings.search(officer, caller=caller)

    [rec] = await wait_for(stored, timeout=15, what="the callback's recording stored")
    assert (rec.callback_id, rec.agent, rec.queue) == (cb.id, "1001", "billing")
    assert rec.call_id.startswith(f"cb-{cb.id[:12]}-1-") and rec.encrypted
    assert rec.duration_s > 1.0, rec  # the conversation, not an empty file
    found = subprocess.run(
        [str(REPO / ".venv/bin/hotline"), "recordings", "search", "--caller", caller, "--json"],
        cwd=REPO,
        env={
            **os.environ,
            "HOTLINE_DATABASE__URL": live_server.interactions._db.url,
            "HOTLINE_RECORDINGS__STORE_DIR": str(cti.recordings.store_dir),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    [listed] = json.loads(found.stdout)
    assert listed["id"] == rec.id and listed["callback_id"] == cb.id
    assert not list(cti.recordings.spool_dir.glob("cb-*.wav")), "callback files left in the spool"


def queue_caller(ami: AmiClient, number: str) -> asyncio.Task[list[AmiEvent]]:
    """A caller straight into the real billing queue: a Local channel that waits on
    the line, then stays connected to whoever answers.  The task ends with the
    Originate's outcome (the AMI client waits for it)."""
    return asyncio.create_task(
        ami.action(
            {
                "Action": "Originate",
                "Channel": "Local/billing@hotline-queue/n",
                "Application": "Wait",
                "Data": "60",
                "CallerID": f"Caller <{number}>",
                "Timeout": "90000",
                "Async": "true",
                "Variable": ["HOTLINE_QUEUE=billing"],
            },
            timeout=120,
        )
    )


async def test_on_a_busy_queue_a_callback_gets_the_next_free_agent_before_later_callers(
    deflection_on: DeflectionOn,
) -> None:
    """The callback keeps its place even while callers are on the line: when the
    agent's call ends, the dispatcher (woken by AgentComplete) rings them for the
    callback before app_queue offers them to its waiting caller; the caller who
    joined after the booking waits, then gets that agent once the callback is
    over."""
    cti, inbox, store = deflection_on
    caller = "5550779"  # its own number: the inbox keeps earlier tests' pops
    agent = Agent("1001", calls=3)
    phone = Agent(caller, port=5080, answer_delay_ms=500)
    billing = cti.state.queue("billing")
    callers: list[asyncio.Task[list[AmiEvent]]] = []
    async with dispatching(cti, store) as dispatcher:
        try:
            await agent.start()
            await phone.start()
            await pause(cti.ami, "1001", False)  # 1002 stays away: one agent for billing
            callers.append(queue_caller(cti.ami, "5550111"))
            await wait_for(
                lambda: cti.state.agents["1001"].state == "busy",
                timeout=20,
                what="agent 1001 busy with the first queue caller",
            )
            # The callback is booked while 1001 talks, then a later caller joins.
            cb = await store.book(queue="billing", number=caller, call_id="live-busy-queue")
            dispatcher.poke()
            await asyncio.sleep(1.5)
            assert await status_of(store, cb.id) == "pending"  # no agent free yet
            callers.append(queue_caller(cti.ami, "5550222"))
            await wait_for(
                lambda: len(billing.callers) == 1,
                timeout=10,
                what="the later caller waiting in billing",
            )

            await hang_up_agent(cti.ami, "1001")  # 1001's first call ends
            pop, _ = await inbox.expect(
                "/agents/1001/screenpop", timeout=20, callback=True, caller_number=caller
            )
            assert pop["queue"] == "billing"
            done = await completed(store, cb.id)
            assert done is not None, (await store.get(cb.id), agent.errors(), phone.errors())
            assert done.agent == "1001" and done.attempts == 1
            # The later caller is still waiting: the freed agent was not handed to them.
            assert len(billing.callers) == 1
            await asyncio.sleep(1)
            await hang_up_agent(cti.ami, "1001")  # the callback conversation ends
            # No callback left in line: the queue gives 1001 to that caller.
            await wait_for(
                lambda: not billing.callers, timeout=20, what="billing's waiting caller answered"
            )
            await wait_for(
                lambda: cti.state.agents["1001"].state == "busy",
                timeout=10,
                what="agent 1001 busy with the later caller",
            )
            await hang_up_agent(cti.ami, "1001")
            await phones_done(agent, phone)  # three calls for 1001, one for the caller
        finally:
            local = "/^Local\\/billing@hotline-queue-.*$/"
            await cti.ami.action({"Action": "Hangup", "Channel": local})
            for task in callers:
                task.cancel()
            await hang_up_agent(cti.ami, "1001")
            await agent.stop()
            await phone.stop()


def _serve_env(live_server: Services, prefix: str) -> dict[str, str]:
    db = live_server.interactions._db
    return {
        **os.environ,
        # The project broker, as the session's CTI (tests/live/conftest.py cti_live).
        **project_broker_env(load_config(REPO / "hotline.toml", environ={})),
        "HOTLINE_DATABASE__URL": db.url,
        "HOTLINE_MQTT__PREFIX": prefix,
        "HOTLINE_MQTT__CLIENT_ID": f"{prefix}-restarted",
        "HOTLINE_AMI__SECRET_FILE": str(REPO / ".run" / "ami_secret"),
        "HOTLINE_HTTP__ENABLED": "false",
        "HOTLINE_RECORDINGS__ENABLED": "false",
        "HOTLINE_DEFLECTION__CALLBACK_RETRY_AFTER_S": "3",
        "HOTLINE_SERVER__LOG_FORMAT": "text",
    }


async def start_serve(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hotline.cli",
        "serve",
        "--role",
        "cti",
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=out,
    )
    out.close()

    async def serving() -> bool:
        text = log.read_text(errors="replace")
        return "hotline serving" in text and text.count("AMI logged in") >= 1

    await wait_for(serving, timeout=20, what=f"'hotline serving' and 'AMI logged in' in {log}")
    return proc


async def test_a_callback_survives_a_server_restart(
    deflection_on: DeflectionOn, live_server: Services, tmp_path: Path
) -> None:
    cti, inbox, store = deflection_on
    caller = "5550778"
    env = _serve_env(live_server, cti.publisher.prefix)
    log = tmp_path / "serve.log"
    server = await start_serve(env, log)
    agent = Agent("1001")
    phone = Agent(caller, port=5080, answer_delay_ms=500)
    try:
        cb = await book_callback(store, caller)
        # The server that would call back goes down, and comes back as a new process.
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 15) == 0
        server = await start_serve(env, log)
        assert await status_of(store, cb.id) == "pending"

        await agent.start()
        await phone.start()
        await pause(cti.ami, "1001", False)

        got = await inbox.wait(
            "/agents/1001/screenpop", timeout=20, callback=True, caller_number=caller
        )
        assert got is not None, log.read_text()[-4000:]
        assert got[0]["caller_number"] == caller

        done = await completed(store, cb.id)
        assert done is not None, (await store.get(cb.id), log.read_text()[-3000:])
        # What an admin sees: the attempt that the restart interrupted did not happen
        # (booked before the restart, dialled once after it).
        listing = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hotline.cli", "callbacks", "list", "--json",
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await listing.communicate()
        shown = {c["id"]: c for c in json.loads(out)}
        assert shown[cb.id]["status"] == "completed" and shown[cb.id]["attempts"] == 1
        assert [h["event"] for h in shown[cb.id]["history"]] == [
            "booked",
            "dialing",
            "attempt_result",
        ]
        await hang_up_agent(cti.ami, "1001")
        assert await agent.wait(10) == 0, agent.errors()
        assert await phone.wait(10) == 0, phone.errors()
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait(), 15)
        await agent.stop()
        await phone.stop()
