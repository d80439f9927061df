"""``hotline serve``: the FastAGI server and the AMI client in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cti.ami import AmiClient
from cti.callbacks import CallbackDispatcher, CallbackPolicy
from cti.mqtt import MqttPublisher
from cti.service import CtiService
from cti.state import Call
from hotline.config import Config, ConfigError
from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.notify import Notifier, build_notifier, close_notifier
from hotline.recordings.http import build_app, start_api
from hotline.recordings.store import CallFacts, RecordingError, RecordingStore
from hotline.records.audit import AuditLog
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.records.users import Users
from hotline.storage.db import Database
from ivr.audiosocket import AudioSocketServer
from ivr.flow.engine import CallRouter, Services
from ivr.flow.loader import load_flows
from ivr.prompts import PromptCache
from ivr.server import FastAgiServer
from ivr.speech import SpeechRecognizer

log = logging.getLogger("hotline")


def build_prompts(cfg: Config) -> PromptCache:
    return PromptCache(
        host_dir=cfg.path(cfg.paths.prompts_host),
        asterisk_dir=cfg.paths.prompts_asterisk,
        voices=dict(cfg.tts.voices),
        rate=cfg.tts.rate,
        timeout=cfg.tts.render_timeout_s,
    )


def build_cti(
    cfg: Config, directory: CustomerDirectory, interactions: InteractionStore
) -> tuple[CtiService, MqttPublisher]:
    publisher = MqttPublisher(
        cfg.mqtt.host,
        cfg.mqtt.port,
        username=cfg.mqtt.username,
        password=cfg.mqtt_password(),
        client_id=cfg.mqtt.client_id,
        prefix=cfg.mqtt.prefix,
        buffer_size=cfg.mqtt.buffer_size,
    )
    cti = CtiService(publisher, directory, interactions, tuple(cfg.cti.ivr_contexts))
    return cti, publisher


def build_notifier_from(cfg: Config) -> Notifier | None:
    """The deflection notifier the configuration names (None: links are not sent)."""
    d = cfg.deflection
    if d.notifier == "none":
        return None
    options: dict[str, Any] = dict(d.notifier_options)
    if d.notifier == "file":
        options["path"] = str(cfg.path(Path(str(options.get("path", "var/outbox.jsonl")))))
    secret = cfg.notifier_secret()
    if secret is not None:
        options["token" if d.notifier == "webhook" else "password"] = secret
    try:
        return build_notifier(d.notifier, options)
    except ValueError as e:
        raise ConfigError(f"deflection.notifier_options: {e}") from None


def callback_policy(cfg: Config) -> CallbackPolicy:
    d = cfg.deflection
    return CallbackPolicy(
        context=d.callback_context,
        agent_channel=d.callback_agent_channel,
        max_attempts=d.callback_max_attempts,
        retry_after_s=d.callback_retry_after_s,
        agent_ring_s=d.callback_agent_ring_s,
        number_pattern=d.number_pattern,
    )


def build_recordings(cfg: Config, db: Database, interactions: InteractionStore) -> RecordingStore:
    rc = cfg.recordings
    return RecordingStore(
        db,
        store_dir=cfg.path(rc.store_dir),
        spool_dir=cfg.path(rc.spool_dir),
        audit=AuditLog(db),
        interactions=interactions,
        retention_days=dict(rc.retention_days),
        default_retention_days=rc.default_retention_days,
    )


async def sweep_forever(store: RecordingStore, cfg: Config, is_live: Callable[[str], bool]) -> None:
    """Pick up what no event announced: a server restart, a missed hangup."""
    while True:
        report = await store.sweep(cfg.recordings.min_age_s, is_live)
        if report.ingested or report.failed or report.unknown:
            log.info(
                "recording sweep",
                extra={
                    "ingested": len(report.ingested),
                    "failed": len(report.failed),
                    "unknown": report.unknown,
                },
            )
        await asyncio.sleep(cfg.recordings.sweep_interval_s)


def ingest_when_finished(store: RecordingStore, call: Call) -> None:
    """After hangup, store the call's recordings with what the CTI knows of it."""

    async def run() -> None:
        await asyncio.sleep(1.0)  # MixMonitor closes its file just after the hangup
        facts = CallFacts(
            caller=call.caller_number, agent=call.answered_by or "", queue=call.queue or ""
        )
        files = await asyncio.to_thread(
            lambda: sorted(store.spool_dir.glob(f"{call.call_id}--*.wav"))
        )
        for f in files:
            try:
                await store.ingest(f, facts)
            except (OSError, RecordingError) as e:
                log.error("ingest failed; the sweeper will retry: %s", e, extra={"file": f.name})

    task = asyncio.get_running_loop().create_task(run())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


def health_report(
    agi: FastAgiServer | None, ami: AmiClient | None, publisher: MqttPublisher | None
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if agi is not None:
        report["fastagi"] = {
            "connected": True,
            "active_calls": agi.active_calls,
            "served": agi.served,
            "rejected": agi.rejected,
        }
    if ami is not None:
        report["ami"] = ami.health()
    if publisher is not None:
        report["mqtt"] = {
            "connected": publisher.connected,
            "published": publisher.published,
            "buffered": publisher.buffered,
        }
    return report


async def serve(cfg: Config, role: str = "all", ready: asyncio.Event | None = None) -> None:
    db = Database(cfg.database_url(), cfg.database.echo)
    await db.migrate()
    # One store for both sides: the CTI reads the IVR's hand-offs from memory.
    directory = CustomerDirectory(db)
    interactions = InteractionStore(db)
    agi: FastAgiServer | None = None
    ami: AmiClient | None = None
    cti: CtiService | None = None
    publisher: MqttPublisher | None = None
    sweeper: asyncio.Task[None] | None = None
    api: web.AppRunner | None = None
    services: Services | None = None
    callbacks: CallbackStore | None = None
    notifier: Notifier | None = None
    dispatcher: CallbackDispatcher | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if cfg.deflection.enabled:
        # Booked by the IVR, dialled by the CTI: either role may run alone.
        callbacks = CallbackStore(db, cfg.deflection.number_pattern)
    try:
        if role in ("all", "ivr"):
            flows = load_flows(cfg.path(cfg.paths.dialplans))
            speech = None
            if cfg.speech.enabled:
                speech = SpeechRecognizer.discover(
                    {lang: cfg.path(p) for lang, p in cfg.speech.models.items()},
                    cfg.path(cfg.speech.models_dir),
                )
                log.info("speech models", extra={"languages": sorted(speech.paths)})
            audiosocket = None
            if speech is not None and cfg.speech.mode == "stream":
                audiosocket = AudioSocketServer(
                    cfg.speech.audiosocket_host, cfg.speech.audiosocket_port
                )
                await audiosocket.start()
            asr_host = cfg.path(cfg.paths.asr_host)
            await asyncio.to_thread(asr_host.mkdir, parents=True, exist_ok=True)
            services = Services(
                prompts=build_prompts(cfg),
                directory=directory,
                interactions=interactions,
                flows=flows,
                fallback_queue=cfg.ivr.fallback_queue,
                speech=speech,
                asr_host=asr_host,
                asr_asterisk=cfg.paths.asr_asterisk,
                min_confidence=cfg.speech.min_confidence,
                speech_mode=cfg.speech.mode,
                complete_timeout_s=cfg.speech.complete_timeout_s,
                incomplete_timeout_s=cfg.speech.incomplete_timeout_s,
                audiosocket=audiosocket,
            )
            if callbacks is not None:
                notifier = build_notifier_from(cfg)
                services.callbacks = callbacks
                services.notifier = notifier
                services.notify_timeout_s = cfg.deflection.notify_timeout_s
                services.number_pattern = cfg.deflection.number_pattern
            agi = FastAgiServer(
                CallRouter(services),
                host=cfg.agi.host,
                port=cfg.agi.port,
                header_timeout=cfg.agi.header_timeout_s,
                command_timeout=cfg.agi.command_timeout_s,
                max_connections=cfg.agi.max_connections,
            )
            await agi.start()
            log.info("flows loaded", extra={"flows": sorted(flows)})
        if role in ("all", "cti") and cfg.ami.enabled:
            secret = cfg.ami_secret()
            if secret is None:
                log.warning("AMI disabled: no secret configured (ami.secret or ami.secret_file)")
            else:
                cti, publisher = build_cti(cfg, directory, interactions)
                if cfg.recordings.enabled:
                    store = build_recordings(cfg, db, interactions)
                    cti.on_call_finished = lambda call: ingest_when_finished(store, call)
                    sweeper = asyncio.get_running_loop().create_task(
                        sweep_forever(store, cfg, cti.state.call_live)
                    )
                    if cfg.http.enabled:
                        api = await start_api(
                            build_app(
                                store,
                                Users(db),
                                cfg.http.session_ttl_s,
                                # read at request time: the AMI client starts below
                                health=lambda: health_report(agi, ami, publisher),
                            ),
                            cfg.http.host,
                            cfg.http.port,
                        )
                        log.info(
                            "HTTP API listening",
                            extra={"address": f"{cfg.http.host}:{cfg.http.port}"},
                        )
                publisher.start()
                cti.start()
                ami = AmiClient(
                    cfg.ami.host,
                    cfg.ami.port,
                    cfg.ami.username,
                    secret,
                    on_event=cti.on_event,
                    on_login=cti.on_login,
                    backoff_min=cfg.ami.reconnect_min_s,
                    backoff_max=cfg.ami.reconnect_max_s,
                )
                cti.attach(ami)
                if services is not None:
                    # The IVR's deflect step reads the CTI's live estimate and
                    # counts its offers in the queue statistics.
                    services.wait_estimate = cti.state.wait_estimate
                    services.on_deflection = cti.count_deflection
                if callbacks is not None:
                    dispatcher = CallbackDispatcher(
                        callbacks,
                        cti.state,
                        ami,
                        callback_policy(cfg),
                        on_outcome=cti.count_deflection,
                    )
                    cti.event_hooks.append(dispatcher.on_event)
                    if services is not None:
                        services.on_callback_booked = dispatcher.poke
                await ami.start()
                if dispatcher is not None:
                    await dispatcher.start()
        if role == "all" and dispatcher is None and services is not None and services.callbacks:
            # Nothing in this process would ever dial a callback (AMI off or no
            # secret): do not offer one.  (--role ivr assumes a --role cti beside it.)
            log.warning("callbacks not offered: the AMI client is not running")
            services.callbacks = None
        # Everything loaded so far (flows, models, SQLAlchemy's caches) lives as
        # long as the server: keep it out of the cyclic collector's full passes,
        # which otherwise pause every call's AGI traffic for tens of ms.
        gc.freeze()
        log.info("hotline serving", extra={"role": role})
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        log.info("hotline stopping")
        if agi is not None:
            await agi.stop()
        if sweeper is not None:
            sweeper.cancel()
        if api is not None:
            await api.cleanup()
        if dispatcher is not None:
            await dispatcher.stop()
        if ami is not None:
            ami.close()
        if cti is not None:
            await cti.stop()
        if notifier is not None:
            await close_notifier(notifier)
        if publisher is not None:
            await publisher.stop()
        await interactions.close()
        await db.close()
