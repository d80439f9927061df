"""AMI connection for the CTI side (panoramisk), with a health flag.

This is the foundation's client: it logs in with the server's least-privilege
user, knows whether Asterisk is fully booted, and says so in ``health()``.
Call/queue/agent tracking and screen pops build on it (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from panoramisk import Manager

log = logging.getLogger("hotline.ami")


class AmiClient:
    def __init__(self, host: str, port: int, username: str, secret: str) -> None:
        self.connected = False
        self.fully_booted = False
        self.events_seen = 0
        self._manager = Manager(
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=10,
            forgetable_actions=("ping", "login"),
        )
        self._manager.on_login = self._on_login
        self._manager.on_disconnect = self._on_disconnect
        self._manager.register_event("*", self._on_event)

    def _on_login(self, _manager: Any) -> None:
        self.connected = True
        log.info("AMI logged in")

    def _on_disconnect(self, _manager: Any, exc: Exception | None) -> None:
        self.connected = False
        self.fully_booted = False
        log.warning("AMI disconnected", extra={"reason": str(exc) if exc else "closed"})

    async def _on_event(self, _manager: Any, message: Any) -> None:
        self.events_seen += 1
        if message.get("Event") == "FullyBooted":
            self.fully_booted = True

    async def start(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self._manager.connect(), timeout)
        except (OSError, TimeoutError) as e:
            # panoramisk keeps retrying in the background; serve on regardless.
            log.warning("AMI not reachable yet: %s", e)

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "fully_booted": self.fully_booted}

    def close(self) -> None:
        self._manager.close()
