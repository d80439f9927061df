"""CTI benchmarks (issue: CTI screen pops).

1. ``pop``: AgentCalled -> screen pop delivered, with real Asterisk and real
   Mosquitto, while 50 callers wait in the queues.  Agents' phones (sipp) ring
   300 ms and decline, so Asterisk keeps ringing members for waiting callers and
   every ring is one AgentCalled and one pop.  Latency is measured in this
   process from the moment the AMI client hands over the AgentCalled event to
   the moment a subscriber on the broker receives the pop (so it includes the
   customer/IVR look-ups in the database and the MQTT round trip).
2. ``replay``: AMI event throughput.  A TCP peer replays the recorded
   transcript (tests/data/ami/queue_calls.ami, ids rewritten per repetition) as
   fast as the socket takes it; we count events handled by the full pipeline
   (framing, state, screen-pop look-ups in SQLite, MQTT publishing) and check
   none is lost.  Baselines in the same run: panoramisk 1.4's own protocol
   (framing only) and our framing + state machine without any I/O.

    .venv/bin/python bench/cti_bench.py [pop|replay|all]   (pop needs root: starts the sandbox)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cti import setup as cti_feature  # noqa: E402
from cti.ami import AmiEvent, parse_message, split_messages  # noqa: E402
from cti.state import CallCenter  # noqa: E402
from harness.mqtt import Inbox, subscribe  # noqa: E402
from hotline.config import Config, load_config  # noqa: E402
from hotline.records.customers import CustomerDirectory  # noqa: E402
from hotline.records.interactions import InteractionStore  # noqa: E402
from hotline.storage.db import Database  # noqa: E402

TRANSCRIPT = REPO / "tests" / "data" / "ami" / "queue_calls.ami"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def bench_config(prefix: str, ami_port: int = 5038) -> Config:
    """The demo site's configuration, publishing under a private prefix (no speech models)."""
    return load_config(
        REPO / "hotline.toml",
        environ={
            "HOTLINE_MQTT__PREFIX": prefix,
            "HOTLINE_MQTT__CLIENT_ID": f"{prefix}-srv",
            "HOTLINE_MQTT__BUFFER_SIZE": "100000",
            "HOTLINE_AMI__PORT": str(ami_port),
            "HOTLINE_SPEECH__ENABLED": "false",
        },
    )


# -- 1. AgentCalled -> screen pop with real Asterisk -----------------------------------------


async def bench_pop(callers: int = 50, hold_s: int = 40) -> dict[str, object]:
    from harness.sipp import Agent, Keys, Pause, run_caller
    from ivr import setup as ivr_feature

    subprocess.run([str(REPO / "scripts/sandbox.sh"), "up"], check=True, capture_output=True)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    cfg = bench_config(prefix)
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await db.migrate()
    directory = CustomerDirectory(db)
    await directory.import_csv(REPO / "dialplans/data/customers.csv")
    # As in `hotline serve`: IVR and CTI share one interaction store.
    interactions = InteractionStore(db)
    called: dict[tuple[str, str], list[float]] = {}
    waiting_max = 0

    def on_agent_called(ev: AmiEvent) -> None:
        key = (str(ev.get("Linkedid")), str(ev.get("MemberName")))
        called.setdefault(key, []).append(time.monotonic())

    secret = (REPO / ".run/ami_secret").read_text().strip()
    stack = contextlib.AsyncExitStack()
    await stack.__aenter__()
    await stack.enter_async_context(
        ivr_feature.setup(cfg, ivr_feature.IvrDeps(directory, interactions))
    )
    cti = await stack.enter_async_context(
        cti_feature.setup(cfg, cti_feature.CtiDeps(directory, interactions, secret))
    )
    # Subscribed before the service: the time is taken as the client hands the event over.
    cti.bus.subscribe("AgentCalled", on_agent_called)
    inbox, ready = Inbox(), asyncio.Event()
    sub = asyncio.create_task(subscribe("127.0.0.1", 1883, f"{prefix}/#", inbox, ready))
    await ready.wait()
    await cti.connect()
    while not cti.ami.logged_in:
        await asyncio.sleep(0.05)
    agents = [Agent(n, calls=100_000, decline_after_ms=300) for n in ("1001", "1002", "1003")]
    for a in agents:
        await a.start()
    half = callers // 2
    t0 = time.monotonic()
    results = await asyncio.gather(
        run_caller(
            [Pause(1000), Keys("1"), Pause(1500), Keys("0"), Pause(hold_s * 1000)],
            number="55510[call_number]",
            calls=half,
            rate=25,
            timeout=hold_s + 60,
        ),
        run_caller(
            [Pause(1000), Keys("0"), Pause(hold_s * 1000)],
            number="55520[call_number]",
            calls=callers - half,
            rate=25,
            timeout=hold_s + 60,
        ),
    )
    elapsed = time.monotonic() - t0
    await asyncio.sleep(1)
    for a in agents:
        await a.stop()
    latencies: list[float] = []
    pops: dict[tuple[str, str], list[float]] = {}
    for topic, payload, t in inbox.messages:
        if topic.endswith("/screenpop"):
            pops.setdefault((payload["call_id"], payload["agent"]), []).append(t)
        elif topic.endswith("/stats"):
            waiting_max = max(waiting_max, int(payload["waiting"]))
    for key, times in called.items():
        for t_called, t_pop in zip(times, pops.get(key, []), strict=False):
            latencies.append((t_pop - t_called) * 1000)
    missing = sum(len(v) for v in called.values()) - len(latencies)
    sub.cancel()
    await stack.aclose()
    await interactions.close()
    await db.close()
    return {
        "callers": callers,
        "max_waiting_seen": waiting_max,
        "caller_runs_ok": [r.ok for r in results],
        "seconds": round(elapsed, 1),
        "agent_called_events": sum(len(v) for v in called.values()),
        "pops": len(latencies),
        "pops_missing": missing,
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
    }


# -- 2. AMI event throughput --------------------------------------------------------------


def stream(repeats: int) -> tuple[bytes, int]:
    data = TRANSCRIPT.read_bytes()
    parts, total = [], 0
    for r in range(repeats):
        # Distinct calls per repetition: ids 1795390746.0 -> r12.1795390746.0
        parts.append(re.sub(rb"\b(\d{10}\.\d+)\b", b"r%d.\\1" % r, data))
    blob = b"".join(parts)
    msgs, _ = split_messages(blob)
    total = sum(1 for m in msgs if m.startswith(b"Event:") or b"\r\nEvent:" in m[:40])
    return blob, total


class FakeAsterisk:
    """A TCP peer speaking enough AMI: login, empty QueueStatus/CoreShowChannels, then the blob."""

    def __init__(self, blob: bytes, actions: int = 3) -> None:
        self.blob = blob
        self.actions = actions  # login (+ the two state queries Hotline sends)
        self.sent_at = 0.0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        buf = b""
        actions_done = 0
        while actions_done < self.actions:
            chunk = await reader.read(4096)
            if not chunk:
                return
            buf += chunk
            msgs, buf = split_messages(buf)
            for m in msgs:
                action = dict(
                    line.split(": ", 1) for line in m.decode().split("\r\n") if ": " in line
                )
                aid = action.get("ActionID", "")
                name = str(action.get("Action", "")).lower()
                if name == "login":
                    writer.write(
                        f"Response: Success\r\nActionID: {aid}\r\nMessage: ok\r\n\r\n".encode()
                    )
                elif name in ("queuestatus", "coreshowchannels"):
                    done = (
                        "QueueStatusComplete"
                        if name == "queuestatus"
                        else "CoreShowChannelsComplete"
                    )
                    writer.write(
                        f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
                        f"Message: follows\r\n\r\nEvent: {done}\r\nActionID: {aid}\r\n"
                        f"EventList: Complete\r\nListItems: 0\r\n\r\n".encode()
                    )
                else:
                    continue
                actions_done += 1
            await writer.drain()
        await asyncio.sleep(0.2)
        self.sent_at = time.monotonic()
        writer.write(self.blob)
        await writer.drain()
        # Until the client goes, answer its keepalive (an unanswered Ping drops the link).
        buf = b""
        while chunk := await reader.read(4096):
            msgs, buf = split_messages(buf + chunk)
            for m in msgs:
                for line in m.decode().split("\r\n"):
                    if line.startswith("ActionID: "):
                        aid = line.removeprefix("ActionID: ")
                        writer.write(
                            f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode()
                        )
            await writer.drain()


async def bench_replay(repeats: int = 200) -> dict[str, object]:
    blob, total = stream(repeats)
    out: dict[str, object] = {"events": total, "bytes": len(blob)}

    # Pure: framing + state machine, no I/O (upper bound).
    t = time.perf_counter()
    center = CallCenter()
    buf, n = b"", 0
    for i in range(0, len(blob), 65536):
        msgs, buf = split_messages(buf + blob[i : i + 65536])
        for m in msgs:
            ev = parse_message(m)
            if ev is not None and "Event" in ev:
                center.apply(ev)
                n += 1
    out["pure_events_per_s"] = round(n / (time.perf_counter() - t))

    # Baseline: panoramisk's own protocol and Manager, counting events only.
    from panoramisk import Manager

    fake = FakeAsterisk(blob, actions=1)
    await fake.start()
    seen = 0
    done = asyncio.Event()

    async def count(_m: object, _msg: object) -> None:
        nonlocal seen
        seen += 1
        if seen >= total:
            done.set()

    mgr = Manager(host="127.0.0.1", port=fake.port, username="u", secret="s", ping_delay=1000)
    mgr.register_event("*", count)
    mgr.connect()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 120)
    out["panoramisk_events_per_s"] = round(seen / (time.monotonic() - fake.sent_at))
    out["panoramisk_lost"] = total - seen
    mgr.close()

    # Hotline: full pipeline (our framing, state, DB look-ups for pops, MQTT).
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await db.migrate()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    fake2 = FakeAsterisk(blob)
    await fake2.start()
    interactions = InteractionStore(db)
    feature = cti_feature.setup(
        bench_config(prefix, ami_port=fake2.port),
        cti_feature.CtiDeps(CustomerDirectory(db), interactions, "s"),
    )
    cti_parts = await feature.__aenter__()
    cti, pub, ami = cti_parts.service, cti_parts.publisher, cti_parts.ami
    await cti_parts.connect()
    deadline = time.monotonic() + 120
    while ami.events_seen < total and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await cti.drained()
    t_end = time.monotonic()
    handled = ami.events_seen
    out["hotline_events_per_s"] = round(handled / (t_end - fake2.sent_at))
    out["hotline_lost"] = total - handled
    out["pops_published"] = cti.pops_sent
    while pub._buffer:
        await asyncio.sleep(0.05)
    out["mqtt_messages"] = pub.published
    out["mqtt_all_delivered_s"] = round(time.monotonic() - fake2.sent_at, 2)
    await feature.__aexit__(None, None, None)
    await interactions.close()
    await db.close()
    return out


def machine() -> str:
    cpu = subprocess.run(
        ["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} "
        f"cores, Python {platform.python_version()}"
    )


async def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    results: dict[str, object] = {"machine": machine()}
    if what in ("replay", "all"):
        results["replay"] = await bench_replay()
    if what in ("pop", "all"):
        results["pop"] = await bench_pop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
