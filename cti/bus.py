"""AMI events by name to the parts that asked for them.

The AMI client hands every event to :meth:`AmiEventBus.publish`; the CTI
service, the callback dispatcher and whatever comes next subscribe to the
event names they handle (as wazo-calld's plugins subscribe to bus events), so
the client knows none of them and none of them knows the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from cti.ami import AmiEvent

log = logging.getLogger("hotline.cti")

EventHandler = Callable[[AmiEvent], None]
LoginHandler = Callable[[], Awaitable[None]]

# Subscribe to this name to receive every event (the CTI's call model needs them all).
ALL = "*"


class AmiEventBus:
    def __init__(self) -> None:
        self._by_name: dict[str, list[EventHandler]] = {}
        self._on_login: list[LoginHandler] = []

    def subscribe(self, names: str | Iterable[str], handler: EventHandler) -> None:
        for name in [names] if isinstance(names, str) else names:
            self._by_name.setdefault(name, []).append(handler)

    def unsubscribe(self, names: str | Iterable[str], handler: EventHandler) -> None:
        for name in [names] if isinstance(names, str) else names:
            handlers = self._by_name.get(name, [])
            if handler in handlers:
                handlers.remove(handler)

    def on_login(self, handler: LoginHandler) -> None:
        """Called after every (re)login: events during a gap are lost, so re-read state."""
        self._on_login.append(handler)

    def publish(self, ev: AmiEvent) -> None:
        name = str(ev.get("Event", ""))
        for handler in (*self._by_name.get(name, ()), *self._by_name.get(ALL, ())):
            try:
                handler(ev)
            except Exception:
                log.exception("AMI event handler failed on %s", name)

    async def logged_in(self) -> None:
        for handler in self._on_login:
            try:
                await handler()
            except Exception:
                log.exception("AMI login handler failed")
