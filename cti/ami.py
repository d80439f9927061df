"""AMI transport: panoramisk's Manager with our framing, backoff and health.

What we change in panoramisk 1.4, and why:

- Framing: its protocol decodes each TCP chunk on its own (``decode(...,
  'ignore')``), so a UTF-8 character split across two reads (a Korean caller
  name) is silently dropped.  :func:`split_messages` frames on bytes first and
  decodes whole messages; it is a pure function, tested on split input.
- Reconnect: it retries every 2 s forever on a fixed timer.  We back off
  exponentially with jitter (``reconnect_min_s`` … ``reconnect_max_s``), so a
  restarting Asterisk is not hammered, and tell the owner on every login so
  it can rebuild state: events during a disconnect are lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

log = logging.getLogger("hotline.ami")

EOM = b"\r\n\r\n"
MAX_MESSAGE = 1 << 20  # a message larger than 1 MiB is not AMI: drop the buffer

AmiEvent = dict[str, Any]


def split_messages(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Cut complete AMI messages off the front of ``buffer``.

    Returns (messages, rest); blank blocks are skipped.
    """
    messages: list[bytes] = []
    start = 0
    while (end := buffer.find(EOM, start)) >= 0:
        # Walk an index instead of re-slicing the rest: one read can carry
        # thousands of events, and copying the tail each time is quadratic.
        raw = buffer[start:end]
        if raw.strip():
            messages.append(raw)
        start = end + len(EOM)
    return messages, buffer[start:]


def parse_message(raw: bytes) -> AmiEvent | None:
    """One AMI message to a dict; repeated keys become lists; None if not a message."""
    text = raw.decode("utf-8", "replace")
    out: AmiEvent = {}
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                continue  # banner line or body text: not a header
        key = key.strip()
        if not key:
            continue
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    if "Event" not in out and "Response" not in out:
        return None
    return out


def chan_variables(event: AmiEvent, prefix: str = "") -> dict[str, str]:
    """``ChanVariable: NAME=value`` headers (``DestChanVariable`` with prefix 'Dest')."""
    raw = event.get(f"{prefix}ChanVariable", [])
    items = raw if isinstance(raw, list) else [raw]
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if sep:
            out[name] = value
    return out


class _Protocol(AMIProtocol):  # type: ignore[misc]
    version: str | None
    _buffer: bytes

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        if self.version is None and data.startswith(b"Asterisk Call Manager/"):
            banner, _, data = data.partition(b"\r\n")
            self.version = banner.split(b"/", 1)[1].decode(errors="replace").strip()
        messages, self._buffer = split_messages(self._buffer + data)
        if len(self._buffer) > MAX_MESSAGE:
            log.error("AMI message larger than 1 MiB: dropped")
            self._buffer = b""
        for raw in messages:
            parsed = parse_message(raw)
            if parsed is None:
                log.warning("AMI: skipped a block that is not a message", extra={"bytes": len(raw)})
                continue
            try:
                self.handle_message(Message(parsed))
            except Exception:
                # A bad event must never take the connection (or the CTI) down.
                log.exception("AMI: error while handling %s", parsed.get("Event"))


class _Manager(Manager):  # type: ignore[misc]
    pinger: asyncio.TimerHandle | None

    def __init__(self, client: AmiClient, **config: Any) -> None:
        super().__init__(protocol_factory=_Protocol, **config)
        self._client = client

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        if f.exception() is not None:
            delay = self._client.next_delay()
            log.warning(
                "AMI not reachable: retrying",
                extra={"in_s": round(delay, 2), "error": str(f.exception())},
            )
            self.loop.call_later(delay, self.connect)
            return
        super().connection_made(f)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        self.loop.call_soon(self.on_disconnect, self, exc)
        if self._client.closing:
            return
        delay = self._client.next_delay()
        log.warning("AMI connection lost: reconnecting", extra={"in_s": round(delay, 2)})
        self.loop.call_later(delay, self.connect)


class AmiClient:
    """Logs in, delivers every event to ``on_event``, calls ``on_login`` after each login."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: Callable[[AmiEvent], None] | None = None,
        on_login: Callable[[], Coroutine[Any, Any, None]] | None = None,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self.connected = False
        self.logged_in = False
        self.fully_booted = False
        self.closing = False
        self.events_seen = 0
        self.logins = 0
        self._on_event = on_event
        self._on_login_cb = on_login
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._attempt = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.manager = _Manager(
            self,
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=10,
            forgetable_actions=("ping", "login"),
        )
        self.manager.on_login = self._logged_in
        self.manager.on_disconnect = self._disconnected
        self.manager.register_event("*", self._event)

    def next_delay(self) -> float:
        """Exponential backoff with full jitter: the n-th retry waits up to min·2ⁿ."""
        ceiling = min(self._backoff_max, self._backoff_min * (2**self._attempt))
        self._attempt += 1
        return random.uniform(self._backoff_min, max(self._backoff_min, ceiling))

    def _logged_in(self, _manager: Any) -> None:
        self.connected = self.logged_in = True
        self._attempt = 0
        self.logins += 1
        log.info("AMI logged in", extra={"logins": self.logins})
        if self._on_login_cb is not None:
            task = asyncio.get_running_loop().create_task(self._on_login_cb())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _disconnected(self, _manager: Any, exc: Exception | None) -> None:
        self.connected = self.logged_in = self.fully_booted = False
        log.warning("AMI disconnected", extra={"reason": str(exc) if exc else "closed"})

    async def _event(self, _manager: Any, message: Any) -> None:
        self.events_seen += 1
        event: AmiEvent = dict(message)
        if event.get("Event") == "FullyBooted":
            self.fully_booted = True
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("CTI failed on AMI event %s; skipped", event.get("Event"))

    async def start(self) -> None:
        self.manager.connect()

    async def action(
        self, action: dict[str, str | list[str]], timeout: float = 10.0
    ) -> list[AmiEvent]:
        """Send an action; a list action (QueueStatus…) returns all its events."""
        result = await asyncio.wait_for(self.manager.send_action(action), timeout)
        items = result if isinstance(result, list) else [result]
        return [dict(m) for m in items]

    async def queue_pause(self, interface: str, paused: bool, reason: str = "") -> bool:
        """Pause or unpause a queue member (e.g. ``PJSIP/agent1001``) in all its queues;
        True when Asterisk accepted it."""
        reply = await self.action(
            {
                "Action": "QueuePause",
                "Interface": interface,
                "Paused": "true" if paused else "false",
                "Reason": reason,
            }
        )
        return bool(reply) and reply[0].get("Response") == "Success"

    def health(self) -> dict[str, Any]:
        return {
            "connected": self.logged_in,
            "fully_booted": self.fully_booted,
            "logins": self.logins,
            "events": self.events_seen,
        }

    def close(self) -> None:
        self.closing = True
        self.manager.close()
