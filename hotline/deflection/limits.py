"""How many links and callbacks one number may get: a spoofed caller ID is not a customer.

A caller ID costs nothing to fake, and every link is a paid text message and
every callback a paid outbound call: without a limit, one script calling with
a victim's (or a premium-rate) number runs up the bill.  The counts come from
the database (``InteractionStore.links_sent_to``, ``CallbackStore.booked_since``),
so they hold across restarts and across ``hotline serve`` processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hotline.config import DeflectionConfig


@dataclass(frozen=True, slots=True)
class DeflectionLimits:
    """At most ``links``/``callbacks`` per number in any ``window_s`` seconds."""

    links: int = 3
    callbacks: int = 3
    window_s: float = 86400.0

    @classmethod
    def from_config(cls, d: DeflectionConfig) -> DeflectionLimits:
        return cls(d.max_links_per_number, d.max_callbacks_per_number, d.window_s)

    def since(self, now: datetime) -> datetime:
        """The start of the window that ends ``now``."""
        return now - timedelta(seconds=self.window_s)
