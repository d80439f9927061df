"""CTI benchmarks (issue: CTI screen pops).

1. ``pop``: AgentCalled -> screen pop delivered, with real Asterisk and real
   Mosquitto, while 50 callers wait in the queues.  Agents' phones (sipp) ring
   300 ms and decline, so Asterisk keeps ringing members for waiting callers and
   every ring is one AgentCalled and one pop.  Latency is measured in this
   process from the moment the AMI client hands over the AgentCalled event to
   the moment a subscriber on the broker receives the pop (so it includes the
   customer/IVR look-ups in the database and the MQTT round trip).
2. ``replay``: AMI event throughput.  A TCP peer replays the recorded
   transcript (tests/data/ami/queue_calls.ami, ids rewritten per repetition,
   and its two callers rewritten to two of the generated customers per
   repetition) as fast as the socket takes it, into the full pipeline
   (framing, state, screen-pop look-ups in SQLite, MQTT publishing at QoS 1).
   The clock stops when the last MQTT message has been acknowledged by the
   broker (the publisher's PUBACK): events/s = events / (first byte sent ->
   last PUBACK).  Also reported: the same to the moment every event was
   handled and every pop built (``cti.drained()``: what earlier runs called
   events/s), and none lost.  Baselines in the same run: panoramisk 1.4's own
   protocol (framing only), our framing + state machine without any I/O, and
   the MQTT publisher alone (as many messages of the same sizes, to their
   PUBACKs): the ceiling MQTT QoS 1 puts on the pipeline.

Both run on a populated database: the demo customers plus --customers
(default 100,000) generated ones and --history (default 100,000) past
interactions of theirs, so that every screen pop's look-ups (the interaction
by id and by call id, the customer by phone, the caller's recent
interactions) go through real indexes of real size.

    .venv/bin/python bench/cti_bench.py [pop|replay|all] [--json-out FILE]
    (pop needs root: starts the sandbox)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cti import setup as cti_feature  # noqa: E402
from cti.ami import AmiEvent, parse_message, split_messages  # noqa: E402
from cti.mqtt import MqttPublisher  # noqa: E402
from cti.state import CallCenter  # noqa: E402
from harness.mqtt import Inbox, subscribe  # noqa: E402
from hotline.config import Config, load_config  # noqa: E402
from hotline.records.customers import CustomerDirectory  # noqa: E402
from hotline.records.interactions import InteractionStore  # noqa: E402
from hotline.storage.db import Database  # noqa: E402
from hotline.storage.tables import CustomerRow, InteractionRow  # noqa: E402

TRANSCRIPT = REPO / "tests" / "data" / "ami" / "queue_calls.ami"
TRANSCRIPT_CALLERS = (b"5550201", b"5550202")  # the recorded calls' caller IDs


def generated_phone(i: int) -> str:
    """The i-th generated customer's number (digits, as the directory keeps them)."""
    return f"1555{i:07d}"


async def populate(db: Database, customers: int, history: int, seed: int) -> dict[str, object]:
    """The demo customers, ``customers`` generated ones and ``history`` past interactions.

    Inserted in bulk (PINs are not set for the generated rows: the CTI never
    checks one), then ``ANALYZE``, as a site's database would have.
    """
    t0 = time.perf_counter()
    await CustomerDirectory(db).import_csv(REPO / "dialplans/data/customers.csv")
    rng = random.Random(seed)
    today = date(2026, 11, 30)
    rows: list[dict[str, object]] = []
    for i in range(customers):
        due = rng.random() < 0.3
        rows.append(
            {
                "name": f"Generated Customer{i}",
                "phone": generated_phone(i),
                "account": f"9{i:08d}",
                "language": "ko" if rng.random() < 0.1 else "en",
                "balance_cents": rng.randrange(0, 30000) if due else 0,
                "last_bill_date": today - timedelta(days=rng.randrange(1, 60)),
                "last_bill_cents": rng.randrange(1000, 30000),
                "bill_due_date": today + timedelta(days=rng.randrange(1, 30)) if due else None,
                "open_ticket": f"T-{rng.randrange(10000)}" if rng.random() < 0.05 else None,
            }
        )
    async with db.engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            await conn.execute(insert(CustomerRow), rows[start : start + 10_000])
        first_id = int(
            (
                await conn.execute(
                    text("SELECT min(id) FROM customers WHERE phone = :p"),
                    {"p": generated_phone(0)},
                )
            ).scalar_one()
        )
    t_customers = time.perf_counter() - t0
    now = datetime(2026, 11, 30, tzinfo=UTC)
    queues = ("billing", "support")
    hist: list[dict[str, object]] = []
    for _ in range(history):
        k = rng.randrange(customers)
        started = now - timedelta(seconds=rng.randrange(365 * 86400))
        queue = rng.choice(queues)
        hist.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "call_id": f"{int(started.timestamp())}.{rng.randrange(100000)}",
                "channel": "PJSIP/callers-00000001",
                "flow": "hotline",
                "caller_number": generated_phone(k),
                "caller_name": "",
                "customer_id": first_id + k,
                "language": "en",
                "started_at": started,
                "ended_at": started + timedelta(seconds=rng.randrange(20, 120)),
                "outcome": "queued",
                "queue": queue,
                "intent": queue,
                "steps": [{"node": "identify"}, {"node": "main_menu"}],
                "inputs": {"main_menu": "1" if queue == "billing" else "2"},
                "transcripts": [],
                "self_service": [],
            }
        )
    async with db.engine.begin() as conn:
        for start in range(0, len(hist), 10_000):
            await conn.execute(insert(InteractionRow), hist[start : start + 10_000])
        await conn.execute(text("ANALYZE"))
        counts = {
            table: int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())
            for table in ("customers", "interactions")
        }
    return {
        "customers_rows": counts["customers"],
        "interactions_rows": counts["interactions"],
        "load_s": round(time.perf_counter() - t0, 1),
        "customers_load_s": round(t_customers, 1),
    }


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


async def bench_pop(
    customers: int, history: int, callers: int = 50, hold_s: int = 40
) -> dict[str, object]:
    from harness.sipp import Agent, Keys, Pause, run_caller
    from ivr import setup as ivr_feature

    sandbox = str(REPO / "scripts/sandbox.sh")
    # Asterisk is stopped again at the end only if this run started it.
    was_up = subprocess.run([sandbox, "status"], capture_output=True).returncode == 0
    subprocess.run([sandbox, "up"], check=True, capture_output=True)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    cfg = bench_config(prefix)
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await db.migrate()
    # The callers (55510xx, 55520xx) are not customers: a known number would be
    # asked for its PIN, and these sipp scenarios key only the menus.
    populated = await populate(db, customers, history, seed=1)
    directory = CustomerDirectory(db)
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
    if not was_up:
        subprocess.run([sandbox, "down"], check=False, capture_output=True)
    return {
        "database": populated,
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


def stream(repeats: int, customers: int, seed: int = 1) -> tuple[bytes, int]:
    data = TRANSCRIPT.read_bytes()
    parts, total = [], 0
    # Each repetition's two callers are two generated customers, all different.
    picks = random.Random(seed).sample(range(customers), len(TRANSCRIPT_CALLERS) * repeats)
    for r in range(repeats):
        # Distinct calls per repetition: ids 1795390746.0 -> r12.1795390746.0
        rep = re.sub(rb"\b(\d{10}\.\d+)\b", b"r%d.\\1" % r, data)
        for j, number in enumerate(TRANSCRIPT_CALLERS):
            phone = generated_phone(picks[r * len(TRANSCRIPT_CALLERS) + j]).encode()
            rep = re.sub(rb"\b" + number + rb"\b", phone, rep)
        parts.append(rep)
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


async def mqtt_only(prefix: str, sizes: list[int]) -> dict[str, object]:
    """The publisher alone: ``len(sizes)`` QoS 1 messages of these payload sizes, to PUBACK.

    The same MqttPublisher, broker and topic shapes as the pipeline, nothing
    else on the event loop: the rate MQTT QoS 1 allows this publisher, one
    message in flight at a time (it waits for each PUBACK before the next).
    """
    cfg = bench_config(prefix)
    pub = MqttPublisher(
        cfg.mqtt.host,
        cfg.mqtt.port,
        client_id=f"{prefix}-only",
        prefix=prefix,
        buffer_size=len(sizes) + 10,
    )
    pub.start()
    while not pub.connected:
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    for i, size in enumerate(sizes):
        pub.publish(pub.topic("calls", f"r{i % 400}.1795390746", "events"), {"pad": "x" * size})
    while pub.buffered:
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - t0
    await pub.stop()
    return {
        "messages": pub.published,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(pub.published / elapsed),
        "ms_per_message": round(elapsed * 1000 / max(1, pub.published), 3),
    }


async def bench_replay(
    customers: int, history: int, repeats: int = 200, pop_lookups: bool = True
) -> dict[str, object]:
    blob, total = stream(repeats, customers)
    out: dict[str, object] = {
        "events": total,
        "bytes": len(blob),
        "repeats": repeats,
        "pop_lookups": pop_lookups,
    }

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

    # Hotline: full pipeline (our framing, state, DB look-ups for pops, MQTT to PUBACK).
    tmp = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    db = Database(f"sqlite+aiosqlite:///{tmp / 'bench.db'}")
    await db.migrate()
    out["database"] = await populate(db, customers, history, seed=1)
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    fake2 = FakeAsterisk(blob)
    await fake2.start()
    directory = CustomerDirectory(db)
    interactions = InteractionStore(db)
    feature = cti_feature.setup(
        bench_config(prefix, ami_port=fake2.port),
        cti_feature.CtiDeps(directory, interactions, "s"),
    )
    cti_parts = await feature.__aenter__()
    cti, pub, ami = cti_parts.service, cti_parts.publisher, cti_parts.ami
    # Every pop is delivered.  At replay speed a call's hangup comes milliseconds
    # after its AgentCalled, before the pop's look-ups are done, so the publisher
    # would drop every pop as stale (it did in the runs before 2026-11-30: 400 of
    # 400) and the figure would leave out the pops' MQTT messages.
    pub.is_live = lambda _call_id: True
    sizes: list[int] = []
    publish = pub.publish

    def sized_publish(topic: str, payload: Any, **kw: Any) -> None:
        sizes.append(len(json.dumps(payload, ensure_ascii=False, default=str)))
        publish(topic, payload, **kw)

    pub.publish = sized_publish  # type: ignore[method-assign]
    found: list[bool] = []
    screen_pop = cti.screen_pop

    async def counted_pop(pop: Any, lookups: bool = True) -> Any:
        payload = await screen_pop(pop, lookups and pop_lookups)
        found.append(bool(payload.get("customer")))
        return payload

    cti.screen_pop = counted_pop  # type: ignore[method-assign]
    await cti_parts.connect()
    deadline = time.monotonic() + 120
    while ami.events_seen < total and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    await cti.drained()
    t_handled = time.monotonic()
    handled = ami.events_seen
    # Delivered: every message out of the publisher's buffer, i.e. PUBACKed by the
    # broker (the publisher takes a message off only once its publish returned).
    while pub.buffered and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    t_delivered = time.monotonic()
    out["hotline_lost"] = total - handled
    out["mqtt_undelivered"] = pub.buffered
    out["hotline_events_per_s"] = round(handled / (t_delivered - fake2.sent_at))
    out["hotline_events_per_s_handled"] = round(handled / (t_handled - fake2.sent_at))
    out["handled_s"] = round(t_handled - fake2.sent_at, 2)
    out["mqtt_all_delivered_s"] = round(t_delivered - fake2.sent_at, 2)
    out["pops_published"] = cti.pops_sent
    out["pops_with_customer"] = sum(found)
    out["mqtt_messages"] = pub.published
    out["mqtt_dropped_stale"] = pub.dropped_stale
    out["mqtt_payload_bytes_mean"] = round(sum(sizes) / max(1, len(sizes)))
    await feature.__aexit__(None, None, None)
    await directory.close()
    await interactions.close()
    await db.close()
    # The MQTT ceiling in the same run: as many messages, the same sizes, nothing else.
    only = await mqtt_only(f"{prefix}-only", sizes)
    out["mqtt_only"] = only
    per_event = len(sizes) / max(1, total)
    out["mqtt_messages_per_event"] = round(per_event, 3)
    out["mqtt_ceiling_events_per_s"] = round(float(str(only["messages_per_s"])) / per_event)
    return out


def machine() -> str:
    cpu = subprocess.run(
        ["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True
    ).stdout.strip()
    return (
        f"{cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} "
        f"cores, Python {platform.python_version()}"
    )


def git_state() -> dict[str, object]:
    """The commit measured, and any uncommitted change in the server's code."""

    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.rstrip("\n")

    changed = git("status", "--porcelain", "--", "cti", "hotline", "ivr")
    return {
        "commit": git("log", "-1", "--format=%h"),
        "modified_server_files": changed.split("\n") if changed else [],
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", nargs="?", choices=["pop", "replay", "all"], default="all")
    p.add_argument("--customers", type=int, default=100_000, help="generated customers")
    p.add_argument("--history", type=int, default=100_000, help="generated past interactions")
    p.add_argument("--repeats", type=int, default=200, help="replay: transcript repetitions")
    p.add_argument(
        "--no-pop-lookups",
        action="store_true",
        help="experiment (replay): build the pops without their database look-ups",
    )
    p.add_argument("--json-out", type=Path, help="also write the results to this file")
    args = p.parse_args()
    results: dict[str, object] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/cti_bench.py " + " ".join(sys.argv[1:]),
        "git": git_state(),
        "loadavg_at_start": os.getloadavg(),
    }
    t0 = time.monotonic()
    if args.what in ("replay", "all"):
        results["replay"] = await bench_replay(
            args.customers, args.history, args.repeats, not args.no_pop_lookups
        )
    if args.what in ("pop", "all"):
        results["pop"] = await bench_pop(args.customers, args.history)
    results["loadavg_at_end"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - t0, 1)
    report = json.dumps(results, indent=2)
    if args.json_out:
        args.json_out.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    asyncio.run(main())
