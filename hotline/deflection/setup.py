"""Deflection as one feature: the callback store both sides share and the link notifier.

The IVR books callbacks and sends links; the CTI's dispatcher dials the
callbacks.  This module builds the parts they meet in, from the configuration.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from hotline.config import Config, ConfigError
from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.notify import Notifier, build_notifier, close_notifier
from hotline.storage.db import Database

log = logging.getLogger("hotline")


def build_notifier_from(cfg: Config) -> Notifier | None:
    """The deflection notifier the configuration names (None: links are not sent)."""
    d = cfg.deflection
    if d.notifier == "none":
        return None
    options: dict[str, object] = dict(d.notifier_options)
    if d.notifier == "file":
        options["path"] = str(cfg.path(Path(str(options.get("path", "var/outbox.jsonl")))))
    secret = cfg.notifier_secret()
    if secret is not None:
        options["token" if d.notifier == "webhook" else "password"] = secret
    try:
        return build_notifier(d.notifier, options)
    except ValueError as e:
        raise ConfigError(f"deflection.notifier_options: {e}") from None


@dataclass(frozen=True)
class Deflection:
    callbacks: CallbackStore
    notifier: Notifier | None


@contextlib.asynccontextmanager
async def setup(cfg: Config, db: Database) -> AsyncIterator[Deflection]:
    """The callback store and the notifier; the notifier is closed when the block ends."""
    notifier = build_notifier_from(cfg)
    try:
        yield Deflection(CallbackStore(db, cfg.deflection.number_pattern), notifier)
    finally:
        if notifier is not None:
            await close_notifier(notifier)
