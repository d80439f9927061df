"""``hotline serve``: the FastAGI server and the AMI client in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from cti.ami import AmiClient
from cti.mqtt import MqttPublisher
from cti.service import CtiService
from hotline.config import Config
from hotline.customers import CustomerDirectory
from hotline.db import Database
from hotline.interactions import InteractionStore
from ivr.flow.engine import CallRouter, Services
from ivr.flow.loader import load_flows
from ivr.prompts import PromptCache
from ivr.server import FastAgiServer

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
    holder: list[CtiService] = []
    publisher = MqttPublisher(
        cfg.mqtt.host,
        cfg.mqtt.port,
        username=cfg.mqtt.username,
        password=cfg.mqtt_password(),
        client_id=cfg.mqtt.client_id,
        prefix=cfg.mqtt.prefix,
        buffer_size=cfg.mqtt.buffer_size,
        is_live=lambda call_id: holder[0].state.call_live(call_id),
    )
    cti = CtiService(publisher, directory, interactions, tuple(cfg.cti.ivr_contexts))
    holder.append(cti)
    return cti, publisher


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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if role in ("all", "ivr"):
            flows = load_flows(cfg.path(cfg.paths.dialplans))
            services = Services(
                prompts=build_prompts(cfg),
                directory=directory,
                interactions=interactions,
                flows=flows,
                fallback_queue=cfg.ivr.fallback_queue,
            )
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
                await ami.start()
        log.info("hotline serving", extra={"role": role})
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        log.info("hotline stopping")
        if agi is not None:
            await agi.stop()
        if ami is not None:
            ami.close()
        if cti is not None:
            await cti.stop()
        if publisher is not None:
            await publisher.stop()
        await db.close()
