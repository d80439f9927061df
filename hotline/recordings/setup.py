"""Compliance recordings as one feature: the store, ingest as calls end, the sweep, the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from hotline.config import Config
from hotline.recordings.crypt import SiteKeys
from hotline.recordings.http import recording_routes
from hotline.recordings.ingest import CallIngest, SweeperHealth, sweep_forever, watch_spool
from hotline.recordings.store import IngestStep, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.interactions import InteractionStore
from hotline.storage.db import Database
from hotline.web import Routes


def build_store(
    cfg: Config,
    db: Database,
    interactions: InteractionStore,
    audit: AuditLog,
    after_step: Callable[[IngestStep], None] | None = None,
) -> RecordingStore:
    rc = cfg.recordings
    # Reading the key file (or creating it on first start) is file work: callers
    # on an event loop build the store in a thread.
    keys = SiteKeys.load_or_create(cfg.path(rc.key_file)) if rc.encrypt else None
    return RecordingStore(
        db,
        store_dir=cfg.path(rc.store_dir),
        spool_dir=cfg.path(rc.spool_dir),
        audit=audit,
        interactions=interactions,
        retention_days=dict(rc.retention_days),
        default_retention_days=rc.default_retention_days,
        after_step=after_step,
        keys=keys,
    )


@dataclass(frozen=True)
class RecordingsDeps:
    db: Database
    interactions: InteractionStore
    # The process's one audit log (its in-process lock orders the appends of every
    # part of the server before the database lock does).
    audit: AuditLog
    # Whether a call is still going on (its files may still be written): the CTI knows.
    is_live: Callable[[str], bool]


@dataclass(frozen=True)
class Recordings:
    store: RecordingStore
    ingest: CallIngest
    routes: Routes
    sweeper: SweeperHealth

    def health(self) -> dict[str, object]:
        """``/health``'s ``recordings`` part: degraded while the sweep fails or files wait."""
        return self.sweeper.report()


@contextlib.asynccontextmanager
async def setup(cfg: Config, deps: RecordingsDeps) -> AsyncIterator[Recordings]:
    store = await asyncio.to_thread(build_store, cfg, deps.db, deps.interactions, deps.audit)
    ingest = CallIngest(store)
    rc = cfg.recordings
    health = SweeperHealth(rc.stalled_after_s)
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(
            sweep_forever(store, rc.min_age_s, rc.sweep_interval_s, deps.is_live, health),
            name="recording-sweep",
        ),
        loop.create_task(
            watch_spool(store, health, min(rc.sweep_interval_s, 10.0)), name="spool-watch"
        ),
    ]
    try:
        yield Recordings(store, ingest, recording_routes(store), health)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ingest.drain()
