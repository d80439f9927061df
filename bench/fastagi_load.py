#!/usr/bin/env python3
"""FastAGI load benchmark: N concurrent calls through the demo menu, Hotline vs classic AGI.

A load client plays Asterisk's side of the AGI protocol (like
tests/support/fake_asterisk.py, but lean: raw sockets read with recvmsg, one timestamp
per line, and the kernel's receive timestamp of it)
and walks every call through the demo hotline's menu the way the engine tests
do: unknown caller 5559999 -> greeting -> main menu, press 1 -> billing menu,
press 0 -> queued (six SET VARIABLEs) -> the server closes the connection.
An unknown number is never asked for a PIN (dialplans/hotline.yaml: only a
known caller goes through ``verify_caller``), so this path has no PIN step.
Hotline sends a ``NOOP`` liveness probe before its first prompt (ivr/agi.py);
the client answers it like any other command: 13 commands per call.

Three engines, each driven the same way:

* ``hotline``: FastAgiServer + CallRouter in a separate process (``--serve``),
  on a temporary SQLite database and a temporary prompts directory, one TCP
  connection per call.  The AGI environment carries ``linkedid=...`` as
  argument 1, as the demo dialplan sends it.
* ``floor``: an asyncio server that sends the same 13 commands and does nothing
  else (``--serve-floor``): what any asyncio FastAGI server pays per command
  on this machine.  This is the fair comparison for the per-command overhead.
* ``pyst2``: bench/classic_agi_menu.py, the same menu as a classic AGI script,
  one process per call with the AGI environment on stdin and commands on
  stdout, as Asterisk runs AGI().  A different architecture (a process per
  call): the comparison for calls/s, memory and call setup, not for the
  per-command overhead.  Every run checks that it plays the same prompt files
  as Hotline and stops if not (``same_prompts_played``).

Three phases per engine and N:

* ``hold``: N calls at once, each held at the main menu's WAIT FOR DIGIT until
  all N are there; then the server side's memory is read from /proc
  (Hotline: VmRSS of the server process, loaded minus idle, divided by N;
  pyst2: VmRSS and Pss summed over the N processes, divided by N).
* ``saturate``: N calls at once, every command answered at once (in rounds,
  at least --saturate-calls calls): calls/s (N / wall time from the first
  connect to the last close), server CPU per call, and the overhead when every
  call competes for the server.
* ``paced``: calls start at --rate per second (N/rate seconds for all N) and
  Asterisk's answers to STREAM FILE and WAIT FOR DIGIT come after a think time
  (uniform 0.75-1.25 x --think, by default sized so a call lasts ~1.25 x the
  ramp), so all N calls are in flight together.  At the default 60 calls/s a
  call at N=1000 lasts ~21 s, about the real length of this path's prompts
  (1000 callers in the menu would arrive at ~48/s).  This is the per-command
  overhead at N concurrent calls.

pyst2 runs N=100 by default (--classic-n 100 1000 adds N=1000); above
--classic-full-max (default 100) it runs only the hold phase: with a process
per call (~75 ms of CPU each, and 1000 writers on one SQLite file) each phase
of 1000 calls takes about two minutes.

Server overhead per command is measured from just before the client writes a
reply line to the next command line, ending two ways: when the kernel put it in
the client's socket (SO_TIMESTAMPNS; the server's processing time for that
step, any time the reply waited behind other calls, and two loopback hops), and
when the client's event loop has it (the same plus the client's own lag).
The first command (from the start of the call: connect, or fork+exec) is
reported as call setup, the close after the last reply as teardown; neither is
in the per-command figures, which are over the command/reply gaps: 12 per call
for Hotline and the floor (13 commands), 11 for pyst2 (12 commands).  The
client's own event-loop lag is recorded per phase (JSON: client_loop_lag).
"Inside the server" is the Hotline server's own share, from having a reply
parsed to sending the next command: the --serve process wraps
AgiChannel.command to time it (bench code only; the server is not changed).
Each phase also records the CPU other processes used meanwhile (/proc/stat), as
the machine may be shared.

By default the client runs on CPU 0 and the server side (the Hotline process,
or every pyst2 process) on CPU 1, so both engines get one core.

Usage:
    .venv/bin/python bench/fastagi_load.py            # Markdown table
    .venv/bin/python bench/fastagi_load.py --json     # every detail as JSON
    .venv/bin/python bench/fastagi_load.py --json-out bench/results/fastagi_load.json
    .venv/bin/python bench/fastagi_load.py --engines hotline --n 1000 --tmpdir /dev/shm
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchstats import pct, system_busy_s

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLASSIC_SCRIPT = REPO / "bench" / "classic_agi_menu.py"
CALLER = "5559999"  # not in dialplans/data/customers.csv: greet_caller -> main_menu
KEYS = ("1", "0")  # main menu: billing; billing menu: agent
EXPECTED_QUEUE = "billing"
CALL_TIMEOUT = 120.0  # no call of any phase may take longer
SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; the socket module does not name it
CLIENT_CPU, SERVER_CPU = 0, 1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- the server side of the Hotline engine (a separate process) ---------------------------


def prepare_db(path: Path) -> None:
    """A migrated database with the demo customers (copied for every run)."""
    from hotline.records.customers import CustomerDirectory
    from hotline.storage.db import Database

    async def go() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await db.migrate()
        await CustomerDirectory(db).import_csv(REPO / "dialplans" / "data" / "customers.csv")
        await db.close()

    asyncio.run(go())


async def watch_stdin() -> asyncio.Future[None]:
    """A future done when the load client closes our stdin: the server's cue to stop."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()

    class Stdin(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            if not closed.done():
                closed.set_result(None)

    await loop.connect_read_pipe(Stdin, sys.stdin)
    return closed


def run_server(main: Coroutine[Any, Any, None], event_loop: str) -> None:
    """Run a server process's main on asyncio's loop or uvloop; Ctrl-C is the client's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if event_loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def serve(
    db_path: Path,
    prompts_dir: Path,
    log_level: str,
    switch_interval: float | None = None,
    no_interaction_writes: bool = False,
    database_url: str | None = None,
    event_loop: str = "asyncio",
) -> None:
    """Hotline's IVR side as ``hotline serve`` builds it, on 127.0.0.1 and a free port.

    Prints ``READY <port>`` when listening; stops when stdin closes.
    """
    from hotline.config import load_config
    from hotline.logs import setup_logging
    from hotline.records.customers import CustomerDirectory
    from hotline.records.interactions import InteractionStore
    from hotline.storage.db import Database
    from ivr import setup as ivr_feature
    from ivr.agi import AgiChannel, AgiReply

    raise_fd_limit()
    if switch_interval:
        sys.setswitchinterval(switch_interval)  # experiment: the GIL hand-over interval
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The demo site's configuration, as `hotline serve` reads it, on a free port
    # with the benchmark's own prompt folder; no speech models (the menu is DTMF).
    cfg = load_config(
        REPO / "hotline.toml",
        environ={
            "HOTLINE_AGI__PORT": str(port),
            "HOTLINE_PATHS__PROMPTS_HOST": str(prompts_dir),
            "HOTLINE_SPEECH__ENABLED": "false",
        },
    )
    setup_logging(log_level, "json")  # stderr: a file the client reads afterwards

    # Server-internal timing, to tell the server's share of a gap from the client's and
    # the loopback's: from the moment the server has a reply parsed to the moment it
    # sends the next command (what its engine does in between, DB work included).
    internal: dict[str, list[float]] = {}
    command = AgiChannel.command

    async def timed_command(self: AgiChannel, *words: str) -> AgiReply:
        now = time.perf_counter()
        last = self.__dict__.get("_bench_reply_at")
        position = self.__dict__.get("_bench_position", 0)
        if last is not None:
            internal.setdefault(f"{position:02d} {words[0]}", []).append(now - last)
        self.__dict__["_bench_position"] = position + 1
        try:
            return await command(self, *words)
        finally:
            self.__dict__["_bench_reply_at"] = time.perf_counter()

    AgiChannel.command = timed_command  # type: ignore[method-assign]

    def dump_internal() -> None:
        out = db_path.parent / "server-internal.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(internal))
        os.replace(tmp, out)
        internal.clear()

    class NoWrites(InteractionStore):
        """Experiment: the engine without its interaction writes."""

        async def save(self, interaction: Any, *, wait: bool = True) -> None:
            return None

    async def main() -> None:
        db = Database(database_url or f"sqlite+aiosqlite:///{db_path}")
        await db.migrate()
        if database_url:
            await CustomerDirectory(db).import_csv(REPO / "dialplans" / "data" / "customers.csv")
        interactions = NoWrites(db) if no_interaction_writes else InteractionStore(db)
        feature = ivr_feature.setup(cfg, ivr_feature.IvrDeps(CustomerDirectory(db), interactions))
        ivr = await feature.__aenter__()
        services, server = ivr.services, ivr.agi
        stdin_closed = await watch_stdin()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_internal)
        gc.freeze()  # as hotline serve does once started
        print(f"READY {server.port}", flush=True)
        await stdin_closed
        await feature.__aexit__(None, None, None)
        await services.interactions.close()
        await db.close()
        stats = {
            "served": server.served,
            "rejected": server.rejected,
            "prompts_rendered": services.prompts.rendered,
        }
        print(f"STATS {json.dumps(stats)}", flush=True)

    run_server(main(), event_loop)


def serve_floor(event_loop: str) -> None:
    """The floor: a FastAGI server that sends this path's 13 commands and does nothing else.

    Plain asyncio streams, no flow, no database, no logging: what any asyncio
    FastAGI server pays per command on this machine (wake-ups, two loopback hops,
    reading a line, writing one).  Hotline's figures minus these are its own cost.
    """
    raise_fd_limit()
    commands = [
        "NOOP",  # Hotline's liveness probe before the first prompt (ivr/agi.py)
        'STREAM FILE "hotline/greeting" "0123456789*#"',
        'STREAM FILE "hotline/main-en" "01239"',
        'STREAM FILE "hotline/main-ko" "01239"',
        "WAIT FOR DIGIT 5000",
        'STREAM FILE "hotline/billing" "0123"',
        "WAIT FOR DIGIT 5000",
        *(f"SET VARIABLE HOTLINE_VAR{i} value{i}" for i in range(5)),
        f"SET VARIABLE HOTLINE_QUEUE {EXPECTED_QUEUE}",
    ]
    encoded = [(c + "\n").encode() for c in commands]

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await reader.readline()).strip():
                pass  # the AGI environment, up to its blank line
            for line in encoded:
                writer.write(line)
                if not await reader.readline():
                    return
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(call, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stdin_closed = await watch_stdin()
        print(f"READY {port}", flush=True)
        await stdin_closed
        server.close()
        print("STATS {}", flush=True)

    run_server(main(), event_loop)


# -- /proc ----------------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def proc_pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise KeyError("Pss")


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_overflows() -> int:
    """TcpExt ListenOverflows (system-wide): connections the kernel dropped at accept."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            fields = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return int(fields.get("ListenOverflows", 0))
    return 0


def own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# -- the load client: Asterisk's side of one AGI session ------------------------------------


def agi_env(script: str, uniqueid: str) -> bytes:
    lines = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1/{script}",
        "agi_channel": f"PJSIP/callers-{uniqueid.replace('.', '')[-8:]}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.0.0",
        "agi_callerid": CALLER,
        "agi_calleridname": "Load",
        "agi_callingpres": "0",
        "agi_dnid": "100",
        "agi_rdnis": "unknown",
        "agi_context": "from-callers",
        "agi_extension": "100",
        "agi_priority": "4",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
        # asterisk-config/extensions.conf: AGI(...,linkedid=${CHANNEL(linkedid)})
        "agi_arg_1": f"linkedid={uniqueid}",
    }
    return ("".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n").encode()


def command_name(line: str) -> str:
    for name in ("GET FULL VARIABLE", "STREAM FILE", "WAIT FOR DIGIT", "SET VARIABLE", "HANGUP"):
        if line.startswith(name):
            return name
    return line.split(" ", 1)[0]


def unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


@dataclass
class Phase:
    """One batch of calls driven together, and what they measured."""

    name: str
    n: int
    hold: bool = False
    think: float = 0.0  # mean think time for STREAM FILE / WAIT FOR DIGIT, seconds
    ramp: float = 0.0  # calls start spread uniformly over this many seconds
    gaps: list[float] = field(default_factory=list)
    gaps_by_step: dict[str, list[float]] = field(default_factory=dict)
    # the same gaps ending at the kernel's receive timestamp, not at the client's loop
    wire_gaps: list[float] = field(default_factory=list)
    wire_gaps_by_step: dict[str, list[float]] = field(default_factory=dict)
    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    held: list[Call] = field(default_factory=list)
    all_held: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False
    first_commands: list[str] = field(default_factory=list)

    def arrive(self, call: Call) -> None:
        self.held.append(call)
        if len(self.held) == self.n:
            self.all_held.set()

    def release(self) -> None:
        self.released = True
        for call in self.held:
            call.send_pending()
        self.held.clear()


class Call:
    """One call as Asterisk plays it: answers each command, times each gap."""

    def __init__(self, phase: Phase, index: int, write: Callable[[bytes], None]) -> None:
        self.phase = phase
        self.index = index
        self._write = write
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.t_start = time.perf_counter()
        self.t_sent: float | None = None
        self.t_sent_ns = 0  # time.time_ns() of the same moment, for kernel timestamps
        self.buf = b""
        self.keys = list(KEYS)
        self.variables: dict[str, str] = {}
        self.commands: list[str] = []
        self.pending: str | None = None
        self.step = "setup"
        self.closed = False
        phase.in_flight += 1
        phase.max_in_flight = max(phase.max_in_flight, phase.in_flight)

    def start(self, env: bytes) -> None:
        self._write(env)

    def data(self, data: bytes, kernel_ns: int | None = None) -> None:
        now = time.perf_counter()
        self.buf += data
        while b"\n" in self.buf:
            raw, self.buf = self.buf.split(b"\n", 1)
            self.command(raw.decode("utf-8", "replace").rstrip("\r"), now, kernel_ns)

    def command(self, line: str, now: float, kernel_ns: int | None = None) -> None:
        phase = self.phase
        name = command_name(line)
        if self.t_sent is None:
            phase.setup.append(now - self.t_start)
        else:
            step = f"{len(self.commands):02d} {name}"
            gap = now - self.t_sent
            phase.gaps.append(gap)
            phase.gaps_by_step.setdefault(step, []).append(gap)
            if kernel_ns is not None:
                wire = (kernel_ns - self.t_sent_ns) / 1e9
                phase.wire_gaps.append(wire)
                phase.wire_gaps_by_step.setdefault(step, []).append(wire)
        self.commands.append(line)
        reply = self.answer(line, name)
        self.t_sent = None
        if phase.hold and not phase.released and name == "WAIT FOR DIGIT":
            self.pending = reply
            phase.arrive(self)
        elif phase.think and name in ("STREAM FILE", "WAIT FOR DIGIT"):
            self.pending = reply
            delay = random.uniform(0.75 * phase.think, 1.25 * phase.think)
            self.loop.call_later(delay, self.send_pending)
        else:
            self.send(reply)

    def answer(self, line: str, name: str) -> str:
        if name == "GET FULL VARIABLE":
            return f"200 result=1 (bench.{self.index})"
        if name == "STREAM FILE":
            return "200 result=0 endpos=8000"
        if name == "WAIT FOR DIGIT":
            key = self.keys.pop(0) if self.keys else None
            return f"200 result={ord(key)}" if key else "200 result=0"
        if name == "SET VARIABLE":
            words = line.split(" ", 3)
            if len(words) == 4:
                self.variables[unquote(words[2])] = unquote(words[3])
            return "200 result=1"
        if name in ("HANGUP", "NOOP"):
            return "200 result=1" if name == "HANGUP" else "200 result=0"
        self.phase.failures.append(f"unexpected command {line[:60]!r}")
        return "510 Invalid or unknown command"

    def send_pending(self) -> None:
        if self.pending is not None and not self.closed:
            reply, self.pending = self.pending, None
            self.send(reply)

    def send(self, reply: str) -> None:
        data = (reply + "\n").encode()
        self.t_sent_ns = time.time_ns()
        self.t_sent = time.perf_counter()
        self._write(data)

    def closed_by_peer(self, error: str | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        phase = self.phase
        phase.in_flight -= 1
        if self.t_sent is not None:
            phase.teardown.append(time.perf_counter() - self.t_sent)
        if error:
            phase.failures.append(error)
        elif self.variables.get("HOTLINE_QUEUE") != EXPECTED_QUEUE:
            phase.failures.append(
                f"call {self.index} ended without HOTLINE_QUEUE={EXPECTED_QUEUE} "
                f"after {len(self.commands)} commands"
            )
        if not phase.first_commands:
            phase.first_commands = list(self.commands)
        if not self.done.done():
            self.done.set_result(None)


_TIMESPEC = struct.Struct("@qq")


class KernelStampedCall:
    """A FastAGI connection read with recvmsg(), for the kernel's receive timestamps.

    The client's own event loop is part of every gap timed when a command is read
    (see ``client_loop_lag``).  SO_TIMESTAMPNS stamps each segment when it reaches
    this socket, so the *wire* gap, from just before the reply is written to the
    next command arriving, is what the server and the loopback took, without the
    time the command then waited for the client's loop.
    """

    def __init__(self, call: Call, sock: socket.socket) -> None:
        self.call = call
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self.close(f"connection error: {e}")
            return
        if sent < len(data):  # never seen with replies this small; kept correct anyway
            self.loop.create_task(self.loop.sock_sendall(self.sock, data[sent:]))

    def _readable(self) -> None:
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        except OSError as e:
            self.close(f"connection error: {e}")
            return
        if not data:
            self.close(None)
            return
        stamp: int | None = None
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack(value[: _TIMESPEC.size])
                stamp = sec * 1_000_000_000 + nsec
        self.call.data(data, stamp)

    def close(self, error: str | None) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        self.call.closed_by_peer(error)


class PipeCall(asyncio.SubprocessProtocol):
    """A classic AGI process: env and replies to its stdin, commands from its stdout."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.exited: asyncio.Future[int] = call.loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.call.data(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.call.closed_by_peer(f"stdout error: {exc}" if exc else None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(0)


# -- engines --------------------------------------------------------------------------------


class Engine:
    name = ""

    async def call(self, phase: Phase, index: int) -> None:
        raise NotImplementedError

    def memory_kb(self, phase: Phase) -> dict[str, int]:
        raise NotImplementedError

    def cpu_s(self) -> float:
        raise NotImplementedError


class HotlineEngine(Engine):
    name = "hotline"

    def __init__(
        self, workdir: Path, template_db: Path, prompts: Path, pin: bool, server_args: list[str]
    ) -> None:
        self.db = workdir / "hotline.db"
        shutil.copy(template_db, self.db)
        self.log_path = workdir / "server.log"
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                PYTHON,
                str(Path(__file__).resolve()),
                "--serve",
                "--db",
                str(self.db),
                "--prompts",
                str(prompts),
                *server_args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            cwd=REPO,
            preexec_fn=(lambda: os.sched_setaffinity(0, {SERVER_CPU})) if pin else None,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}; see {self.log_path}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid
        self.idle_rss_kb = 0
        self.stats: dict[str, Any] = {}

    async def call(self, phase: Phase, index: int) -> None:
        loop = asyncio.get_running_loop()
        call = Call(phase, index, lambda b: None)  # setup counts from before the connect
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.port))
        except OSError as e:
            sock.close()
            call.closed_by_peer(f"connect failed: {e}")
            return
        conn = KernelStampedCall(call, sock)
        call._write = conn.write  # type: ignore[method-assign]
        conn.start()
        call.start(agi_env("hotline", f"1700000000.{index}"))
        try:
            await asyncio.wait_for(asyncio.shield(call.done), CALL_TIMEOUT)
        finally:
            conn.close(None)

    def internal_gaps(self) -> dict[str, list[float]]:
        """The server's own per-step timings since the last call (and reset them)."""
        out = self.db.parent / "server-internal.json"
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
        os.kill(self.pid, signal.SIGUSR1)
        for _ in range(500):
            if out.exists():
                data: dict[str, list[float]] = json.loads(out.read_text())
                out.unlink()
                return data
            time.sleep(0.01)
        raise RuntimeError("the server did not write its internal timings")

    def memory_kb(self, phase: Phase) -> dict[str, int]:
        rss = proc_status_kb(self.pid, "VmRSS")
        return {
            "server_rss_kb": rss,
            "idle_rss_kb": self.idle_rss_kb,
            "per_call_kb": round((rss - self.idle_rss_kb) / phase.n),
        }

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    def close(self) -> dict[str, Any]:
        hwm = proc_status_kb(self.pid, "VmHWM")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = self.proc.stdout.read().decode()
        self.proc.wait(timeout=30)
        self.log_file.close()
        for line in out.splitlines():
            if line.startswith("STATS "):
                self.stats = json.loads(line[6:])
        levels: dict[str, int] = {}
        problems: list[str] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                problems.append(line[:200])
                continue
            levels[event.get("level", "?")] = levels.get(event.get("level", "?"), 0) + 1
            if event.get("level") in ("warning", "error", "critical"):
                problems.append(event.get("msg", "")[:200])
        return {
            "peak_rss_kb": hwm,
            "server_stats": self.stats,
            "log_levels": levels,
            "log_problems": sorted(set(problems))[:10],
        }


class FloorEngine(HotlineEngine):
    """``serve_floor`` in its own process, driven like Hotline."""

    name = "floor"

    def internal_gaps(self) -> dict[str, list[float]]:
        return {}


class ClassicEngine(Engine):
    name = "pyst2"

    def __init__(self, workdir: Path, template_db: Path, pin: bool) -> None:
        self.db = workdir / "classic.db"
        shutil.copy(template_db, self.db)
        self.argv = [PYTHON, str(CLASSIC_SCRIPT), str(self.db)]
        if pin:
            # taskset execs the script on the server CPU.  Not preexec_fn: Popen would
            # then wait for the child to get that (busy) CPU, blocking the client's loop.
            self.argv = ["taskset", "-c", str(SERVER_CPU), *self.argv]
        self.live: dict[int, int] = {}  # call index -> pid

    async def call(self, phase: Phase, index: int) -> None:
        loop = asyncio.get_running_loop()
        holder: list[PipeCall] = []

        def factory() -> PipeCall:
            c = Call(phase, index, lambda b: None)
            holder.append(PipeCall(c))
            return holder[0]

        t0 = time.perf_counter()
        try:
            transport, proto = await loop.subprocess_exec(
                factory,
                *self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # Asterisk gives AGI scripts /dev/null too
                cwd="/",
            )
        except OSError as e:
            phase.failures.append(f"spawn failed: {e}")
            return
        call = proto.call
        call.t_start = t0  # setup counts from the spawn, as Asterisk's fork+exec
        stdin = transport.get_pipe_transport(0)
        assert stdin is not None
        call._write = stdin.write  # type: ignore[attr-defined]
        self.live[index] = transport.get_pid()
        call.start(agi_env("classic_agi_menu.py", f"1700000000.{index}"))
        try:
            await asyncio.wait_for(asyncio.shield(call.done), CALL_TIMEOUT)
            await asyncio.wait_for(asyncio.shield(proto.exited), CALL_TIMEOUT)
        finally:
            self.live.pop(index, None)
            if transport.get_returncode() is None:
                with contextlib.suppress(ProcessLookupError):
                    transport.kill()
            transport.close()

    def memory_kb(self, phase: Phase) -> dict[str, int]:
        rss = pss = 0
        for pid in list(self.live.values()):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                rss += proc_status_kb(pid, "VmRSS")
                pss += proc_pss_kb(pid)
        return {
            "processes": len(self.live),
            "sum_rss_kb": rss,
            "sum_pss_kb": pss,
            "per_call_kb": round(rss / phase.n),
            "per_call_pss_kb": round(pss / phase.n),
        }

    def cpu_s(self) -> float:
        return children_cpu_s()


# -- running phases -------------------------------------------------------------------------


async def run_phase(engine: Engine, phase: Phase) -> dict[str, Any]:
    memory: dict[str, int] = {}
    cpu0 = engine.cpu_s()
    busy0, own0 = system_busy_s(), own_cpu_s()
    overflows0 = listen_overflows()
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        if phase.ramp:
            await asyncio.sleep(phase.ramp * i / phase.n)
        try:
            await engine.call(phase, i)
        except TimeoutError:
            phase.failures.append(f"call {i} timed out after {CALL_TIMEOUT:g} s")

    lags: list[float] = []

    async def lag_monitor() -> None:
        # how late the client's own event loop wakes up: the client's share of every gap
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    monitor = asyncio.ensure_future(lag_monitor())
    paused = 0.0
    tasks = [asyncio.ensure_future(one(i)) for i in range(phase.n)]
    if phase.hold:
        waiter = asyncio.ensure_future(phase.all_held.wait())
        await asyncio.wait(
            [waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=CALL_TIMEOUT
        )
        if phase.all_held.is_set():
            t_pause = time.perf_counter()
            await asyncio.sleep(0.5)  # let the server side settle before reading /proc
            memory = engine.memory_kb(phase)
            paused = time.perf_counter() - t_pause
        else:
            phase.failures.append(f"only {len(phase.held)} of {phase.n} calls reached the hold")
            waiter.cancel()
        phase.release()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0 - paused  # the memory reading's pause is not call time
    cpu = engine.cpu_s() - cpu0
    client_cpu = own_cpu_s() - own0
    # What the rest of the machine used meanwhile (anything else running skews the numbers;
    # a few hundredths of a second per second is the kernel's own and /proc's noise).
    other_cpu = system_busy_s() - busy0 - client_cpu - cpu
    monitor.cancel()
    return {
        "wall_s": wall,
        "calls_per_s": phase.n / wall,
        "cpu_ms_per_call": cpu * 1000 / phase.n,
        "server_cpu_utilisation": cpu / wall,
        "client_cpu_utilisation": client_cpu / wall,
        "other_cpu_utilisation": other_cpu / wall,
        "listen_overflows": listen_overflows() - overflows0,
        "client_loop_lag": summary_ms(lags),
        "memory": memory,
        "max_in_flight": phase.max_in_flight,
    }


def summary_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": pct(values, 50) * 1000,
        "p99_ms": pct(values, 99) * 1000,
        "max_ms": max(values) * 1000,
        "mean_ms": statistics.fmean(values) * 1000,
    }


class PromptMismatch(RuntimeError):
    """Hotline and the pyst2 baseline played different prompt files: not the same menu."""


# The engines whose prompts must be the same files (the floor plays placeholders).
SAME_PROMPTS = ("hotline", "pyst2")


def check_same_prompts(played: dict[str, list[str]]) -> bool | None:
    """True when Hotline and pyst2 played the same files; None if only one ran.

    Raises :class:`PromptMismatch` otherwise: a baseline that plays another
    menu (a flow changed, the baseline was not) is no baseline.
    """
    compared = {e: played[e] for e in SAME_PROMPTS if e in played}
    if len(compared) < 2:
        return None
    if compared["hotline"] != compared["pyst2"]:
        raise PromptMismatch(
            "the pyst2 baseline did not play the prompts Hotline played: "
            f"hotline {compared['hotline']}, pyst2 {compared['pyst2']} "
            "(bench/classic_agi_menu.py must say dialplans/hotline.yaml's texts)"
        )
    return True


async def run_engine(
    engine: Engine, n: int, args: argparse.Namespace, played: dict[str, list[str]]
) -> dict[str, Any]:
    """Warm-up, then the phases; ``played``: each engine's prompt files, checked here."""
    out: dict[str, Any] = {"engine": engine.name, "n": n}
    # warm-up: renders the prompts on the first run, fills caches, then idles
    warm = Phase("warmup", 1)
    for _ in range(args.warmup):
        warm.n = 1
        await run_phase(engine, warm)
    if warm.failures:
        raise RuntimeError(f"{engine.name} warm-up call failed: {warm.failures[:3]}")
    out["commands_per_call"] = len(warm.first_commands)
    out["command_sequence"] = [command_name(c) for c in warm.first_commands]
    out["played"] = [
        unquote(c.split(" ")[2]) for c in warm.first_commands if c.startswith("STREAM FILE")
    ]
    out["variables_set"] = [
        unquote(c.split(" ")[2]) for c in warm.first_commands if c.startswith("SET VARIABLE")
    ]
    played.setdefault(engine.name, out["played"])
    check_same_prompts(played)  # before the phases: a mismatch costs seconds, not minutes
    if isinstance(engine, HotlineEngine):
        await asyncio.sleep(0.5)
        engine.idle_rss_kb = proc_status_kb(engine.pid, "VmRSS")
        engine.internal_gaps()  # forget the warm-up's
    phases: dict[str, Any] = {}
    names = list(args.phases)
    if engine.name == "pyst2" and n > args.classic_full_max:
        names = [x for x in names if x == "hold"]  # one process per call: CPU-bound, slow
    for name in names:
        if name == "hold":
            ph = Phase("hold", n, hold=True)
        elif name == "saturate":
            ph = Phase("saturate", n)
        else:
            ramp = n / args.rate
            # six answers wait a think time: a call lasts ~1.25 ramps, so all N overlap
            think = args.think if args.think else 1.25 * ramp / 6
            ph = Phase("paced", n, think=think, ramp=ramp)
        rounds = max(1, -(-args.saturate_calls // n)) if name == "saturate" else 1
        merged: dict[str, Any] = {"rounds": [], "failures": []}
        gaps: list[float] = []
        setup: list[float] = []
        teardown: list[float] = []
        by_step: dict[str, list[float]] = {}
        wire: list[float] = []
        wire_by_step: dict[str, list[float]] = {}
        for r in range(rounds):
            if r:
                ph = Phase(ph.name, n, hold=ph.hold, think=ph.think, ramp=ph.ramp)
            log(f"{engine.name} N={n} {name} round {r + 1}/{rounds}")
            res = await run_phase(engine, ph)
            merged["rounds"].append(res)
            merged["failures"].extend(ph.failures)
            gaps += ph.gaps
            setup += ph.setup
            teardown += ph.teardown
            for k, v in ph.gaps_by_step.items():
                by_step.setdefault(k, []).extend(v)
            wire += ph.wire_gaps
            for k, v in ph.wire_gaps_by_step.items():
                wire_by_step.setdefault(k, []).extend(v)
            log(
                f"  wall {res['wall_s']:.2f} s, {res['calls_per_s']:.0f} calls/s, "
                f"cmd p50 {pct(ph.gaps, 50) * 1000:.3f} ms p99 {pct(ph.gaps, 99) * 1000:.3f} ms"
                + (
                    f" (wire p50 {pct(ph.wire_gaps, 50) * 1000:.3f} "
                    f"p99 {pct(ph.wire_gaps, 99) * 1000:.3f} ms), "
                    if ph.wire_gaps
                    else ", "
                )
                + f"max in flight {ph.max_in_flight}, failures {len(ph.failures)}, "
                f"other processes' CPU {res['other_cpu_utilisation']:.2f}"
                + (f", memory {res['memory']}" if res["memory"] else "")
            )
        walls = sum(r["wall_s"] for r in merged["rounds"])
        merged["calls_per_s"] = n * rounds / walls
        merged["cpu_ms_per_call"] = statistics.fmean(r["cpu_ms_per_call"] for r in merged["rounds"])
        merged["command_gap"] = summary_ms(gaps)
        merged["wire_gap"] = summary_ms(wire)
        merged["wire_by_step"] = {k: summary_ms(v) for k, v in sorted(wire_by_step.items())}
        merged["setup"] = summary_ms(setup)
        merged["teardown"] = summary_ms(teardown)
        merged["by_step"] = {k: summary_ms(v) for k, v in sorted(by_step.items())}
        merged["failure_count"] = len(merged["failures"])
        merged["failures"] = merged["failures"][:10]
        merged["max_in_flight"] = max(r["max_in_flight"] for r in merged["rounds"])
        if name == "hold":
            merged["memory"] = merged["rounds"][0]["memory"]
        if isinstance(engine, HotlineEngine):
            internal = engine.internal_gaps()
            merged["server_internal"] = summary_ms([g for v in internal.values() for g in v])
            merged["server_internal_by_step"] = {
                k: summary_ms(v) for k, v in sorted(internal.items())
            }
        phases[name] = merged
    out["phases"] = phases
    return out


# -- report ---------------------------------------------------------------------------------


def fmt_ms(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """Two tables: the summary, and the paced phase's overhead step by step."""

    def ph(r: dict[str, Any], name: str) -> dict[str, Any]:
        phase: dict[str, Any] = r["phases"].get(name, {})
        return phase

    def trio(d: dict[str, Any], keys: tuple[str, ...] = ("p50_ms", "p99_ms")) -> str:
        return " / ".join(fmt_ms(d, k) for k in keys) if d.get("count") else "–"

    def gap_count(p: dict[str, Any]) -> str:
        """How many gaps the percentiles are over: every call's, setup not included."""
        gaps = int(p.get("command_gap", {}).get("count", 0))
        calls = int(p.get("setup", {}).get("count", 0))
        if not gaps:
            return "–"
        per_call = f" ({calls} x {gaps // calls})" if calls and gaps % calls == 0 else ""
        return f"{gaps:,}{per_call}"

    rows = [
        "| Engine | N | calls/s (saturated) | server CPU ms/call | paced: max calls in flight "
        "| paced: command/reply gaps timed (calls x gaps per call) "
        "| paced: cmd overhead p50 / p99 / max, ms | paced: the same to the kernel's receive "
        "stamp (no client lag) p50 / p99 / max, ms | paced: of which inside the server, "
        "p50 / p99, ms | paced: call setup p50 / p99, ms | paced: teardown p50 / p99, ms "
        "| saturated: cmd overhead p50 / p99, ms | memory per call | failed calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        sat, paced, hold = ph(r, "saturate"), ph(r, "paced"), ph(r, "hold")
        mem = hold.get("memory", {})
        if r["engine"] in ("hotline", "floor") and mem:
            memory = f"{mem['per_call_kb']} KiB (server RSS delta)"
        elif mem:
            memory = (
                f"{mem['per_call_kb'] / 1024:.1f} MiB RSS, "
                f"{mem['per_call_pss_kb'] / 1024:.1f} MiB PSS"
            )
        else:
            memory = "–"
        if not sat and not paced and hold:
            memory += " ‡"
        failed = sum(p.get("failure_count", 0) for p in r["phases"].values())
        total = sum(len(p["rounds"]) * r["n"] for p in r["phases"].values())
        cells = [
            r["engine"],
            str(r["n"]),
            f"{sat['calls_per_s']:.0f}" if sat else "–",
            f"{sat['cpu_ms_per_call']:.1f}" if sat else "–",
            str(paced["max_in_flight"]) if paced else "–",
            gap_count(paced),
            trio(paced.get("command_gap", {}), ("p50_ms", "p99_ms", "max_ms")),
            trio(paced.get("wire_gap", {}), ("p50_ms", "p99_ms", "max_ms")),
            trio(paced.get("server_internal", {})),
            trio(paced.get("setup", {})),
            trio(paced.get("teardown", {})),
            trio(sat.get("command_gap", {})),
            memory,
            f"{failed} of {total}",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    if any("‡" in row for row in rows):
        rows.append("")
        rows.append(
            "‡ memory only (the hold phase; above --classic-full-max): with a process per "
            "call each phase at this N takes about two minutes."
        )
    other = [
        rnd["other_cpu_utilisation"]
        for r in results
        for p in r["phases"].values()
        for rnd in p["rounds"]
    ]
    if other:
        rows += [
            "",
            f"Other processes on the machine used at most {max(other):.2f} CPU during any "
            "phase (from /proc/stat, minus the client's and the server side's own CPU).",
        ]
    paced_runs = [r for r in results if ph(r, "paced").get("by_step")]
    if paced_runs:
        steps = sorted({k for r in paced_runs for k in ph(r, "paced")["by_step"]})
        columns: list[tuple[str, dict[str, Any], str]] = []
        for r in paced_runs:
            columns.append((f"{r['engine']} N={r['n']}", ph(r, "paced"), "by_step"))
            if ph(r, "paced").get("wire_by_step"):
                columns.append(
                    (f"{r['engine']} N={r['n']} to kernel stamp", ph(r, "paced"), "wire_by_step")
                )
            if ph(r, "paced").get("server_internal_by_step"):
                columns.append(
                    (
                        f"{r['engine']} N={r['n']} inside server",
                        ph(r, "paced"),
                        "server_internal_by_step",
                    )
                )
        rows += [
            "",
            "Paced phase, overhead per step (the command the server sent after the client's "
            "reply), p50 / p99 ms:",
            "",
            "| step | " + " | ".join(c[0] for c in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for step in ["setup", *steps, "teardown"]:
            cells = [step]
            for _, p, key in columns:
                if step in ("setup", "teardown"):
                    d = p.get(step) if key == "by_step" else None
                else:
                    d = p[key].get(step)
                cells.append(trio(d or {}))
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def git_state() -> dict[str, Any]:
    """The commit measured, and any uncommitted change to the server's code."""

    def git(*argv: str) -> str:
        try:
            return subprocess.run(
                ["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified_server_files": git("status", "--porcelain", "--", "ivr", "hotline").split("\n")
        if git("status", "--porcelain", "--", "ivr", "hotline")
        else [],
    }


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    pin = (
        not args.no_pin
        and os.cpu_count()
        and os.cpu_count() >= 2
        and hasattr(os, "sched_setaffinity")
    )
    if pin:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with contextlib.suppress(AttributeError, NotImplementedError):
        watcher = asyncio.PidfdChildWatcher()  # no thread per child process
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    started = machine()
    started["git"] = git_state()
    results: list[dict[str, Any]] = []
    played: dict[str, list[str]] = {}
    server_args = ["--log-level", args.log_level]
    server_args += ["--server-loop", args.server_loop]
    if args.postgresql:
        sys.path.insert(0, str(REPO))
        from harness.postgres import create_postgres_database, postgres_url

        name = await create_postgres_database(args.postgresql, "hotline_bench")
        log(f"PostgreSQL database {name} (left in place; drop it when done)")
        server_args += ["--database-url", postgres_url(args.postgresql, name)]
    if args.switch_interval:
        server_args += ["--switch-interval", str(args.switch_interval)]
    if args.no_interaction_writes:
        server_args.append("--no-interaction-writes")
    with tempfile.TemporaryDirectory(prefix="hotline-bench-", dir=args.tmpdir) as tmp:
        work = Path(tmp)
        template = work / "template.db"
        subprocess.run(
            [PYTHON, str(Path(__file__).resolve()), "--prepare-db", str(template)],
            check=True,
            cwd=REPO,
        )
        prompts = work / "prompts"
        prompts.mkdir()
        for engine_name in args.engines:
            ns = args.classic_n if engine_name == "pyst2" else args.n
            for n in ns:
                run_dir = work / f"{engine_name}-{n}"
                run_dir.mkdir()
                log(f"== {engine_name}, N={n}")
                engine: Engine
                if engine_name == "hotline":
                    engine = HotlineEngine(run_dir, template, prompts, bool(pin), server_args)
                elif engine_name == "floor":
                    engine = FloorEngine(
                        run_dir,
                        template,
                        prompts,
                        bool(pin),
                        ["--serve-floor", "--server-loop", args.server_loop],
                    )
                else:
                    engine = ClassicEngine(run_dir, template, bool(pin))
                try:
                    res = await run_engine(engine, n, args, played)
                finally:
                    if isinstance(engine, HotlineEngine):
                        extra = engine.close()
                if isinstance(engine, HotlineEngine):
                    res["server"] = extra
                results.append(res)
    same = check_same_prompts(played)
    log(
        "same prompts played by hotline and pyst2: "
        + ("yes" if same else "not compared (only one of them ran)")
    )
    return {
        "machine": started,
        "loadavg_at_end": os.getloadavg(),
        "pinned": bool(pin),
        "args": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k not in ("serve", "prepare_db", "db", "prompts")
        },
        # hotline vs pyst2 (the floor plays placeholders); None: not both ran
        "same_prompts_played": same,
        "results": results,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="concurrent calls for Hotline (default: 100 1000)",
    )
    p.add_argument(
        "--classic-n",
        type=int,
        nargs="+",
        default=[100],
        help="concurrent calls for the pyst2 baseline (default: 100; 1000 adds ~2 minutes)",
    )
    p.add_argument(
        "--engines",
        nargs="+",
        choices=["hotline", "floor", "pyst2"],
        default=["hotline", "floor", "pyst2"],
        help="floor: a FastAGI server that only sends the same commands (what asyncio and "
        "the machine cost per command)",
    )
    p.add_argument(
        "--phases",
        nargs="+",
        choices=["hold", "saturate", "paced"],
        default=["hold", "saturate", "paced"],
    )
    p.add_argument(
        "--saturate-calls",
        type=int,
        default=200,
        help="saturation: rounds of N calls until at least this many (default 200)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=60.0,
        help="paced: new calls per second (default 60; the demo menu's audio on this path "
        "lasts ~21 s, so 1000 callers in the menu at once arrive at ~48/s)",
    )
    p.add_argument(
        "--think",
        type=float,
        default=None,
        help="paced: mean think time of STREAM FILE / WAIT FOR DIGIT, s "
        "(default: 1.25 x ramp / 6, so a call lasts about 1.25 x the ramp N/rate)",
    )
    p.add_argument(
        "--classic-full-max",
        type=int,
        default=100,
        help="pyst2 runs only the hold phase above this N (default 100; ~80 ms CPU per call)",
    )
    p.add_argument("--warmup", type=int, default=5, help="sequential warm-up calls per run")
    p.add_argument("--log-level", default="INFO", help="Hotline server log level (default INFO)")
    p.add_argument("--no-pin", action="store_true", help="do not pin client and server to CPUs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tmpdir", help="where the databases and prompts go (default: $TMPDIR)")
    p.add_argument(
        "--switch-interval",
        type=float,
        help="experiment: sys.setswitchinterval() in the Hotline server process",
    )
    p.add_argument(
        "--no-interaction-writes",
        action="store_true",
        help="experiment: Hotline server without its interaction writes (2 per call)",
    )
    p.add_argument("--json", action="store_true", help="print every result as JSON instead")
    p.add_argument("--json-out", type=Path, help="also write every result as JSON to this file")
    p.add_argument(
        "--postgresql",
        metavar="ADMIN_URL",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Hotline on a fresh PostgreSQL database (made through ADMIN_URL) instead of SQLite",
    )
    p.add_argument(
        "--client-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the load client's event loop (the server always runs asyncio's)",
    )
    p.add_argument(
        "--server-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the Hotline server's event loop",
    )
    p.add_argument("--database-url", help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prepare-db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--prompts", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.prepare_db:
        prepare_db(args.prepare_db)
        return 0
    if args.serve_floor:
        serve_floor(args.server_loop)
        return 0
    if args.serve:
        serve(
            args.db,
            args.prompts,
            args.log_level,
            args.switch_interval,
            args.no_interaction_writes,
            args.database_url,
            args.server_loop,
        )
        return 0
    raise_fd_limit()
    random.seed(args.seed)
    try:
        if args.client_loop == "uvloop":
            # The load client plays Asterisk (C): its own event-loop lag is part of every
            # client-side figure, and asyncio's pure-Python loop with 1000 connections on
            # one core lags ~2 ms p99.  The Hotline server stays on asyncio's loop.
            import uvloop

            report = uvloop.run(bench(args))
        else:
            report = asyncio.run(bench(args))
    except PromptMismatch as e:
        log(f"ERROR: {e}")
        return 2
    report["client_loop"] = args.client_loop
    report["table"] = markdown(report["results"])
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str) if args.json else report["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
