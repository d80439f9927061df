"""Agent desktop benchmark (issue 15): AgentCalled -> pop card in the DOM, and the
page's memory after 500 pops.

1. ``latency``: real calls.  sipp callers with unknown numbers go through the real
   IVR on real Asterisk (keys 1 then 0: the billing queue); agent 1002 is paused,
   so the queue rings only agent 1001, whose sipp phone answers after a delay; the
   caller hangs up a little later.  The agent desktop is the real page
   (``hotline serve``'s CTI, web application and agent desktop, built here as
   ``tests/live/test_agent_desktop_live.py`` builds its ``site``), signed in as a
   user of role agent bound to 1001 in Debian's Chromium (Playwright), talking
   to the project's Mosquitto over WebSockets with its own per-session login.

   Start: ``time.time()`` in a subscriber of the CTI's AMI event bus for
   ``AgentCalled`` (the AMI client hands the event over).  End: a
   MutationObserver on the card (``[data-testid="screenpop"]``, a new
   ``data-call-id``), stamped ``performance.timeOrigin + performance.now()``.
   Mutation observers run at the microtask checkpoint after the page's message
   handler, i.e. once the whole card is built.  Also stamped: the next
   animation frame (the paint follows it) and, in this process, when the CTI
   handed the pop to its MQTT publisher (the look-ups done).  Both clocks are the
   machine's wall clock; the offset between them is measured at the start and
   the end (the smallest-round-trip sample of 20).

2. ``memory``: a fresh page signed in as the same agent gets 500 pops published
   by the server's own publisher (``Cti.publisher``) to the agent's screenpop
   topic, one every ``--pop-gap-ms``, from realistic payloads (the pops of the
   real calls above, and pops the CTI's own ``screen_pop`` builds for the demo
   customers with their profile, the IVR journey of a real call and a five-entry
   history); each with its own call id.  JS heap used (CDP
   ``Performance.getMetrics`` -> JSHeapUsedSize) after a forced GC
   (``HeapProfiler.collectGarbage``) before the first pop and after 10, 100, 250
   and 500 pops.

    flock /tmp/hotline-live.lock .venv/bin/python bench/desktop_bench.py \
        [--calls 60] [--json-out bench/results/desktop.json]
    (needs root: starts the sandbox and the project broker if they are not up)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.async_api import CDPSession, Page  # noqa: E402

from cti import setup as cti_feature  # noqa: E402
from cti.ami import AmiEvent  # noqa: E402
from cti.desktop import setup as desktop_feature  # noqa: E402
from cti.state import Call, ScreenPop  # noqa: E402
from harness.browser import chromium  # noqa: E402
from harness.mqtt import broker_down, broker_running, broker_up, project_broker_env  # noqa: E402
from harness.sipp import Agent, Keys, Pause, Step, run_caller  # noqa: E402
from harness.wait import wait_for  # noqa: E402
from hotline.config import Config, load_config  # noqa: E402
from hotline.records.audit import AuditLog  # noqa: E402
from hotline.records.customers import CustomerDirectory  # noqa: E402
from hotline.records.interactions import InteractionStore  # noqa: E402
from hotline.records.users import Users  # noqa: E402
from hotline.storage.db import Database  # noqa: E402
from hotline.storage.tables import InteractionRow  # noqa: E402
from hotline.web import build_web_app, serving  # noqa: E402

SANDBOX = REPO / "scripts" / "sandbox.sh"
HOTLINE = str(REPO / ".venv" / "bin" / "hotline")
USER = "bench-ann"
AGENT = "1001"
CUSTOMERS_CSV = REPO / "dialplans" / "data" / "customers.csv"

# Installed once signed in: stamps each new call id on the card (and the next
# animation frame), counts them; kept in window.__bench.
OBSERVER_JS = """keep => {
  const card = document.querySelector('#card');
  const b = { stamps: [], count: 0, last: card.getAttribute('data-call-id'), keep };
  window.__bench = b;
  new MutationObserver(() => {
    const id = card.getAttribute('data-call-id');
    if (id === b.last) return;
    const t = performance.timeOrigin + performance.now();
    b.last = id;
    b.count += 1;
    if (!b.keep) return;
    const rec = [id, t, null];
    b.stamps.push(rec);
    requestAnimationFrame(() => { rec[2] = performance.timeOrigin + performance.now(); });
  }).observe(card, { attributes: true, attributeFilter: ['data-call-id'] });
}"""
# The latency page only (an init script, before the page's own): when each WebSocket
# frame reaches the page's JavaScript (a listener added before the page's
# onmessage), and the long tasks (> 50 ms) the page ran.
ARRIVAL_JS = """(() => {
  const stamps = [];
  const longtasks = [];
  window.__arrivals = stamps;
  window.__longtasks = longtasks;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        stamps.push([performance.timeOrigin + performance.now(), e.data.byteLength || 0]);
      });
    }
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      longtasks.push([performance.timeOrigin + e.startTime, e.duration]);
    }
  }).observe({ type: 'longtask', buffered: true });
})();"""
CLOCK_JS = "() => [Date.now(), performance.timeOrigin + performance.now()]"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile, as bench/cti_bench.py reports them."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, object]:
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50), 2),
        "p95_ms": round(pct(values, 95), 2),
        "p99_ms": round(pct(values, 99), 2),
        "max_ms": round(max(values, default=float("nan")), 2),
        "min_ms": round(min(values, default=float("nan")), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def bench_config(prefix: str) -> Config:
    """The demo site's configuration (as ``make demo`` runs it), publishing to the
    project broker as its server user under a private prefix, wrap-up off."""
    base = load_config(REPO / "hotline.toml")
    return load_config(
        REPO / "hotline.toml",
        environ={
            **project_broker_env(base),
            "HOTLINE_MQTT__PREFIX": prefix,
            "HOTLINE_MQTT__CLIENT_ID": f"{prefix.replace('/', '-')}-server",
            "HOTLINE_AMI__RECONNECT_MIN_S": "0.2",
            "HOTLINE_DESK__WRAPUP_S": "0",
            "HOTLINE_SPEECH__AUDIOSOCKET_PORT": str(free_port()),
        },
    )


def add_user(db_url: str, password: str) -> str:
    """``hotline users add bench-ann --role agent --agent 1001`` in the bench's database."""
    done = subprocess.run(
        [HOTLINE, "users", "add", USER, "--role", "agent", "--agent", AGENT, "--password-stdin"],
        cwd=REPO,
        input=password + "\n",
        env={"PATH": "/usr/bin:/bin", "HOTLINE_DATABASE__URL": db_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hotline users add failed: {done.stderr}")
    return done.stdout.strip()


async def seed_history(db: Database, directory: CustomerDirectory) -> int:
    """Six earlier contacts per demo customer (dispositions and notes), so that the
    pops built for them carry a full history, as a regular caller's would."""
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    notes = [
        ("Paid", "Paid by card, wants paper bills stopped"),
        ("Payment plan", "Three instalments agreed, first on the 5th"),
        ("Dispute", "Roaming charge disputed, ticket opened"),
        ("Information", "Asked about the new tariff"),
        ("Callback requested", "Call back after 6 pm"),
        ("Resolved", "Router restarted remotely, line up again"),
    ]
    for phone in ("5551234", "5550002", "5550003", "5550004"):
        customer = await directory.by_phone(phone)
        if customer is None:
            continue
        for k, (disposition, note) in enumerate(notes):
            started = now - timedelta(days=3 + 9 * k, hours=k)
            queue = "support" if disposition == "Resolved" else "billing"
            rows.append(
                {
                    "id": uuid.uuid4().hex,
                    "call_id": f"{int(started.timestamp())}.{k}",
                    "channel": "PJSIP/callers-00000001",
                    "flow": "hotline",
                    "caller_number": phone,
                    "caller_name": customer.name,
                    "customer_id": customer.id,
                    "language": customer.language,
                    "started_at": started,
                    "ended_at": started + timedelta(seconds=95 + 20 * k),
                    "outcome": "queued",
                    "queue": queue,
                    "intent": queue,
                    "steps": [
                        {"node": "identify", "type": "lookup"},
                        {"node": "verify_caller", "type": "verify", "input": "****"},
                        {"node": "main_menu", "type": "menu", "input": "1"},
                        {"node": "billing_menu", "type": "menu", "input": "0"},
                    ],
                    "inputs": {"main_menu": "1", "billing_menu": "0"},
                    "transcripts": [],
                    "self_service": [{"task": "verify", "outcome": "ok", "method": "pin"}],
                    "disposition": disposition,
                    "disposition_note": note,
                    "disposed_by": AGENT,
                    "disposed_at": started + timedelta(seconds=130 + 20 * k),
                }
            )
    async with db.engine.begin() as conn:
        await conn.execute(insert(InteractionRow), rows)
    return len(rows)


async def sign_in(page: Page, url: str, password: str) -> None:
    await page.goto(f"{url}/login")
    await page.fill('input[name="name"]', USER)
    await page.fill('input[name="password"]', password)
    await page.click('button[type="submit"]')
    await page.wait_for_url("**/agent")
    await page.get_by_test_id("connection").filter(has_text="live").wait_for(timeout=15_000)


async def sign_out(page: Page) -> None:
    """The page's own sign-out (the server revokes the session's broker login)."""
    with contextlib.suppress(Exception):
        await page.click("#signout")
        await page.wait_for_url("**/login", timeout=5_000)


async def clock_check(page: Page, samples: int = 20) -> dict[str, float]:
    """The page's clocks minus Python's time.time(), in ms, from the sample with the
    smallest round trip (its half is the uncertainty)."""
    best: tuple[float, float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        date_now, perf_now = await page.evaluate(CLOCK_JS)
        t1 = time.time()
        rtt = (t1 - t0) * 1000
        mid = (t0 + t1) / 2 * 1000
        if best is None or rtt < best[0]:
            best = (rtt, float(date_now) - mid, float(perf_now) - mid)
    assert best is not None
    return {
        "round_trip_ms": round(best[0], 3),
        "date_now_minus_python_ms": round(best[1], 3),
        "perf_clock_minus_python_ms": round(best[2], 3),
    }


async def heap(cdp: CDPSession) -> dict[str, float]:
    """JS heap used (and DOM nodes, listeners) after forced garbage collections."""
    for _ in range(3):
        await cdp.send("HeapProfiler.collectGarbage")
    got = await cdp.send("Performance.getMetrics")
    metrics = {m["name"]: float(m["value"]) for m in got["metrics"]}
    return {
        "js_heap_used_mb": round(metrics["JSHeapUsedSize"] / 1e6, 3),
        "js_heap_total_mb": round(metrics["JSHeapTotalSize"] / 1e6, 3),
        "dom_nodes": metrics.get("Nodes", float("nan")),
        "js_event_listeners": metrics.get("JSEventListeners", float("nan")),
    }


def sipp_version() -> str:
    out = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout
    return next((line.strip() for line in out.splitlines() if "SIPp" in line), "?")


def chromium_version() -> str:
    return subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()


def machine() -> str:
    cpu = subprocess.run(
        ["sh", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True, text=True
    ).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.1f} GiB RAM, Python {platform.python_version()}"


def git_state() -> dict[str, object]:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.rstrip("\n")

    changed = git("status", "--porcelain", "--", "cti", "hotline", "ivr")
    return {
        "commit": git("log", "-1", "--format=%h"),
        "modified_server_files": changed.split("\n") if changed else [],
    }


def busy_processes() -> list[str]:
    """Other tests or benchmarks running now (they share the 2 cores)."""
    out = subprocess.run(
        ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True
    ).stdout.splitlines()[1:]
    mine = str(os.getpid())
    return [
        line.strip()[:160]
        for line in out
        if any(w in line for w in ("pytest", "bench/", "sipp")) and line.split()[0] != mine
    ][:10]


async def run(calls: int, interval_s: float, pops: int, pop_gap_ms: float) -> dict[str, object]:
    from ivr import setup as ivr_feature

    out: dict[str, object] = {}
    was_up = subprocess.run([str(SANDBOX), "status"], capture_output=True).returncode == 0
    subprocess.run([str(SANDBOX), "up"], check=True, capture_output=True, timeout=600)
    broker_was_up = broker_running()
    broker_up()
    tmp = Path(tempfile.mkdtemp(prefix="hotline-desktop-bench-"))
    db_url = f"sqlite+aiosqlite:///{tmp / 'hotline.db'}"
    db = Database(db_url)
    await db.migrate()
    directory = CustomerDirectory(db)
    await directory.import_csv(CUSTOMERS_CSV)
    out["history_rows_seeded"] = await seed_history(db, directory)
    interactions = InteractionStore(db)
    password = secrets.token_urlsafe(16)
    out["user"] = await asyncio.to_thread(add_user, db_url, password)
    tag = uuid.uuid4().hex[:8]
    cfg = bench_config(f"hotline/bench-desktop-{tag}")
    secret = (REPO / ".run" / "ami_secret").read_text().strip()
    url = f"http://{cfg.http.host}:{cfg.http.port}"

    called: dict[str, list[tuple[float, str]]] = {}  # call id -> (time, member)
    handed: dict[str, float] = {}  # call id -> pop handed to the publisher
    captured: list[dict[str, Any]] = []

    def on_agent_called(ev: AmiEvent) -> None:
        t = time.time()
        called.setdefault(str(ev.get("Linkedid")), []).append((t, str(ev.get("MemberName"))))

    def on_popped(payload: Any) -> None:
        handed.setdefault(str(payload["call_id"]), time.time())
        captured.append(copy.deepcopy(dict(payload)))

    audit = await asyncio.to_thread(AuditLog.from_config, db, cfg)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            ivr_feature.setup(cfg, ivr_feature.IvrDeps(directory, interactions))
        )
        cti = await stack.enter_async_context(
            cti_feature.setup(cfg, cti_feature.CtiDeps(directory, interactions, secret))
        )
        desktop = await stack.enter_async_context(desktop_feature.setup(cfg, cti))
        app = build_web_app(
            Users(db),
            audit,
            routes=[desktop.routes],
            session_hooks=[desktop.sessions],
            connect_src=desktop.connect_src,
        )
        await stack.enter_async_context(serving(app, cfg.http.host, cfg.http.port))
        cti.bus.subscribe("AgentCalled", on_agent_called)
        cti.service.popped.subscribe(on_popped)
        await cti.connect()
        await wait_for(
            lambda: cti.ami.logged_in and {"1001", "1002"} <= set(cti.state.agents),
            timeout=10,
            what="the CTI logged in, agents known",
        )
        await cti.desk.set_state("1002", "pause", "Break")  # only 1001 is rung
        await cti.ami.queue_pause(f"PJSIP/agent{AGENT}", False)
        try:
            browser = await stack.enter_async_context(chromium())
            out["latency"] = await latency_phase(
                browser, url, password, calls, interval_s, called, handed
            )
            out["memory"] = await memory_phase(
                browser, url, password, cti, captured, pops, pop_gap_ms
            )
        finally:
            for agent in ("1001", "1002"):
                with contextlib.suppress(Exception):
                    await cti.ami.queue_pause(f"PJSIP/agent{agent}", False)
    await interactions.close()
    await directory.close()
    await db.close()
    if not broker_was_up:
        broker_down()
    if not was_up:
        subprocess.run([str(SANDBOX), "down"], check=False, capture_output=True)
    return out


async def latency_phase(
    browser: Any,
    url: str,
    password: str,
    calls: int,
    interval_s: float,
    called: dict[str, list[tuple[float, str]]],
    handed: dict[str, float],
) -> dict[str, object]:
    page: Page = await browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.add_init_script(ARRIVAL_JS)
    await sign_in(page, url, password)
    await page.evaluate(OBSERVER_JS, True)
    clock_start = await clock_check(page)
    # An unknown caller: billing (1), an agent (0); on the line while 1001's phone
    # rings (answers after 1 s) and talks, then hangs up.
    hold_ms = 3000
    steps: list[Step] = [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(hold_ms)]
    phone = Agent(AGENT, calls=calls, answer_delay_ms=1000)
    await phone.start()
    t0 = time.monotonic()
    numbers = [f"5557{i:03d}" for i in range(calls)]
    try:
        tasks = []
        for number in numbers:
            tasks.append(asyncio.create_task(run_caller(steps, number=number, timeout=60)))
            await asyncio.sleep(interval_s)
        results = await asyncio.gather(*tasks)
        await asyncio.sleep(1.0)
    finally:
        await phone.stop()
    calls_s = time.monotonic() - t0
    clock_end = await clock_check(page)
    bench_js: dict[str, Any] = await page.evaluate("() => window.__bench")
    arrivals = sorted(float(a[0]) / 1000 for a in await page.evaluate("() => window.__arrivals"))
    longtasks = [
        (float(a) / 1000, float(d)) for a, d in await page.evaluate("() => window.__longtasks")
    ]
    await sign_out(page)
    await page.close()

    stamps = {str(s[0]): (float(s[1]) / 1000, s[2]) for s in bench_js["stamps"]}
    to_dom: list[float] = []
    to_frame: list[float] = []
    to_handed: list[float] = []
    handed_to_dom: list[float] = []
    to_frame_in: list[float] = []  # AgentCalled -> the pop's WebSocket frame in the page
    frame_to_dom: list[float] = []  # that frame -> the card (the page's handler)
    long_in_window = 0
    per_call: list[dict[str, object]] = []
    rings_1001 = rings_other = 0
    for call_id, rings in called.items():
        mine = [t for t, who in rings if who == AGENT]
        rings_1001 += len(mine)
        rings_other += len(rings) - len(mine)
        if not mine or call_id not in stamps:
            per_call.append({"call_id": call_id, "rings": len(rings), "card": False})
            continue
        t_called = mine[0]
        t_dom, t_frame = stamps[call_id]
        row: dict[str, object] = {
            "call_id": call_id,
            "rings": len(rings),
            "card": True,
            "dom_ms": round((t_dom - t_called) * 1000, 2),
        }
        to_dom.append((t_dom - t_called) * 1000)
        # The pop's frame: the last one to reach the page before the card changed.
        frame_in = max((a for a in arrivals if t_called <= a <= t_dom), default=None)
        if frame_in is not None:
            to_frame_in.append((frame_in - t_called) * 1000)
            frame_to_dom.append((t_dom - frame_in) * 1000)
            row["ws_frame_ms"] = round(to_frame_in[-1], 2)
        long = [d for a, d in longtasks if a <= t_dom and a + d / 1000 >= t_called]
        if long:
            long_in_window += 1
            row["long_tasks_ms"] = [round(d, 1) for d in long]
        if t_frame is not None:
            to_frame.append((float(t_frame) / 1000 - t_called) * 1000)
            row["frame_ms"] = round(to_frame[-1], 2)
        if call_id in handed:
            to_handed.append((handed[call_id] - t_called) * 1000)
            handed_to_dom.append((t_dom - handed[call_id]) * 1000)
            row["handed_ms"] = round(to_handed[-1], 2)
        per_call.append(row)
    # The two clocks' offset over the run: the worst measured, to read the figures by.
    offsets = [clock_start["perf_clock_minus_python_ms"], clock_end["perf_clock_minus_python_ms"]]
    return {
        "calls_placed": calls,
        "caller_runs_ok": sum(r.ok for r in results),
        "caller_failures": [r.stderr[-300:] for r in results if not r.ok][:3],
        "start_interval_s": interval_s,
        "caller_script": "pause 1.5 s, key 1, pause 2.5 s, key 0, hold 3 s, hang up",
        "agent_phone": "sipp UAS on 5071: 180 Ringing, answers after 1000 ms, waits for BYE",
        "calls_seconds": round(calls_s, 1),
        "calls_with_agent_called": len(called),
        "agent_called_1001": rings_1001,
        "agent_called_others": rings_other,
        "cards_seen_by_observer": int(bench_js["count"]),
        "agent_called_to_dom": summary(to_dom),
        "agent_called_to_next_frame": summary(to_frame),
        "agent_called_to_publisher": summary(to_handed),
        "publisher_to_dom": summary(handed_to_dom),
        "agent_called_to_ws_frame_in_page": summary(to_frame_in),
        "ws_frame_to_dom": summary(frame_to_dom),
        "long_tasks_in_page": len(longtasks),
        "calls_with_a_long_task_in_their_window": long_in_window,
        "first_call_dom_ms": per_call[0].get("dom_ms") if per_call else None,
        "clock_check_start": clock_start,
        "clock_check_end": clock_end,
        "clock_offset_max_abs_ms": round(max(abs(o) for o in offsets), 3),
        "page_errors": errors,
        "target_p99_ms": 50,
        "target_met": bool(to_dom) and pct(to_dom, 99) <= 50 and len(to_dom) >= 50,
        "per_call": per_call,
    }


async def pop_templates(cti: cti_feature.Cti, captured: list[dict[str, Any]]) -> list[Any]:
    """The real calls' pops, and the CTI's own pops for each demo customer (their
    profile and history; the IVR journey of one of the real calls)."""
    templates: list[Any] = [p for p in captured if p.get("agent") == AGENT][:20]
    ivr_call = templates[0]["call_id"] if templates else "none"
    customers = [("5551234", "Alice Martin"), ("5550002", "Bob Chen")]
    customers += [("5550003", "Kim Minji"), ("5550004", "Dana Okafor")]
    for phone, name in customers:
        call = Call(call_id=ivr_call, caller_number=phone, caller_name=name, queue="billing")
        payload = await cti.service.screen_pop(ScreenPop(AGENT, call, "billing", 12.5))
        templates.append(copy.deepcopy(dict(payload)))
    return templates


async def memory_phase(
    browser: Any,
    url: str,
    password: str,
    cti: cti_feature.Cti,
    captured: list[dict[str, Any]],
    pops: int,
    pop_gap_ms: float,
) -> dict[str, object]:
    templates = await pop_templates(cti, captured)
    sizes = [len(json.dumps(t, ensure_ascii=False)) for t in templates]
    page: Page = await browser.new_page(viewport={"width": 1280, "height": 720})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await sign_in(page, url, password)
    await page.evaluate(OBSERVER_JS, False)  # counts, keeps no stamps
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    await asyncio.sleep(2.0)
    checkpoints = {10, 100, 250, pops}
    heaps: list[dict[str, object]] = [{"pops": 0, **(await heap(cdp))}]
    topic = cti.publisher.topic("agents", AGENT, "screenpop")
    tag = uuid.uuid4().hex[:6]
    t0 = time.monotonic()
    for i in range(1, pops + 1):
        payload = copy.deepcopy(templates[i % len(templates)])
        payload["call_id"] = f"bench-{tag}-{i:04d}"
        payload["ts"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        cti.publisher.publish(topic, payload)
        await asyncio.sleep(pop_gap_ms / 1000)
        if i in checkpoints:
            shown_js = f"() => window.__bench.last === {json.dumps(payload['call_id'])}"

            async def on_card(js: str = shown_js) -> bool:
                return bool(await page.evaluate(js))

            await wait_for(
                on_card,
                timeout=30,
                interval=0.05,
                what=f"pop {i} on the card",
            )
            heaps.append({"pops": i, **(await heap(cdp))})
    seconds = time.monotonic() - t0
    shown = int(await page.evaluate("() => window.__bench.count"))
    await cdp.detach()
    await sign_out(page)
    await page.close()
    before = float(str(heaps[0]["js_heap_used_mb"]))
    after = float(str(heaps[-1]["js_heap_used_mb"]))
    warm = float(str(heaps[1]["js_heap_used_mb"]))
    return {
        "pops_published": pops,
        "pops_shown": shown,
        "pop_gap_ms": pop_gap_ms,
        "seconds": round(seconds, 1),
        "templates": len(templates),
        "template_bytes_min_max": [min(sizes), max(sizes)],
        "heap": heaps,
        "js_heap_used_before_mb": before,
        "js_heap_used_after_mb": after,
        "growth_mb": round(after - before, 3),
        "growth_after_first_10_mb": round(after - warm, 3),
        "page_errors": errors,
        "target_growth_mb": 10,
        "target_met": after - before < 10 and shown == pops,
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--calls", type=int, default=60, help="real calls (each rings 1001)")
    p.add_argument("--interval", type=float, default=3.5, help="seconds between callers")
    p.add_argument("--pops", type=int, default=500, help="pops for the memory figure")
    p.add_argument("--pop-gap-ms", type=float, default=50.0, help="between published pops")
    p.add_argument("--json-out", type=Path, help="also write the results to this file")
    args = p.parse_args()
    results: dict[str, object] = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/desktop_bench.py " + " ".join(sys.argv[1:]),
        "git": git_state(),
        "versions": {"chromium": chromium_version(), "sipp": sipp_version()},
        "loadavg_at_start": os.getloadavg(),
        "others_at_start": busy_processes(),
    }
    t0 = time.monotonic()
    results.update(await run(args.calls, args.interval, args.pops, args.pop_gap_ms))
    results["loadavg_at_end"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - t0, 1)
    report = json.dumps(results, indent=2)
    if args.json_out:
        args.json_out.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    asyncio.run(main())
