"""Hostile FastAGI peers flood every phase for 60 s; real calls are served meanwhile (issue 14).

The IVR runs in this process on 127.0.0.1:4573 exactly as ``hotline serve``
builds it (the ``live_server`` fixture).  The hostile peers run in another
process (this module run as a script, so their buffers are not counted as the
server's): 20 s of endless ``520-`` replies, 20 s of environments without end,
20 s of peers silent after their environment.  A real call goes through
Asterisk in each phase and is checked as the first end-to-end test checks its
call; the server's RSS (this process) grows by less than 20 MB.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from harness.sipp import Pause, run_caller
from harness.wait import wait_for
from hotline.config import load_config
from hotline.records.interactions import Interaction
from ivr.flow.engine import Services
from tests.support.paths import REPO

pytestmark = pytest.mark.asterisk

PORT = 4573
PHASES = ("reply", "environment", "silent")
PHASE_S = 20.0
CLIENTS = 4  # hostile clients per phase
RSS_BUDGET = 20 * 1024 * 1024
# What one hostile connection may send before it gives up: far over every bound.
PER_CONNECTION_CAP = 1024 * 1024
ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: hotline\n"
    b"agi_request: agi://127.0.0.1/hotline\n"
    b"agi_channel: PJSIP/hostile-00000001\n"
    b"agi_uniqueid: 1700000000.99\n"
    b"agi_callerid: 5550999\n"
    b"\n"
)


# -- the hostile peers (run as `python -m tests.live.test_agi_flood_live PHASE SECONDS`) -------


@dataclass
class FloodStats:
    connections: int = 0
    bytes_sent: int = 0
    closed_by_server: int = 0
    # From the first hostile byte of the phase to the server's close, the longest.
    longest_s: float = 0.0


async def _until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunk: bytes, stats: FloodStats
) -> bool:
    """Send ``chunk`` again and again until the server closes; True if it did.

    What the kernel's socket buffers take before the server's reset arrives
    counts as sent: most of ``bytes_sent`` never reached the server process.
    """
    sent = 0
    try:
        while sent < PER_CONNECTION_CAP and not reader.at_eof():
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            stats.bytes_sent += len(chunk)
    except ConnectionError:
        return True
    return await _waits_for_close(reader, 5.0)


async def _waits_for_close(reader: asyncio.StreamReader, limit: float) -> bool:
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
        return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False


async def _one_connection(phase: str, n: int, stats: FloodStats) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    except OSError:
        return
    stats.connections += 1
    t0 = time.monotonic()
    closed = False
    try:
        if phase == "reply":
            writer.write(ENV)
            await writer.drain()
            await reader.readline()  # the server's first command
            t0 = time.monotonic()
            writer.write(b"520-Invalid command syntax.  Proper usage follows:\n")
            closed = await _until_closed(reader, writer, (b"520-" + b"u" * 75 + b"\n") * 800, stats)
        elif phase == "environment":
            # An endless block of lines, or one endless line, by turns.
            chunk = b"agi_padding: yes\n" * 4000 if n % 2 else b"agi_channel: " + b"x" * 65536
            closed = await _until_closed(reader, writer, chunk, stats)
        else:  # silent after the environment
            writer.write(ENV)
            await writer.drain()
            closed = await _waits_for_close(reader, 30.0)
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    if closed:
        stats.closed_by_server += 1
        stats.longest_s = max(stats.longest_s, time.monotonic() - t0)


async def flood(phase: str, seconds: float, clients: int) -> FloodStats:
    stats = FloodStats()
    end = time.monotonic() + seconds
    held: set[asyncio.Task[None]] = set()

    async def client(k: int) -> None:
        n = k
        while time.monotonic() < end:
            n += clients
            if phase == "silent":
                # Silent peers pile up: a new one every 0.1 s per client, each held
                # until the server drops it.
                task = asyncio.create_task(_one_connection(phase, n, stats))
                held.add(task)
                task.add_done_callback(held.discard)
                await asyncio.sleep(0.1)
            else:
                await _one_connection(phase, n, stats)
                await asyncio.sleep(0.02)

    await asyncio.gather(*(client(k) for k in range(clients)))
    if held:
        await asyncio.wait(set(held), timeout=40)
    return stats


def main() -> None:
    phase, seconds, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    stats = asyncio.run(flood(phase, seconds, clients))
    print(json.dumps(asdict(stats)))


# -- the test ------------------------------------------------------------------------------


class DropWarnings(logging.Filter):
    """Counts the server's one warning per dropped connection; passes the first few on.

    pytest's log capture keeps every record for the test's report (about 1.5 KB
    each, some 10 MB for this flood): that is pytest's memory, not the
    server's, so only the first records reach it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith(("FastAGI client rejected", "AGI session ended")):
            self.count += 1
            return self.count <= 20
        return True


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def hostile_phase(phase: str, seconds: float) -> FloodStats:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.live.test_agi_flood_live",
        phase,
        str(seconds),
        str(CLIENTS),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 45)
    assert proc.returncode == 0, err.decode()[-2000:]
    return FloodStats(**json.loads(out))


async def real_call(services: Services, caller: str) -> Interaction:
    """A real call through Asterisk, checked as test_e2e_asterisk's first call is."""
    before = len(await services.interactions.recent(limit=500, caller=caller))
    result = await run_caller([Pause(4000)], number=caller, timeout=40)
    assert result.ok, result.stderr

    async def finished() -> Interaction | None:
        calls = await services.interactions.recent(limit=50, caller=caller)
        if len(calls) > before and calls[0].ended_at is not None:
            return calls[0]
        return None

    it = await wait_for(finished, timeout=15, interval=0.2)
    assert it.path[:3] == ["identify", "greet_caller", "main_menu"], it.steps
    # STREAM FILE returns when Asterisk finished playing: "Welcome to Hotline." lasts > 0.8 s.
    assert it.steps[1]["ms"] >= 800, it.steps
    assert it.outcome == "abandoned"
    return it


async def test_hostile_peers_on_every_phase_cost_no_memory_and_no_call(
    live_server: Services,
) -> None:
    cfg = load_config(REPO / "hotline.toml", environ={})
    # Warm up (prompts rendered, database, sipp) so the baseline is the served state.
    await real_call(live_server, "5550140")
    drops = DropWarnings()
    agi_log = logging.getLogger("hotline.agi")
    agi_log.addFilter(drops)
    gc.collect()
    before = rss_bytes()
    results: dict[str, FloodStats] = {}
    try:
        for i, phase in enumerate(PHASES):
            # Silent peers are held up to reply_timeout_s after the last one connects.
            seconds = PHASE_S - cfg.agi.reply_timeout_s if phase == "silent" else PHASE_S
            hostile = asyncio.create_task(hostile_phase(phase, seconds))
            await asyncio.sleep(4)
            try:
                await real_call(live_server, f"555014{i + 1}")
            finally:
                results[phase] = await hostile
        gc.collect()
        after = rss_bytes()
    finally:
        agi_log.removeFilter(drops)
    report = {p: asdict(s) for p, s in results.items()}
    print(
        f"RSS before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB;"
        f" {drops.count} drop warnings; {report}"
    )
    assert after - before < RSS_BUDGET, (before, after, report)
    # Each hostile connection was logged once, not once per line it sent.
    assert drops.count == sum(s.connections for s in results.values()), (drops.count, report)
    for phase, stats in results.items():
        # A flood it was, and every hostile connection was closed by the server.
        assert stats.connections >= 20, (phase, stats)
        assert stats.closed_by_server == stats.connections, (phase, stats)
    # Over a size bound a connection is closed at once; a silent peer after its
    # environment (the first command is GET FULL VARIABLE) within reply_timeout_s.
    assert results["reply"].longest_s < 3, results["reply"]
    assert results["environment"].longest_s < 3, results["environment"]
    assert results["silent"].longest_s < cfg.agi.reply_timeout_s + 3, results["silent"]


if __name__ == "__main__":
    main()
