"""When recordings reach the store: as each call ends, and by a sweep for the rest."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from hotline.events import CallEnded
from hotline.recordings.store import CallFacts, RecordingError, RecordingStore

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
            except (OSError, RecordingError) as e:
                log.error("ingest failed; the sweeper will retry: %s", e, extra={"file": f.name})

    def _spool_files(self, call_id: str) -> list[Path]:
        return sorted(self.store.spool_dir.glob(f"{call_id}--*.wav"))

    async def drain(self) -> None:
        """Let the ingests under way finish (on shutdown: a copy half made is redone anyway)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def sweep_forever(
    store: RecordingStore, min_age_s: float, interval_s: float, is_live: Callable[[str], bool]
) -> None:
    """Pick up what no event announced: a server restart, a missed hangup."""
    while True:
        report = await store.sweep(min_age_s, is_live)
        if report.ingested or report.failed or report.unknown:
            log.info(
                "recording sweep",
                extra={
                    "ingested": len(report.ingested),
                    "failed": len(report.failed),
                    "unknown": report.unknown,
                },
            )
        await asyncio.sleep(interval_s)
