"""``hotline serve``: the composition root.

Every feature is built here, once, by its own ``setup(cfg, deps)`` (an async
context manager), in the order the features need each other; one
:class:`~contextlib.AsyncExitStack` stops them in reverse.  Features never
import each other: what one needs of another is passed in its ``deps``
(a function, a store) or subscribed to here (a :class:`~hotline.events.Signal`).
``hotline serve``, the tests, the benchmarks and the demo all build the
server through :func:`running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from cti import setup as cti_feature
from cti.desktop import setup as desktop_feature
from hotline.config import Config
from hotline.deflection import setup as deflection_feature
from hotline.recordings import setup as recordings_feature
from hotline.records.audit import AuditLog
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.records.users import Users
from hotline.storage.db import Database
from hotline.web import HealthReport, Routes, SessionHooks, build_web_app, serving
from ivr import setup as ivr_feature

log = logging.getLogger("hotline")

Role = Literal["all", "ivr", "cti"]


@dataclass(frozen=True)
class Server:
    """What one ``hotline serve`` process runs (a part is None when not configured)."""

    db: Database
    directory: CustomerDirectory
    interactions: InteractionStore
    ivr: ivr_feature.Ivr | None
    cti: cti_feature.Cti | None
    recordings: recordings_feature.Recordings | None
    deflection: deflection_feature.Deflection | None

    def health(self) -> HealthReport:
        report: dict[str, dict[str, object]] = {}
        if self.ivr is not None:
            report["fastagi"] = self.ivr.health()
        if self.cti is not None:
            report.update(self.cti.health())
        if self.recordings is not None:
            report["recordings"] = self.recordings.health()
        return report


@contextlib.asynccontextmanager
async def running(cfg: Config, role: Role = "all") -> AsyncIterator[Server]:
    """The whole server for ``role``, started; stopped when the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        db = Database(cfg.database_url(), cfg.database.echo)
        stack.push_async_callback(db.close)
        await db.migrate()
        # One store for both sides: the CTI reads the IVR's hand-offs from memory.
        directory = CustomerDirectory(db)
        interactions = InteractionStore(db)
        stack.push_async_callback(interactions.close)

        deflection = None
        if cfg.deflection.enabled:
            # Booked by the IVR, dialled by the CTI: either role may run alone.
            deflection = await stack.enter_async_context(deflection_feature.setup(cfg, db))

        cti = None
        if role in ("all", "cti") and cfg.ami.enabled:
            secret = cfg.ami_secret()
            if secret is None:
                log.warning("AMI disabled: no secret configured (ami.secret or ami.secret_file)")
            else:
                cti = await stack.enter_async_context(
                    cti_feature.setup(
                        cfg,
                        cti_feature.CtiDeps(
                            directory,
                            interactions,
                            secret,
                            callbacks=deflection.callbacks if deflection else None,
                        ),
                    )
                )

        # One audit log for the process: the recording store and the web app's
        # logins append to the same chain (and take the same in-process lock).
        # Built only where something appends to it; reading the key file (or
        # creating it on first start) happens off the event loop.
        serves_web = cfg.http.enabled and role in ("all", "cti")
        audit = None
        if serves_web or (cti is not None and cfg.recordings.enabled):
            audit = await asyncio.to_thread(AuditLog.from_config, db, cfg)

        recordings = None
        if cti is not None and audit is not None and cfg.recordings.enabled:
            recordings = await stack.enter_async_context(
                recordings_feature.setup(
                    cfg,
                    recordings_feature.RecordingsDeps(db, interactions, audit, cti.state.call_live),
                )
            )
            cti.service.call_ended.subscribe(recordings.ingest.on_call_ended)

        ivr = None
        if role in ("all", "ivr"):
            callbacks = deflection.callbacks if deflection else None
            if role == "all" and callbacks is not None and (cti is None or not cti.dispatcher):
                # Nothing in this process would ever dial a callback (AMI off or no
                # secret): do not offer one.  (--role ivr assumes a --role cti beside it.)
                log.warning("callbacks not offered: the AMI client is not running")
                callbacks = None
            ivr = await stack.enter_async_context(
                ivr_feature.setup(
                    cfg,
                    ivr_feature.IvrDeps(
                        directory,
                        interactions,
                        callbacks=callbacks,
                        notifier=deflection.notifier if deflection else None,
                        # The deflect step reads the CTI's live estimate and counts
                        # its offers in the queue statistics.
                        wait_estimate=cti.state.wait_estimate if cti else None,
                        on_deflection=cti.service.count_deflection if cti else None,
                        on_callback_booked=(
                            cti.dispatcher.poke if cti and cti.dispatcher else None
                        ),
                    ),
                )
            )

        server = Server(db, directory, interactions, ivr, cti, recordings, deflection)
        if serves_web and audit is not None:
            routes: list[Routes] = [recordings.routes] if recordings else []
            hooks: list[SessionHooks] = []
            connect_src: list[str] = []
            if cti is not None:
                # The agent desktop: its page, its API, a broker login per session.
                desktop = await stack.enter_async_context(desktop_feature.setup(cfg, cti))
                routes.append(desktop.routes)
                hooks.append(desktop.sessions)
                connect_src += desktop.connect_src
            app = build_web_app(
                Users(db),
                audit,
                session_ttl_s=cfg.http.session_ttl_s,
                health=server.health,
                routes=routes,
                session_hooks=hooks,
                connect_src=connect_src,
            )
            await stack.enter_async_context(serving(app, cfg.http.host, cfg.http.port))
            log.info("HTTP API listening", extra={"address": f"{cfg.http.host}:{cfg.http.port}"})

        if cti is not None:
            await cti.connect()
        yield server
        log.info("hotline stopping")


async def serve(cfg: Config, role: Role = "all", ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running(cfg, role):
        # Everything loaded so far (flows, models, SQLAlchemy's caches) lives as
        # long as the server: keep it out of the cyclic collector's full passes,
        # which otherwise pause every call's AGI traffic for tens of ms.
        gc.freeze()
        log.info("hotline serving", extra={"role": role})
        if ready is not None:
            ready.set()
        await stop.wait()
