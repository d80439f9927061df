"""``make demo``: start the demo site, place one scripted call, tell its story.

Assumes ``make asterisk-up`` ran (the Makefile does it first).  Starts the
project's Mosquitto (scripts/broker.sh: logins and ACLs, docs/mqtt.md); the
server publishes there as ``hotline-server`` and agent 1001's desktop reads
with agent 1001's own login.  If that broker cannot start, the demo says why
and goes on with ``[mqtt]`` (the machine's broker, no logins).  Leaves the
site running: Asterisk in the sandbox, the broker and ``hotline serve`` in
the background (``make demo-stop`` stops them).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from sqlalchemy import select

from harness.mqtt import BrokerUnavailable, Login, agent_login, broker_up, project_broker_env
from harness.sipp import Agent, Keys, Pause, run_caller
from hotline.config import Config, load_config
from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.limits import DeflectionLimits
from hotline.recordings.store import Recording, recording_from_row
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore, utcnow
from hotline.storage.db import Database
from hotline.storage.tables import RecordingRow

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / ".run"
CALLER = "5551234"  # Alice Martin in dialplans/data/customers.csv
CALLER_PIN = "2468"  # hers, ibid. (docs/flows.md, the demo flow)
CALLBACK_CALLER = "5550999"  # not in the directory: an unknown caller


async def callback_caller(callbacks: CallbackStore, cfg: Config) -> str:
    """The demo's callback caller: 5550999, or the next number down with a callback
    left under ``[deflection] max_callbacks_per_number`` in the window (the demo's
    database outlives its runs, and the limit holds across them)."""
    limits = DeflectionLimits.from_config(cfg.deflection)
    since = limits.since(utcnow())
    for n in range(int(CALLBACK_CALLER), int(CALLBACK_CALLER) - 100, -1):
        if await callbacks.booked_since(str(n), since) < limits.callbacks:
            return str(n)
    return CALLBACK_CALLER  # refused, and the demo says so


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def agi_listening() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", 4573)) == 0


@dataclass(frozen=True)
class DemoBroker:
    """Where the demo's server publishes and agent 1001's desktop reads."""

    host: str
    port: int
    label: str
    desktop_login: Login = field(default_factory=lambda: Login())  # agent 1001's
    server_env: dict[str, str] = field(default_factory=dict)  # HOTLINE_MQTT__* for serve


def demo_broker(cfg: Config) -> DemoBroker:
    """The project broker (started now); the machine's [mqtt] one if it cannot start."""
    b = cfg.broker
    try:
        broker_up()
        return DemoBroker(
            b.host,
            b.port,
            f"the project broker {b.host}:{b.port} (logins and ACLs, docs/mqtt.md)",
            agent_login(cfg, "1001"),
            project_broker_env(cfg),
        )
    except (BrokerUnavailable, OSError, KeyError, ValueError) as e:
        say(f"the project broker did not start: {e}")
        say(
            f"going on with [mqtt] {cfg.mqtt.host}:{cfg.mqtt.port} (no logins); "
            "`scripts/broker.sh up` tells why it failed"
        )
        return DemoBroker(cfg.mqtt.host, cfg.mqtt.port, f"[mqtt] {cfg.mqtt.host}:{cfg.mqtt.port}")


def start_server(broker: DemoBroker) -> None:
    started_with = RUN / "hotline.broker"
    if agi_listening():
        say("hotline serve is already running (127.0.0.1:4573)")
        if started_with.exists() and started_with.read_text() != broker.label:
            say(f"it publishes to {started_with.read_text()}: `make demo-stop` to restart it")
        return
    RUN.mkdir(exist_ok=True)
    log = (RUN / "hotline.log").open("ab")
    proc = subprocess.Popen(
        [str(REPO / ".venv/bin/hotline"), "-c", str(REPO / "hotline.toml"), "serve"],
        cwd=REPO,
        env={**os.environ, **broker.server_env},
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (RUN / "hotline.pid").write_text(str(proc.pid))
    started_with.write_text(broker.label)
    for _ in range(100):
        if agi_listening():
            say(f"hotline serve started (pid {proc.pid}, log .run/hotline.log)")
            return
        if proc.poll() is not None:
            sys.exit(f"hotline serve exited; see {RUN / 'hotline.log'}")
        time.sleep(0.1)
    sys.exit("hotline serve did not start listening on 127.0.0.1:4573")


async def watch_pops(pops: list[dict[str, Any]], ready: asyncio.Event, broker: DemoBroker) -> None:
    """Agent 1001's desktop: subscribe to their screen-pop topic, with their own login."""
    async with aiomqtt.Client(broker.host, broker.port, **broker.desktop_login) as client:
        await client.subscribe("hotline/agents/1001/screenpop", qos=1)
        ready.set()
        async for message in client.messages:
            pops.append(json.loads(bytes(message.payload)))


async def agent_voice() -> Path:
    """What agent 1001 says when they answer (espeak-ng, 8 kHz mu-law for sipp)."""
    RUN.mkdir(exist_ok=True)
    raw, wav = RUN / "agent-voice-raw.wav", RUN / "agent-voice.wav"
    if not wav.exists():
        for argv in (
            [
                "espeak-ng",
                "-w",
                str(raw),
                "Hello Alice, this is agent one thousand and "
                "one. I can see your bill. How can I help?",
            ],
            ["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law", str(wav)],
        ):
            proc = await asyncio.create_subprocess_exec(*argv)
            await proc.wait()
    return wav


def story(
    it: Interaction, agent_answered: bool, pop: dict[str, Any] | None, rec: Recording | None
) -> str:
    lines = [
        "",
        "The call, as Hotline saw it",
        "---------------------------",
        f"caller      {it.caller_number}  (call id {it.call_id})",
        f"customer    {'#' + str(it.customer_id) if it.customer_id else 'unknown caller'}",
        f"language    {it.language}",
        "IVR path:",
    ]
    for s in it.steps:
        res = f"  -> {s['result']}" if "result" in s else ""
        lines.append(
            f"  {s['at_ms'] / 1000:5.1f}s  {s['node']:16} ({s['type']}, {s['ms']} ms){res}"
        )
    lines.append(f"inputs      {it.inputs}")
    lines.append(f"intent      {it.intent}")
    lines.append(f"outcome     {it.outcome}" + (f" -> queue {it.queue}" if it.queue else ""))
    lines.append(
        f"agent 1001  {'answered (sipp UAS on 5071)' if agent_answered else 'did not answer'}"
    )
    if pop is None:
        lines.append("screen pop  none arrived on hotline/agents/1001/screenpop")
    else:
        ivr = pop.get("ivr") or {}
        customer = pop.get("customer") or {}
        lines.append("screen pop  on hotline/agents/1001/screenpop, while the phone rang:")
        lines.append(
            f"            caller {pop['caller_number']} {customer.get('name', '')}, "
            f"balance {customer.get('balance')}, bill due {customer.get('bill_due_date')}"
        )
        lines.append(
            f"            IVR path {' > '.join(ivr.get('path', []))}, "
            f"intent {ivr.get('intent')}, waited {pop['wait_seconds']} s"
        )
        checks = [t for t in ivr.get("self_service", []) if t.get("task") == "verify"]
        for t in checks:
            lines.append(
                f"            caller {t['outcome']} by {t.get('method')} "
                f"({t.get('attempts')} attempt(s))"
            )
    if rec is None:
        lines.append("recording   not stored within 15 s (see .run/hotline.log)")
    else:
        lines.append(
            f"recording   {rec.id}: {rec.duration_s} s from the agent's answer, "
            f"{rec.size} bytes, sha256 {rec.sha256[:16]}..."
        )
        lines.append(
            f"            in recordings/{rec.path}, kept until {rec.retention_until} "
            f"(queue {rec.queue}); listen: hotline recordings get {rec.id} --out x.wav"
        )
    return "\n".join(lines)


async def main() -> int:
    cfg = load_config(REPO / "hotline.toml")
    db = Database(cfg.database_url())
    await db.migrate()
    added, updated = await CustomerDirectory(db).import_csv(REPO / "dialplans/data/customers.csv")
    say(f"customer directory: {added} added, {updated} updated")
    logins = await demo_agent_logins(db)
    say("rendering prompts (TTS, cached)")
    build = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/hotline"), "-c", str(REPO / "hotline.toml"), "prompts", "build"
    )
    if await build.wait() != 0:
        return 1
    broker = demo_broker(cfg)
    start_server(broker)
    say(f"MQTT: {broker.label}")
    store = InteractionStore(db)
    before = {i.id for i in await store.recent(50, caller=CALLER)}

    pops: list[dict[str, Any]] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_pops(pops, ready, broker))
    await asyncio.wait_for(ready.wait(), 10)
    say(
        "agent 1001 logs in (sipp UAS on 127.0.0.1:5071; their desktop listens on MQTT"
        + (
            " as user 1001, allowed only hotline/agents/1001/# and the queue stats)"
            if broker.desktop_login
            else ")"
        )
    )
    talk = await agent_voice()
    agent = Agent("1001", answer_delay_ms=1500, talk_wav=talk)
    await agent.start()
    say(
        f"Alice ({CALLER}) dials 100: hears the greeting anyone hears, keys her PIN "
        f"{CALLER_PIN}#, then her name and the bill offer; presses 2 (something else), "
        "1 (billing), 0 (an agent)"
    )
    result = await run_caller(
        [
            Pause(3500),
            Keys(CALLER_PIN + "#"),
            Pause(8000),
            Keys("2"),
            Pause(3000),
            Keys("1"),
            Pause(3000),
            Keys("0"),
            Pause(7000),
        ],
        number=CALLER,
        name="Alice Martin",
    )
    answered = await agent.wait(10) == 0
    await agent.stop()
    if not result.ok:
        print(result.stderr, file=sys.stderr)
        say("the call failed")
        return 1
    it = None
    for _ in range(50):
        new = [i for i in await store.recent(50, caller=CALLER) if i.id not in before]
        if new and new[0].ended_at is not None:
            it = new[0]
            break
        await asyncio.sleep(0.2)
    if it is None:
        await db.close()
        say("no interaction record was written: see .run/hotline.log")
        return 1
    rec = None
    for _ in range(60):  # hotline serve stores it a second or so after hangup
        async with db.sessions() as s:
            row = await s.scalar(select(RecordingRow).where(RecordingRow.call_id == it.call_id))
        if row is not None:
            rec = recording_from_row(row)
            break
        await asyncio.sleep(0.25)
    watcher.cancel()
    pop = next((p for p in pops if p.get("call_id") == it.call_id), None)
    await db.close()
    print(story(it, answered, pop, rec))
    code = await callback_demo(cfg, broker)
    print(
        f"\nAgent desktop: http://{cfg.http.host}:{cfg.http.port}/login  "
        f"(agents ann = 1001, bob = 1002; their passwords are in {logins.relative_to(REPO)})"
    )
    print(
        f"More: .venv/bin/hotline calls show {it.call_id}   |   hotline callbacks list   |   "
        "make asterisk-cli   |   make demo-stop"
    )
    return code


DEMO_AGENTS = {"ann": "1001", "bob": "1002"}


async def demo_agent_logins(db: Database) -> Path:
    """Users of role agent for the desktop (ann: 1001, bob: 1002), made once; their
    passwords go to .run/demo-logins (0600), never to the terminal or a log."""
    import secrets

    from hotline.records.users import Users

    path = REPO / ".run" / "demo-logins"
    users = Users(db)
    known = {name for name, _role in await users.list()}
    lines = []
    for name, agent in DEMO_AGENTS.items():
        if name in known:
            continue
        password = secrets.token_urlsafe(12)
        await users.add(name, "agent", password, agent=agent)
        lines.append(f"{name} {password}  # agent {agent}\n")
    if lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.writelines(lines)
    say(f"agent desktop users: {', '.join(f'{n} ({a})' for n, a in DEMO_AGENTS.items())}")
    return path


async def callback_demo(cfg: Config, broker: DemoBroker) -> int:
    """Part two: the billing line is unstaffed, a caller books a callback and gets it."""
    from cti.ami import AmiClient

    secret = cfg.ami_secret()
    ami = AmiClient(cfg.ami.host, cfg.ami.port, cfg.ami.username, secret or "")
    await ami.start()
    for _ in range(50):
        if ami.logged_in:
            break
        await asyncio.sleep(0.1)

    async def pause(agent: str, paused: bool) -> None:
        await ami.queue_pause(f"PJSIP/agent{agent}", paused, "demo")

    db = Database(cfg.database_url())
    callbacks = CallbackStore(db)
    caller = await callback_caller(callbacks, cfg)
    pops: list[dict[str, Any]] = []
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_pops(pops, ready, broker))
    await asyncio.wait_for(ready.wait(), 10)
    print()
    say("part two: agents 1001 and 1002 step away (paused): nobody can answer billing")
    for a in ("1001", "1002"):
        await pause(a, True)
    await asyncio.sleep(1)
    say(
        f"{caller} dials 100, presses 1 (billing) and 3 (a billing agent); hears "
        "that no agent is available and presses 2: call me back"
    )
    result = await run_caller(
        [Pause(1500), Keys("1"), Pause(2500), Keys("3"), Pause(3000), Keys("2")],
        number=caller,
        hangup="asterisk",
        timeout=60,
    )
    cb = await callbacks.open_for(caller)
    if not result.ok or cb is None:
        say("no callback was booked: see .run/hotline.log")
        await pause("1001", False)
        await pause("1002", False)
        ami.close()
        await db.close()
        return 1
    say(f"callback {cb.id} booked for queue {cb.queue}; the caller hung up")
    agent = Agent("1001", talk_wav=await agent_voice())
    phone = Agent(caller, port=5080, answer_delay_ms=1500)
    await agent.start()
    await phone.start()
    say("agent 1001 is back: Hotline rings 1001, then the caller's phone (sipp on 5080)")
    await pause("1001", False)
    done = None
    for _ in range(120):
        got = await callbacks.get(cb.id)
        if got is not None and got.status in ("completed", "failed"):
            done = got
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(2)  # they talk
    await ami.action({"Action": "Hangup", "Channel": "/^PJSIP\\/agent1001-.*$/"})
    await agent.wait(10)
    await phone.wait(10)
    await agent.stop()
    await phone.stop()
    await pause("1002", False)
    watcher.cancel()
    ami.close()
    pop = next((p for p in pops if p.get("callback") and p["caller_number"] == caller), None)
    rec = None
    for _ in range(60):  # every agent call is recorded, callbacks too
        async with db.sessions() as s:
            row = await s.scalar(select(RecordingRow).where(RecordingRow.callback_id == cb.id))
        if row is not None:
            rec = recording_from_row(row)
            break
        await asyncio.sleep(0.25)
    await db.close()
    lines = ["", "The callback, as Hotline saw it", "-------------------------------"]
    if done is None:
        lines.append(f"callback    {cb.id}: not finished within 30 s (hotline callbacks list)")
    else:
        for h in done.history:
            detail = ", ".join(f"{k} {v}" for k, v in h.items() if k not in ("at", "event"))
            lines.append(f"  {h['at'][11:19]}  {h['event']:15} {detail}")
        lines.append(f"status      {done.status} after {done.attempts} attempt(s)")
    if pop is None:
        lines.append("screen pop  none marked callback arrived for agent 1001")
    else:
        ivr = pop.get("ivr") or {}
        lines.append(
            f"screen pop  callback: {pop['callback']}, caller {pop['caller_number']}, "
            f"IVR path {' > '.join(ivr.get('path', []))}, waited {pop['wait_seconds']} s"
        )
    if rec is None:
        lines.append("recording   not stored within 15 s (see .run/hotline.log)")
    else:
        lines.append(
            f"recording   {rec.id}: {rec.duration_s} s, callback {rec.callback_id[:8]}..., "
            f"agent {rec.agent}, {'encrypted' if rec.encrypted else 'plain'} at rest"
        )
    print("\n".join(lines))
    return 0 if done is not None and done.status == "completed" else 1


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(asyncio.run(main()))
