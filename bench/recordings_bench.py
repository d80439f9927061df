#!/usr/bin/env python3
"""Recording store benchmark: ingest rate (with hashing) and search latency over 1 M rows.

Runs on SQLite (aiosqlite, a file in a temporary folder) and on PostgreSQL (a
throw-away database ``hotline_bench_<hex>`` on the local server, dropped at
the end), each freshly migrated with Alembic like ``hotline serve`` does.

Per database, in this order:

1. ``load``: bulk-load --rows (default 1,000,000) metadata rows into
   ``recordings`` with the schema's indexes in place (SQLite: ``executemany``
   on a plain sqlite3 connection in transactions of 100k rows, SQLAlchemy's
   text format for dates; PostgreSQL: asyncpg ``copy_records_to_table``),
   then ``ANALYZE`` (SQLite) / ``VACUUM ANALYZE`` (PostgreSQL, so autovacuum
   does not start in the middle of the timings).  Distributions: ~50k distinct
   callers with a long tail (a few frequent callers), 50 agents, 5 queues of
   unequal size, calls over the last 2 years in business hours, lognormal
   durations.  No files: searches only read metadata.
2. ``ingest``: --n (default 300) WAV files (8 kHz 16-bit mono, --seconds 60 s
   = 960 KB each, every one with different bytes so every hash differs) are
   written to a temporary spool and fsync'ed (MixMonitor's file is long on
   disk by the time the call ends), then ``RecordingStore.ingest`` takes
   them one after the other, as the sweeper does, with CTI call facts; the
   table already holds the 1 M rows.  Each ingest hashes the original,
   copies it with fsync, hashes the copy twice, renames, fsyncs the folder,
   inserts the row, writes the audit entry, deletes the original.  Two cache
   states: ``warm`` (spool files in the page cache, as right after a call)
   and ``cold`` (evicted with posix_fadvise DONTNEED first, so every original
   is read from disk).
3. ``search``: --searches (default 200) searches of each kind through
   ``RecordingStore.search`` as carol (compliance), default limit 100, newest
   first: by caller (callers picked from random rows, so frequent callers
   are picked more often), by agent + one week, by queue + one day, by
   call_id.  Each search is timed twice: audited (``RecordingStore.search``
   as a user gets it, one hash-chained audit entry written per search) and
   query only (the same store with an audit log that writes nothing; the
   same SELECT and row conversion).  The two alternate per search, each goes
   first half of the time.  The query plan of each kind is recorded
   (PostgreSQL: EXPLAIN ANALYZE, SQLite: EXPLAIN QUERY PLAN).

Usage:
    .venv/bin/python bench/recordings_bench.py
    .venv/bin/python bench/recordings_bench.py --db sqlite --rows 100000 --n 50
    .venv/bin/python bench/recordings_bench.py \\
        --json-out bench/results/recordings.json --md-out bench/results/recordings.md
"""

from __future__ import annotations

import argparse
import array
import asyncio
import bisect
import hashlib
import itertools
import json
import math
import os
import platform
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchstats import pct

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.postgres import create_postgres_database, drop_postgres_database, postgres_url  # noqa: E402
from hotline.recordings.crypt import SiteKeys  # noqa: E402
from hotline.recordings.store import CallFacts, RecordingStore  # noqa: E402
from hotline.records.audit import AuditLog  # noqa: E402
from hotline.records.users import Actor  # noqa: E402
from hotline.storage.db import Database  # noqa: E402

PG_ADMIN = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CAROL = Actor("carol", frozenset({"compliance"}))
TARGET_INGEST_PER_S = 50.0
TARGET_PG_SEARCH_P95_MS = 50.0
KINDS = ("caller", "agent_week", "queue_day", "call_id")
KIND_LABEL = {
    "caller": "by caller",
    "agent_week": "by agent + 1 week",
    "queue_day": "by queue + 1 day",
    "call_id": "by call_id",
}
QUEUES = {"support": 0.40, "billing": 0.25, "sales": 0.15, "tech": 0.15, "retention": 0.05}
RETENTION = {"billing": 2555}
AGENTS = [str(1001 + i) for i in range(50)]
N_CALLERS = 50_000
DAYS = 730
COLUMNS = (
    "id",
    "call_id",
    "source",
    "path",
    "caller",
    "agent",
    "queue",
    "started_at",
    "ended_at",
    "duration_s",
    "format",
    "size",
    "sha256",
    "paused",
    "retention_until",
    "legal_hold",
    "hold_reason",
)
CHUNK_ROWS = 100_000


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 2),
        "p95_ms": round(pct(ms, 95), 2),
        "p99_ms": round(pct(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else float("nan"),
        "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan"),
    }


# -- synthetic metadata ----------------------------------------------------------------------


class Population:
    """The callers, and the reference day the 2 years end on."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        numbers: set[str] = set()
        while len(numbers) < N_CALLERS:
            numbers.add(f"+49{rng.randrange(30_000_000_00, 99_999_999_99)}")
        self.callers = sorted(numbers)
        rng.shuffle(self.callers)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.first_day = today - timedelta(days=DAYS)
        self.queues = list(QUEUES)
        self.queue_weights = list(QUEUES.values())


def gen_rows(
    pop: Population, rows: int, seed: int, samples: dict[int, tuple[Any, ...]] | None = None
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows in COLUMNS order, in chunks; the same rows for the same seed.

    started_at and ended_at are Unix times here (the loaders turn them into
    what each driver wants); everything per day is computed once.
    """
    rng = random.Random(seed)
    rnd, gauss, bits = rng.random, rng.gauss, rng.getrandbits
    first = pop.first_day
    first_epoch = first.timestamp()
    days = [first + timedelta(days=d) for d in range(DAYS + 2)]
    folders = [f"{d:%Y/%m/%d}" for d in days]
    retention = {
        q: [d.date() + timedelta(days=RETENTION.get(q, 365)) for d in days] for q in QUEUES
    }
    cum = list(itertools.accumulate(pop.queue_weights))
    queues, callers, agents = pop.queues, pop.callers, AGENTS
    n_agents = len(AGENTS)
    chunk: list[tuple[Any, ...]] = []
    for i in range(rows):
        day = int(rnd() * DAYS)
        tod = min(86_399.0, max(0.0, gauss(13.5 * 3600, 3 * 3600)))
        duration = round(min(3600.0, math.exp(gauss(5.2, 0.7))), 2)  # median ~3 min
        started = first_epoch + day * 86_400 + tod
        ended_day = day + int((tod + duration) // 86_400)
        epoch = int(started)
        call_id = f"{epoch}.{i}"
        source = f"{call_id}--{epoch + 3 + int(rnd() * 57)}.{i + 1}.wav"
        queue = queues[min(len(queues) - 1, bisect.bisect(cum, rnd() * cum[-1]))]
        row = (
            f"{bits(128):032x}",
            call_id,
            source,
            f"{folders[ended_day]}/{source}",
            callers[min(N_CALLERS - 1, int(N_CALLERS * rnd() ** 2))],
            agents[int(rnd() * n_agents)],
            queue,
            started,
            started + duration,
            duration,
            "wav",
            int(duration * 16000) + 44,
            f"{bits(256):064x}",
            "[]",
            retention[queue][ended_day],
            rnd() < 0.001,
            None,
        )
        if samples is not None and i in samples:
            samples[i] = row
        chunk.append(row)
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def make_targets(
    pop: Population, samples: dict[int, tuple[Any, ...]], picks: list[int], seed: int
) -> dict[str, list[dict[str, Any]]]:
    """Search criteria per kind; caller and call_id come from the sampled rows."""
    rng = random.Random(seed + 1)
    targets: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for i in picks:
        row = samples[i]
        targets["caller"].append({"caller": row[4]})
        targets["call_id"].append({"call_id": row[1]})
    for _ in picks:
        since = pop.first_day + timedelta(days=rng.randrange(DAYS - 7))
        targets["agent_week"].append(
            {"agent": rng.choice(AGENTS), "since": since, "until": since + timedelta(days=7)}
        )
        since = pop.first_day + timedelta(days=rng.randrange(DAYS))
        targets["queue_day"].append(
            {"queue": rng.choice(pop.queues), "since": since, "until": since + timedelta(days=1)}
        )
    return targets


EPOCH = datetime(1970, 1, 1)


def sqlite_ts(t: float) -> str:
    """A Unix time in SQLAlchemy's storage format for DateTime on SQLite (UTC, no offset)."""
    return (EPOCH + timedelta(seconds=t)).isoformat(" ", "microseconds")


def sqlite_dt(d: datetime) -> str:
    """SQLAlchemy's storage format for DateTime on SQLite (UTC, no offset)."""
    return f"{d.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"


# -- databases --------------------------------------------------------------------------------


def sqlite_load(
    path: Path, pop: Population, rows: int, seed: int, samples: dict[int, tuple[Any, ...]]
) -> float:
    """Bulk insert; returns seconds (load + ANALYZE are timed separately by the caller)."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA journal_mode=MEMORY")  # this connection only
        con.execute("PRAGMA cache_size=-1048576")  # 1 GiB, this connection only
        sql = f"INSERT INTO recordings ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 17)})"
        t0 = time.perf_counter()
        for chunk in gen_rows(pop, rows, seed, samples):
            con.execute("BEGIN")
            con.executemany(
                sql,
                [
                    (
                        *r[:7],
                        sqlite_ts(r[7]),
                        sqlite_ts(r[8]),
                        *r[9:14],
                        r[14].isoformat(),
                        int(r[15]),
                        r[16],
                    )
                    for r in chunk
                ],
            )
            con.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        con.close()


def sqlite_analyze(path: Path) -> float:
    con = sqlite3.connect(path)
    try:
        t0 = time.perf_counter()
        con.execute("ANALYZE")
        con.commit()
        return time.perf_counter() - t0
    finally:
        con.close()


async def pg_load(
    dsn: str, pop: Population, rows: int, seed: int, samples: dict[int, tuple[Any, ...]]
) -> tuple[float, float]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        ts = datetime.fromtimestamp
        for chunk in gen_rows(pop, rows, seed, samples):
            await conn.copy_records_to_table(
                "recordings",
                records=[(*r[:7], ts(r[7], UTC), ts(r[8], UTC), *r[9:]) for r in chunk],
                columns=list(COLUMNS),
            )
        loaded = time.perf_counter() - t0
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE recordings")
        return loaded, time.perf_counter() - t0
    finally:
        await conn.close()


SEARCH_SQL = {
    "caller": "caller = {0}",
    "agent_week": "agent = {0} AND started_at >= {1} AND started_at < {2}",
    "queue_day": "queue = {0} AND started_at >= {1} AND started_at < {2}",
    "call_id": "call_id = {0}",
}


def search_params(kind: str, t: dict[str, Any], sqlite: bool) -> list[Any]:
    key = {"caller": "caller", "call_id": "call_id", "agent_week": "agent", "queue_day": "queue"}
    params: list[Any] = [t[key[kind]]]
    if "since" in t:
        params += (
            [sqlite_dt(t["since"]), sqlite_dt(t["until"])] if sqlite else [t["since"], t["until"]]
        )
    return params


def plans_sqlite(path: Path, targets: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    con = sqlite3.connect(path)
    out = {}
    try:
        for kind in KINDS:
            where = SEARCH_SQL[kind].format("?", "?", "?")
            sql = f"SELECT * FROM recordings WHERE {where} ORDER BY started_at DESC LIMIT 100"
            plan = con.execute(
                f"EXPLAIN QUERY PLAN {sql}", search_params(kind, targets[kind][0], True)
            )
            out[kind] = "\n".join(str(r[-1]) for r in plan)
    finally:
        con.close()
    return out


async def plans_pg(dsn: str, targets: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    out = {}
    try:
        for kind in KINDS:
            where = SEARCH_SQL[kind].format("$1", "$2", "$3")
            sql = f"SELECT * FROM recordings WHERE {where} ORDER BY started_at DESC LIMIT 100"
            rows = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}",
                *search_params(kind, targets[kind][0], False),
            )
            out[kind] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    return out


# -- ingest -----------------------------------------------------------------------------------


def base_pcm(seconds: float, seed: int) -> bytes:
    """Speech-ish 8 kHz 16-bit mono: a few voiced partials with a syllable envelope, and noise."""
    rng = random.Random(seed)
    n = int(8000 * seconds)
    out = array.array("h", bytes(2 * n))
    two_pi = 2 * math.pi
    for i in range(n):
        t = i / 8000
        env = 0.5 + 0.5 * math.sin(two_pi * 3.7 * t)  # ~4 syllables/s
        v = env * (
            3000 * math.sin(two_pi * 140 * t)
            + 1500 * math.sin(two_pi * 280 * t)
            + 700 * math.sin(two_pi * 1200 * t)
        )
        out[i] = max(-32768, min(32767, int(v + rng.gauss(0, 300))))
    return out.tobytes()


def make_spool(
    spool: Path, n: int, pcm: bytes, run: int, rng: random.Random, cold: bool
) -> list[tuple[Path, CallFacts]]:
    """N spool files, each with different bytes; fsync'ed; evicted from the cache if cold.

    Names are unique across runs (``run``): a known name would be taken for a
    restart after a crash and only its spool file removed.
    """
    spool.mkdir(parents=True, exist_ok=True)
    base = int(time.time()) - 86_400
    files = []
    for i in range(n):
        data = bytearray(pcm)
        # A different stretch of noise in every file, so every SHA-256 differs.
        at = rng.randrange(0, len(data) - 8192) & ~1
        data[at : at + 8192] = rng.randbytes(8192)
        linkedid = f"{base + 7 * i}.{run * 100_000 + i}"
        path = spool / f"{linkedid}--{base + 7 * i + 4}.{i + 1}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(bytes(data))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            if cold:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        facts = CallFacts(
            caller=f"+4930{rng.randrange(1_000_000, 9_999_999)}",
            agent=rng.choice(AGENTS),
            queue=rng.choice(list(QUEUES)),
        )
        files.append((path, facts))
    return sorted(files, key=lambda f: f[0].name)  # the sweeper's order


async def bench_ingest(
    db: Database,
    work: Path,
    n: int,
    pcm: bytes,
    run: int,
    seed: int,
    cold: bool,
    keys: SiteKeys | None = None,
) -> dict[str, Any]:
    spool, store_dir = work / "spool", work / "store"
    rng = random.Random(seed * 1000 + run)
    files = make_spool(spool, n, pcm, run, rng, cold)
    size = sum(f.stat().st_size for f, _ in files)
    store = RecordingStore(
        db,
        store_dir,
        spool,
        AuditLog.open(db, work / "audit.key", work / "audit.jsonl"),
        retention_days=RETENTION,
        keys=keys,
    )
    lat = []
    t0 = time.perf_counter()
    for f, facts in files:
        t = time.perf_counter()
        await store.ingest(f, facts)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    left = list(spool.glob("*.wav"))
    stored = [p for p in store_dir.rglob("*.wav") if not p.name.startswith(".")]
    shutil.rmtree(spool, ignore_errors=True)
    shutil.rmtree(store_dir, ignore_errors=True)
    if left or len(stored) != n:
        raise RuntimeError(f"ingest incomplete: {len(left)} left in spool, {len(stored)} stored")
    return {
        "store": "plain" if keys is None else "encrypted",
        "cache": "cold" if cold else "warm",
        "recordings": n,
        "bytes_each": size // n,
        "seconds": round(wall, 3),
        "recordings_per_s": round(n / wall, 1),
        "mb_per_s": round(size / wall / 1e6, 1),
        "latency": summary_ms(lat),
        "latencies_s": lat,
    }


def pool_ingest(store: str, cache: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one store kind and cache state: the median run's rate, the range, latency."""
    lat = [x for r in runs for x in r.pop("latencies_s")]
    rates = [r["recordings_per_s"] for r in runs]
    return {
        "store": store,
        "cache": cache,
        "runs": len(runs),
        "recordings": runs[0]["recordings"],
        "bytes_each": runs[0]["bytes_each"],
        "recordings_per_s": round(statistics.median(rates), 1),
        "recordings_per_s_min": min(rates),
        "recordings_per_s_max": max(rates),
        "mb_per_s": round(statistics.median(r["mb_per_s"] for r in runs), 1),
        "latency": summary_ms(lat),
        "per_run": runs,
    }


# -- search -----------------------------------------------------------------------------------


class NoAudit:
    """Stands in for the audit log to time the query alone."""

    async def record(self, *args: Any, **kwargs: Any) -> None:
        return None


async def bench_search(
    db: Database, work: Path, targets: dict[str, list[dict[str, Any]]], warmup: int
) -> dict[str, Any]:
    audited = RecordingStore(
        db,
        work / "store",
        work / "spool",
        AuditLog.open(db, work / "audit.key", work / "audit.jsonl"),
    )
    plain = RecordingStore(db, work / "store", work / "spool", NoAudit())  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for kind in KINDS:
        times: dict[str, list[float]] = {"audited": [], "query_only": []}
        results: list[int] = []
        for i, crit in enumerate(targets[kind]):
            order = [("audited", audited), ("query_only", plain)]
            if i % 2:
                order.reverse()
            for mode, store in order:
                t = time.perf_counter()
                found = await store.search(CAROL, **crit)
                dt = time.perf_counter() - t
                if i >= warmup:
                    times[mode].append(dt)
            if i >= warmup:
                results.append(len(found))
            if kind == "call_id" and not any(r.call_id == crit["call_id"] for r in found):
                raise RuntimeError(f"search by call_id {crit['call_id']} did not find it")
        out[kind] = {
            "audited": summary_ms(times["audited"]),
            "query_only": summary_ms(times["query_only"]),
            "results_mean": round(sum(results) / len(results), 1),
            "results_max": max(results),
        }
    return out


# -- one database -----------------------------------------------------------------------------


class Shared:
    """What every database run uses: the same rows (by seed), audio and search criteria."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.pop = Population(args.seed)
        rng = random.Random(args.seed + 2)
        self.picks = [rng.randrange(args.rows) for _ in range(args.searches + args.warmup)]
        self.samples: dict[int, tuple[Any, ...]] = dict.fromkeys(self.picks, ())
        self.targets: dict[str, list[dict[str, Any]]] = {}
        self.pcm = base_pcm(args.seconds, args.seed)


async def bench_db(kind: str, args: argparse.Namespace, sh: Shared) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"hotline-recbench-{kind}-", dir=args.tmpdir))
    pg_name = None
    db: Database | None = None
    res: dict[str, Any] = {"db": kind}
    try:
        if kind == "sqlite":
            path = work / "hotline.db"
            url = f"sqlite+aiosqlite:///{path}"
        else:
            pg_name = await create_postgres_database(PG_ADMIN, "hotline_bench")
            dsn = postgres_url(PG_ADMIN, pg_name, driver=None)
            url = dsn.replace("postgresql://", "postgresql+asyncpg://")
        db = Database(url)
        await db.migrate()
        print(f"[{kind}] loading {args.rows:,} rows ...", file=sys.stderr, flush=True)
        if kind == "sqlite":
            await db.close()
            loaded = await asyncio.to_thread(
                sqlite_load, path, sh.pop, args.rows, args.seed, sh.samples
            )
            analyzed = await asyncio.to_thread(sqlite_analyze, path)
            db = Database(url)
            sh.targets = sh.targets or make_targets(sh.pop, sh.samples, sh.picks, args.seed)
            targets = sh.targets
            res["server"] = f"SQLite {sqlite3.sqlite_version} (aiosqlite)"
            res["db_file_mb"] = round(path.stat().st_size / 1e6, 1)
            res["plans"] = await asyncio.to_thread(plans_sqlite, path, targets)
        else:
            loaded, analyzed = await pg_load(dsn, sh.pop, args.rows, args.seed, sh.samples)
            import asyncpg

            sh.targets = sh.targets or make_targets(sh.pop, sh.samples, sh.picks, args.seed)
            targets = sh.targets
            conn = await asyncpg.connect(dsn)
            try:
                res["server"] = (await conn.fetchval("SELECT version()")).split(" on ")[0]
                res["db_file_mb"] = round(
                    await conn.fetchval("SELECT pg_total_relation_size('recordings')") / 1e6, 1
                )
                res["settings"] = {
                    k: await conn.fetchval(f"SHOW {k}")
                    for k in ("shared_buffers", "synchronous_commit", "fsync", "work_mem")
                }
            finally:
                await conn.close()
            res["plans"] = await plans_pg(dsn, targets)
        res["load"] = {
            "rows": args.rows,
            "seconds": round(loaded, 1),
            "rows_per_s": round(args.rows / loaded),
            "analyze_s": round(analyzed, 1),
        }
        print(f"[{kind}] {res['load']}", file=sys.stderr, flush=True)
        modes = [(st, c) for st in args.store for c in args.cache]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {m: [] for m in modes}
        keys = SiteKeys.load_or_create(work / "keys" / "recordings.key")
        for rep in range(args.ingest_runs):  # store kinds and cache states alternate
            for c, (st, cache) in enumerate(modes):
                print(
                    f"[{kind}] ingest {args.n} x {args.seconds:g} s ({st}, {cache}, "
                    f"run {rep + 1}/{args.ingest_runs}) ...",
                    file=sys.stderr,
                    flush=True,
                )
                r = await bench_ingest(
                    db,
                    work,
                    args.n,
                    sh.pcm,
                    rep * len(modes) + c,
                    args.seed,
                    cache == "cold",
                    keys if st == "encrypted" else None,
                )
                print(f"[{kind}] {r['recordings_per_s']} rec/s", file=sys.stderr, flush=True)
                runs[(st, cache)].append(r)
        res["ingest"] = [pool_ingest(st, c, r) for (st, c), r in runs.items()]
        print(f"[{kind}] searches ...", file=sys.stderr, flush=True)
        res["search"] = await bench_search(db, work, targets, args.warmup)
        return res
    finally:
        if db is not None:
            await db.close()
        if pg_name:
            await drop_postgres_database(PG_ADMIN, pg_name)
        shutil.rmtree(work, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout.strip()

    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": int(sh("nproc") or 0),
        "cpu_model": sh("lscpu | grep 'Model name' | cut -d: -f2 | xargs"),
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "filesystem": sh(f"df -hT {shlex.quote(tempfile.gettempdir())} | tail -1"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": sh(f"git -C {shlex.quote(str(REPO))} rev-parse --short HEAD"),
    }


def sha256_mb_s(pcm: bytes) -> float:
    t0 = time.perf_counter()
    for _ in range(50):
        hashlib.sha256(pcm).hexdigest()
    return round(50 * len(pcm) / (time.perf_counter() - t0) / 1e6)


def disk_reference(pcm: bytes, tmpdir: str | None) -> dict[str, Any]:
    """What one ingest cannot avoid on this disk: write + fsync a recording, fsync a folder."""
    folder = Path(tempfile.mkdtemp(prefix="hotline-recbench-fsync-", dir=tmpdir))
    try:
        write, dirsync = [], []
        for i in range(20):
            t = time.perf_counter()
            with (folder / f"{i}.wav").open("wb") as f:
                f.write(pcm)
                f.flush()
                os.fsync(f.fileno())
            write.append(time.perf_counter() - t)
            t = time.perf_counter()
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirsync.append(time.perf_counter() - t)
        return {
            "file_kb": round(len(pcm) / 1000),
            "write_fsync_file_p50_ms": round(pct(write, 50) * 1000, 2),
            "fsync_dir_p50_ms": round(pct(dirsync, 50) * 1000, 2),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in report["databases"]:
        rates = {
            f"{i.get('store', 'plain')}/{i['cache']}": i["recordings_per_s"] for i in r["ingest"]
        }
        out[f"ingest_{r['db']}"] = {
            "target": f">= {TARGET_INGEST_PER_S:g} recordings/s (median run)",
            "measured": rates,
            "met": all(v >= TARGET_INGEST_PER_S for v in rates.values()),
        }
        if r["db"] == "postgresql":
            p95 = {k: r["search"][k]["audited"]["p95_ms"] for k in KINDS}
            out["search_postgresql"] = {
                "target": f"p95 <= {TARGET_PG_SEARCH_P95_MS:g} ms (audited, every kind)",
                "measured_p95_ms": p95,
                "met": all(v <= TARGET_PG_SEARCH_P95_MS for v in p95.values()),
            }
    return out


def tables(report: dict[str, Any]) -> str:
    lines = [
        "### Ingest (sequential, with hashing; table already holds the bulk-loaded rows)",
        "",
        "| database | store | cache | runs x recordings | recordings/s median run (range) "
        "| MB/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["databases"]:
        for i in r["ingest"]:
            la = i["latency"]
            lines.append(
                f"| {r['db']} | {i.get('store', 'plain')} | {i['cache']} "
                f"| {i['runs']} x {i['recordings']} "
                f"| {i['recordings_per_s']} ({i['recordings_per_s_min']}-"
                f"{i['recordings_per_s_max']}) | {i['mb_per_s']} | {la['p50_ms']} "
                f"| {la['p95_ms']} | {la['p99_ms']} | {la['max_ms']} |"
            )
    rows = report["args"]["rows"]
    lines += [
        "",
        f"### Search over {rows:,} rows (limit 100, newest first; "
        f"{report['args']['searches']} timed searches per kind)",
        "",
        "| database | search | rows returned (mean) | audited p50 / p95 / p99 ms "
        "| query only p50 / p95 / p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["databases"]:
        for k in KINDS:
            s = r["search"][k]
            a, q = s["audited"], s["query_only"]
            lines.append(
                f"| {r['db']} | {KIND_LABEL[k]} | {s['results_mean']} "
                f"| {a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} "
                f"| {q['p50_ms']} / {q['p95_ms']} / {q['p99_ms']} |"
            )
    lines += [
        "",
        "### Bulk load (setup, for reference)",
        "",
        "| database | server | rows | seconds | rows/s | ANALYZE s | table + indexes MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["databases"]:
        ld = r["load"]
        lines.append(
            f"| {r['db']} | {r['server']} | {ld['rows']:,} | {ld['seconds']} "
            f"| {ld['rows_per_s']:,} | {ld['analyze_s']} | {r['db_file_mb']} |"
        )
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = report["verdicts"]
    disk = report["disk"]
    a = report["args"]
    out = [
        "# Recording store benchmark: ingest rate and search latency",
        "",
        f"Run {report['started']} (git {m['git_commit']}, uncommitted changes of other work "
        "may be present), " + f"{report['duration_s']:.0f} s in all.",
        "",
        "## Machine",
        "",
        f"- CPUs (nproc): {m['nproc']}, model: {m['cpu_model']}",
        f"- RAM: {m['ram_gib']} GiB; Python {m['python']}; kernel {m['kernel']}",
        f"- temp filesystem: `{m['filesystem']}` (same disk as the repo)",
        f"- load average at start / end: {m['loadavg_at_start']} / {report['loadavg_at_end']} "
        "(other work may have been running on this machine)",
        f"- SHA-256 in this Python on this CPU: {report['sha256_mb_s']} MB/s; writing and "
        f"fsync'ing one {disk['file_kb']} KB file: {disk['write_fsync_file_p50_ms']} ms, "
        f"fsync of a folder: {disk['fsync_dir_p50_ms']} ms (p50 of 20)",
    ]
    for r in report["databases"]:
        extra = f", settings {r['settings']}" if "settings" in r else ""
        out.append(f"- {r['db']}: {r['server']}{extra}")
    out += [
        "",
        "## Command",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"{a['n']} recordings of {a['seconds']:g} s per ingest run, {a['rows']:,} metadata rows, "
        f"{a['searches']} timed searches per kind after {a['warmup']} warm-up searches, "
        f"seed {a['seed']}.",
        "",
        "## Results",
        "",
        tables(report),
        "",
        "## Targets",
        "",
    ]
    for name, t in v.items():
        measured = t.get("measured", t.get("measured_p95_ms"))
        out.append(
            f"- {name}: target {t['target']}; measured {measured}: "
            f"**{'met' if t['met'] else 'NOT met'}**"
        )
    out += [
        "",
        "## Method and limits",
        "",
        "- Ingest: `RecordingStore.ingest(spool_file, CallFacts)` called one file after the "
        "other, as the sweeper does (the store serialises ingests with a lock anyway), on a "
        "database that already holds the bulk-loaded rows. Each ingest reads the 960 KB file "
        "and hashes it, copies it with fsync while hashing, re-reads and hashes the copy, "
        "renames, fsyncs the folder, commits the row and the audit entry, deletes the "
        "original. Hashing is a small part: three SHA-256 passes over 960 KB take about "
        "2 ms at the rate above, and writing + fsync'ing the copy about as much; most of "
        "the 15-20 ms per recording is database work (a lookup by spool name and two "
        "commits, the row and the hash-chained audit entry, each with its fsync) and the "
        "thread hand-offs of each step.",
        "- Ingest cache states: `warm` = the spool files were written and fsync'ed just "
        "before (in the page cache, like a recording at the end of its call); `cold` = "
        "evicted with posix_fadvise(DONTNEED) first, so the original is read from disk. The "
        "copy is always re-read from the cache right after it was written (that is what the "
        "code does). The disk is a virtual disk shared with other work, so rates vary from "
        "run to run: each cache state runs several times (alternating), the table shows the "
        "median run and the range, the latency percentiles pool every ingest of all runs.",
        "- Recordings/s is N / wall time of one run's loop (the median run is what the "
        "target is checked against); MB/s counts the original's bytes once.",
        "- Search: through `RecordingStore.search` as a compliance user, so each timed search "
        "includes the hash-chained audit write (a SELECT of the last entry and an INSERT, one "
        "commit). `query only` is the same store with an audit log that writes nothing: the "
        "SELECT plus turning rows into `Recording`s. Both run in the same loop, alternating "
        "which goes first. Latency is in-process wall time (SQLAlchemy session, driver, "
        "server), with one client and no concurrency.",
        "- Search criteria: callers and call ids from random existing rows (frequency-"
        "weighted, so frequent callers with thousands of recordings come up), agents, "
        "queues and windows uniformly at random over the 2 years.",
        "- The data was loaded right before the searches, so tables and indexes are in the OS "
        "page cache (PostgreSQL: partly also in shared_buffers); after a restart the first "
        "searches read from disk and are slower. PostgreSQL got `VACUUM ANALYZE` after the "
        "load, SQLite `ANALYZE`; the schema (its single-column indexes) is the one from the "
        "migrations, unchanged.",
        "- The schema has single-column indexes only (call_id, caller, agent, queue, "
        "started_at, retention_until). Searches that combine agent or queue with a date "
        "range use two of them (PostgreSQL: BitmapAnd of both, then a sort; SQLite: walks "
        "the started_at index newest first and filters), see the plans below; no index was "
        "added or changed for this benchmark.",
        "- Synthetic data: ~50k callers with a long tail, 50 agents, 5 queues "
        f"({', '.join(f'{q} {int(w * 100)} %' for q, w in QUEUES.items())}), calls spread "
        "over 730 days in business hours. Real data may be more clustered.",
        "- Percentiles are nearest-rank over the timed searches "
        f"({a['searches']} each); p99 of {a['searches']} samples is the "
        f"{math.ceil(0.99 * a['searches'])}th slowest and noisy.",
        "",
        "## Query plans (one sample search per kind)",
        "",
        "Taken once per kind right after the load and before the timed runs, with the first "
        "criteria of each kind as literals (PostgreSQL: EXPLAIN ANALYZE, so its times are "
        "first-touch times with cold shared_buffers; the timed searches go through "
        "SQLAlchemy/asyncpg prepared statements, where PostgreSQL may switch to a generic "
        "plan after five executions).",
        "",
    ]
    for r in report["databases"]:
        for k in KINDS:
            out += [
                f"<details><summary>{r['db']}: {KIND_LABEL[k]}</summary>",
                "",
                "```",
                r["plans"][k],
                "```",
                "",
                "</details>",
                "",
            ]
    return "\n".join(out)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [".venv/bin/python", os.path.relpath(sys.argv[0], REPO)]
            + [shlex.quote(a) for a in sys.argv[1:]]
        ),
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {
            "ingest_recordings_per_s_min": TARGET_INGEST_PER_S,
            "postgresql_search_p95_ms_max": TARGET_PG_SEARCH_P95_MS,
        },
    }
    sh = Shared(args)
    report["sha256_mb_s"] = sha256_mb_s(sh.pcm)
    report["disk"] = disk_reference(sh.pcm, args.tmpdir)
    report["databases"] = [await bench_db(kind, args, sh) for kind in args.db]
    report["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["duration_s"] = round(time.perf_counter() - t0, 1)
    report["verdicts"] = verdicts(report)
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    p.add_argument("--n", type=int, default=300, help="recordings per ingest run (default 300)")
    p.add_argument(
        "--seconds", type=float, default=60.0, help="length of each recording (default 60)"
    )
    p.add_argument(
        "--ingest-runs", type=int, default=3, help="ingest runs per cache state (default 3)"
    )
    p.add_argument("--cache", nargs="+", choices=["warm", "cold"], default=["warm", "cold"])
    p.add_argument(
        "--store",
        nargs="+",
        choices=["plain", "encrypted"],
        default=["plain", "encrypted"],
        help="ingest into a plain store, an encrypted one ([recordings] encrypt), or both",
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="metadata rows (default 1,000,000)")
    p.add_argument(
        "--searches", type=int, default=200, help="timed searches per kind (default 200)"
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed searches per kind first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tmpdir", help="where spool, store and the SQLite file go (default: $TMPDIR)")
    p.add_argument("--json-out", type=Path, help="write every result as JSON to this file")
    p.add_argument("--md-out", type=Path, help="write the Markdown report to this file")
    args = p.parse_args()
    report = asyncio.run(run(args))
    md = markdown(report)
    for path, text in (
        (args.json_out, json.dumps(report, indent=1, default=str) + "\n"),
        (args.md_out, md + "\n"),
    ):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print(tables(report))
    print()
    for name, t in report["verdicts"].items():
        print(f"{name}: {'met' if t['met'] else 'NOT met'} ({t['target']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
