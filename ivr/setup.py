"""The caller side as one feature: prompts, flows, speech and the FastAGI server.

:func:`setup` builds everything the IVR needs from the configuration and the
few things it takes from other features (``IvrDeps``), starts the servers and
stops them when the block ends.  ``hotline serve``, the tests and the
benchmarks all build the IVR through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from hotline.config import Config
from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.limits import DeflectionLimits
from hotline.deflection.notify import Notifier
from hotline.erlang_c import WaitEstimate
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
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


@dataclass(frozen=True)
class IvrDeps:
    """What the IVR takes from the shared records and from other features."""

    directory: CustomerDirectory
    interactions: InteractionStore
    # Deflection: a store to book callbacks in (None: none offered) and a notifier
    # for links; the CTI's live wait estimate and its counters.
    callbacks: CallbackStore | None = None
    notifier: Notifier | None = None
    wait_estimate: Callable[[str], WaitEstimate | None] | None = None
    on_deflection: Callable[[str, str], None] | None = None
    on_callback_booked: Callable[[], None] | None = None


@dataclass(frozen=True)
class Ivr:
    services: Services
    agi: FastAgiServer
    audiosocket: AudioSocketServer | None

    def health(self) -> dict[str, object]:
        return {
            "connected": True,
            "active_calls": self.agi.active_calls,
            "served": self.agi.served,
            # rejected, refused_allow, refused_per_peer, dropped_oversize, dropped_timeout
            **self.agi.counters(),
        }


@contextlib.asynccontextmanager
async def setup(cfg: Config, deps: IvrDeps) -> AsyncIterator[Ivr]:
    flows = load_flows(cfg.path(cfg.paths.dialplans))
    speech = None
    if cfg.speech.enabled:
        speech = SpeechRecognizer.discover(
            {lang: cfg.path(p) for lang, p in cfg.speech.models.items()},
            cfg.path(cfg.speech.models_dir),
        )
        log.info("speech models", extra={"languages": sorted(speech.paths)})
    asr_host = cfg.path(cfg.paths.asr_host)
    await asyncio.to_thread(asr_host.mkdir, parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        audiosocket = None
        if speech is not None and cfg.speech.mode == "stream":
            audiosocket = AudioSocketServer(
                cfg.speech.audiosocket_host, cfg.speech.audiosocket_port
            )
            await audiosocket.start()
            stack.push_async_callback(audiosocket.stop)
        d = cfg.deflection
        services = Services(
            prompts=build_prompts(cfg),
            directory=deps.directory,
            interactions=deps.interactions,
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
            wait_estimate=deps.wait_estimate,
            callbacks=deps.callbacks,
            notifier=deps.notifier,
            notify_timeout_s=d.notify_timeout_s,
            number_pattern=d.number_pattern,
            limits=DeflectionLimits.from_config(d),
            on_deflection=deps.on_deflection,
            on_callback_booked=deps.on_callback_booked,
        )
        agi = FastAgiServer(
            CallRouter(services),
            host=cfg.agi.host,
            port=cfg.agi.port,
            header_timeout=cfg.agi.header_timeout_s,
            command_timeout=cfg.agi.command_timeout_s,
            max_connections=cfg.agi.max_connections,
            reply_timeout=cfg.agi.reply_timeout_s,
            max_reply_lines=cfg.agi.max_reply_lines,
            max_reply_bytes=cfg.agi.max_reply_bytes,
            max_per_peer=cfg.agi.max_per_peer,
            allow=cfg.agi.allowed_networks(),
        )
        await agi.start()
        # Stop taking calls first (the exit stack runs this before audiosocket.stop).
        stack.push_async_callback(agi.stop)
        log.info("flows loaded", extra={"flows": sorted(flows)})
        yield Ivr(services, agi, audiosocket)
