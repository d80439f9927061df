"""When recordings reach the store: as each call ends, and by a sweep for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from hotline.events import CallEnded
from hotline.recordings.store import CallFacts, RecordingStore, SpoolState, SweepReport

log = logging.getLogger("hotline")

# MixMonitor closes its file just after the hangup the CTI reports.
SETTLE_S = 1.0


class CallIngest:
    """Stores each ended call's recordings with what the CTI knew of the call.

    Subscribed to the CTI's ``call_ended`` signal.  A file that fails stays in
    the spool for the sweep; nothing is deleted before it is stored and verified
    (the store's own rule).
    """

    def __init__(self, store: RecordingStore, settle_s: float = SETTLE_S) -> None:
        self.store = store
        self.settle_s = settle_s
        self._tasks: set[asyncio.Task[None]] = set()

    def on_call_ended(self, call: CallEnded) -> None:
        task = asyncio.get_running_loop().create_task(self._ingest(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ingest(self, call: CallEnded) -> None:
        await asyncio.sleep(self.settle_s)
        facts = CallFacts(caller=call.caller, agent=call.agent, queue=call.queue)
        files = await asyncio.to_thread(self._spool_files, call.call_id)
        for f in files:
            try:
                await self.store.ingest(f, facts)
            except Exception as e:
                # The database down, a disk full: the file stays in the spool, and
                # the sweeper (which retries for ever) stores it later.
                log.error("ingest failed; the sweeper will retry: %s", e, extra={"file": f.name})

    def _spool_files(self, call_id: str) -> list[Path]:
        return sorted(self.store.spool_dir.glob(f"{call_id}--*.wav"))

    async def drain(self) -> None:
        """Let the ingests under way finish (on shutdown: a copy half made is redone anyway)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class SweeperHealth:
    """How the sweep is doing, for ``/health``: failing or not, and what waits in the spool."""

    def __init__(self, stalled_after_s: float = 120.0) -> None:
        # A spool file untouched this long should have been stored by now.
        self.stalled_after_s = stalled_after_s
        self.failing_since: float | None = None
        self.last_error = ""
        self.failed_files = 0  # files the last pass could not store (disk, integrity)
        self.spool = SpoolState(0, 0.0)
        self.quarantined = 0

    def passed(self, report: SweepReport) -> None:
        self.failing_since, self.last_error = None, ""
        self.failed_files = len(report.failed)

    def failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.time()
        self.last_error = f"{type(error).__name__}: {error}"[:300]

    def report(self) -> dict[str, object]:
        why = []
        if self.failing_since is not None:
            why.append(
                f"sweeper failing for {time.time() - self.failing_since:.0f} s: {self.last_error}"
            )
        if self.failed_files:
            why.append(f"{self.failed_files} spool file(s) could not be stored")
        if self.spool.files and self.spool.oldest_age_s > self.stalled_after_s:
            why.append(
                f"{self.spool.files} file(s) waiting in the spool, the oldest for "
                f"{self.spool.oldest_age_s:.0f} s"
            )
        if self.quarantined:
            why.append(f"{self.quarantined} file(s) in quarantine (name no call)")
        out: dict[str, object] = {
            "connected": True,
            "degraded": bool(why),
            "spool_files": self.spool.files,
            "oldest_s": self.spool.oldest_age_s,
            "quarantined": self.quarantined,
        }
        if why:
            out["why"] = "; ".join(why)
        return out


async def sweep_forever(
    store: RecordingStore,
    min_age_s: float,
    interval_s: float,
    is_live: Callable[[str], bool],
    health: SweeperHealth | None = None,
) -> None:
    """Pick up what no event announced (a restart, a missed hangup), for ever.

    Any error (the database down, a disk full) is logged, reported in
    ``health``, and retried with a growing pause (up to 16 intervals, at most
    a minute): the sweep never stops while the server runs.
    """
    health = health or SweeperHealth()
    failures = 0
    while True:
        try:
            report = await store.sweep(min_age_s, is_live)
        except Exception as e:
            failures += 1
            health.failed(e)
            if failures == 1:
                log.exception("recording sweep failed; retrying")
            else:
                log.warning("recording sweep failed again (%d in a row): %s", failures, e)
        else:
            if failures:
                log.info("recording sweep recovered after %d failed passes", failures)
            failures = 0
            health.passed(report)
            if report.ingested or report.failed or report.quarantined:
                log.info(
                    "recording sweep",
                    extra={
                        "ingested": len(report.ingested),
                        "failed": len(report.failed),
                        "quarantined": report.quarantined,
                    },
                )
        pause = (
            interval_s if failures == 0 else min(interval_s * 2**failures, interval_s * 16, 60.0)
        )
        await asyncio.sleep(pause)


async def watch_spool(store: RecordingStore, health: SweeperHealth, interval_s: float) -> None:
    """Keep ``health`` told what waits in the spool, even while an ingest is stuck."""
    while True:
        with contextlib.suppress(OSError):
            health.spool = await asyncio.to_thread(store.spool_state)
            health.quarantined = len(await asyncio.to_thread(store.quarantined))
        await asyncio.sleep(interval_s)
