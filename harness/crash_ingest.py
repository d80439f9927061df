"""A crash drill: ingest the spool as `hotline recordings ingest` does, killed -9 at one step.

    python -m harness.crash_ingest CONFIG.toml STEP     (STEP: copied, renamed or recorded)

The recording store tells its owner after each durable step of an ingest;
this drill kills its own process there, so a test can check that the next
ingest (a restart) stores the file exactly once and leaves nothing behind.
The server never runs this: the kill lives here, not in the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import get_args

from hotline.config import load_config
from hotline.recordings.setup import build_store
from hotline.recordings.store import IngestStep
from hotline.records.audit import AuditLog
from hotline.records.interactions import InteractionStore
from hotline.storage.db import Database


async def drill(config: Path, kill_at: IngestStep) -> None:
    cfg = load_config(config, environ={})

    def after_step(step: IngestStep) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    db = Database(cfg.database_url())
    await db.migrate()
    try:
        audit = AuditLog.from_config(db, cfg)
        store = build_store(cfg, db, InteractionStore(db), audit, after_step=after_step)
        await store.sweep(min_age_s=0)
    finally:
        await db.close()


def main(argv: list[str]) -> int:
    steps = get_args(IngestStep)
    if len(argv) != 2 or argv[1] not in steps:
        print(f"usage: python -m harness.crash_ingest CONFIG.toml {'|'.join(steps)}")
        return 2
    step: IngestStep = argv[1]  # type: ignore[assignment]  # checked against get_args above
    asyncio.run(drill(Path(argv[0]), step))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
