"""Typed events features exchange without importing each other.

A feature that produces an event owns a :class:`Signal` of it; a feature that
needs it subscribes in the composition root (``hotline.app``).  The events
themselves are plain frozen dataclasses defined here, in the kernel, so
neither side imports the other: the CTI emits :class:`CallEnded`, the
recordings feature stores that call's audio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("hotline.events")

E = TypeVar("E")


class Signal(Generic[E]):
    """Synchronous fan-out of one kind of event to the handlers that subscribed.

    A handler that raises is logged and skipped: one feature's bug must not
    stop the event reaching the others (or kill the producer's loop).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: list[Callable[[E], None]] = []

    def subscribe(self, handler: Callable[[E], None]) -> None:
        self._handlers.append(handler)

    def emit(self, event: E) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("%s handler failed", self.name)


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call Hotline followed is over (all its channels hung up)."""

    call_id: str  # Asterisk linkedid: the recordings' spool files are named after it
    caller: str
    agent: str  # the agent who answered, "" when nobody did
    queue: str  # "" when the call never reached a queue
