"""AMI client on asyncio streams: login, actions, events, keepalive, reconnect.

Our own small client rather than panoramisk's Manager: through its public API
panoramisk 1.4 reconnects on a fixed 2 s timer, does not report a refused
login, sends pings without ever checking the answer, and decodes each TCP
chunk on its own (a UTF-8 character split across reads is dropped).  The
wire format lives in :mod:`cti.amiproto` as pure functions; this module owns
the socket:

- one session at a time: connect, banner, ``Login``, then read until the peer
  goes; a ``Ping`` every ``ping_interval`` seconds that is not answered in as
  long drops a dead connection;
- after a lost or refused session it waits with exponential backoff and
  jitter (``backoff_min`` … ``backoff_max``) and tries again, and calls
  ``on_login`` after every login so the owner can rebuild state: events
  during a disconnect are lost;
- replies are matched to actions by ``ActionID`` (the messages of a list
  action or an async ``Originate`` are collected); events go to ``on_event``;
- a line or message over the limits (``max_line``, ``max_message``) costs the
  peer its connection, logged once, never unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cti.amiproto import (
    MAX_LINE,
    MAX_MESSAGE,
    Action,
    AmiEvent,
    FrameTooLarge,
    Reply,
    chan_variables,
    encode_action,
    header,
    parse_message,
    split_messages,
)

__all__ = [
    "AmiClient",
    "AmiDisconnected",
    "AmiEvent",
    "AmiLoginFailed",
    "chan_variables",
    "parse_message",
    "split_messages",
]

log = logging.getLogger("hotline.ami")

BANNER = b"Asterisk Call Manager/"
READ_SIZE = 64 * 1024


class AmiDisconnected(ConnectionError, TimeoutError):
    """No AMI connection (or it went away while an action waited for its reply).

    Also a TimeoutError: to a caller it is an action that got no answer, and
    code written for the timeout handles it the same way.
    """


class AmiLoginFailed(ConnectionError):
    """Asterisk refused the username or secret."""


class _ProtocolError(ConnectionError):
    """The peer does not speak AMI as expected (banner, ping)."""


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
        *,
        ping_interval: float = 10.0,
        connect_timeout: float = 5.0,
        max_line: int = MAX_LINE,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._secret = secret
        self.connected = False
        self.logged_in = False
        self.fully_booted = False
        self.closing = False
        self.events_seen = 0
        self.logins = 0
        self.version: str | None = None
        self.last_error: str | None = None
        self._on_event = on_event
        self._on_login_cb = on_login
        self._backoff_min = backoff_min
        self._backoff_max = max(backoff_min, backoff_max)
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._max_line = max_line
        self._max_message = max_message
        self._attempt = 0
        self._logged_in_since: float | None = None  # monotonic time of this session's login
        self._ids = itertools.count(1)
        self._id_prefix = f"hotline-{secrets.token_hex(3)}-"
        self._pending: dict[str, tuple[Reply, asyncio.Future[list[AmiEvent]]]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start connecting (in the background: returns at once, retries until close)."""
        if self._runner is None and not self.closing:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="ami-client")

    async def action(self, action: Action, timeout: float = 10.0) -> list[AmiEvent]:
        """Send an action; returns its response, and for a list action (QueueStatus…)
        or an async Originate all its events too.

        Raises TimeoutError when no complete reply comes in ``timeout`` seconds,
        :class:`AmiDisconnected` (a TimeoutError and an OSError) when not logged
        in or when the connection goes while waiting.
        """
        if not self.logged_in:
            raise AmiDisconnected("AMI not logged in")
        return await self._send(action, timeout)

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
            "error": None if self.logged_in else self.last_error,
        }

    def next_delay(self) -> float:
        """Exponential backoff with full jitter: the n-th retry waits up to min·2ⁿ."""
        ceiling = min(self._backoff_max, self._backoff_min * (2 ** min(self._attempt, 60)))
        self._attempt += 1
        return random.uniform(self._backoff_min, max(self._backoff_min, ceiling))

    def close(self) -> None:
        """Log off and stop; pending actions fail with :class:`AmiDisconnected`."""
        if self.closing:
            return
        self.closing = True
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                if self.logged_in:
                    writer.write(encode_action({"Action": "Logoff", "ActionID": self._new_id()}))
                writer.close()
        self._mark_down()
        self._fail_pending("AMI client closed")
        for task in (self._runner, *self._tasks):
            if task is not None:
                task.cancel()

    async def wait_closed(self) -> None:
        """After :meth:`close`: wait until the background tasks have ended."""
        tasks = [t for t in (self._runner, *self._tasks) if t is not None]
        if tasks:
            await asyncio.wait(tasks)

    # -- connection loop --------------------------------------------------------------
    async def _run(self) -> None:
        while not self.closing:
            started = time.monotonic()
            was_connected = False
            try:
                await self._session()
                reason = "closed by Asterisk"
            except asyncio.CancelledError:
                raise
            except AmiLoginFailed as e:
                reason = f"login refused: {e}"
                log.error("AMI login refused", extra={"user": self._username, "error": str(e)})
            except FrameTooLarge as e:
                reason = f"peer sent too much: {e}"
                log.error(
                    "AMI peer over the size limits: connection dropped", extra={"error": str(e)}
                )
            except (OSError, TimeoutError, EOFError) as e:
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            except Exception as e:  # a bug here must not end the reconnecting
                reason = f"{type(e).__name__}: {e}"
                log.exception("AMI session failed")
            finally:
                was_connected = self.connected
                self._mark_down()
                self._fail_pending("AMI connection lost")
            if self.closing:
                return
            self.last_error = reason
            # A session that stayed up a while resets the backoff; one that
            # drops right after login (a flapping peer) keeps growing it.
            since, self._logged_in_since = self._logged_in_since, None
            if since is not None and time.monotonic() - since >= self._backoff_max:
                self._attempt = 0
            delay = self.next_delay()
            log.warning(
                "AMI disconnected: reconnecting"
                if was_connected
                else "AMI not reachable: retrying",
                extra={
                    "reason": reason,
                    "in_s": round(delay, 2),
                    "after_s": round(time.monotonic() - started, 2),
                    "had_login": since is not None,
                },
            )
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One connection, from connect to loss; returns when the peer closes it."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=self._max_line),
            self._connect_timeout,
        )
        self._writer = writer
        self.connected = True
        reading: asyncio.Task[None] | None = None
        try:
            try:
                banner = await asyncio.wait_for(reader.readuntil(b"\r\n"), self._connect_timeout)
            except asyncio.LimitOverrunError as e:
                raise FrameTooLarge(f"banner longer than {self._max_line} bytes") from e
            except asyncio.IncompleteReadError as e:
                raise EOFError("closed before the banner") from e
            if not banner.startswith(BANNER):
                raise _ProtocolError(f"not an AMI banner: {banner[:60]!r}")
            self.version = banner[len(BANNER) :].decode("utf-8", "replace").strip()
            reading = asyncio.get_running_loop().create_task(self._read(reader), name="ami-read")
            try:
                await self._login()
                await self._keepalive(reading)
            except AmiDisconnected:
                if not reading.done():
                    raise
            # The reader ended: EOF returns, anything else says why.
            await reading
        finally:
            if reading is not None and not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading
            if self._writer is writer:
                self._writer = None
            writer.close()

    async def _login(self) -> None:
        reply = await self._send(
            {
                "Action": "Login",
                "Username": self._username,
                "Secret": self._secret,
                "Events": "on",
            },
            self._connect_timeout,
        )
        if header(reply[0], "Response") != "Success":
            raise AmiLoginFailed(header(reply[0], "Message") or "refused")
        self.logged_in = True
        self._logged_in_since = time.monotonic()
        self.last_error = None
        self.logins += 1
        log.info("AMI logged in", extra={"logins": self.logins, "version": self.version})
        if self._on_login_cb is not None:
            task = asyncio.get_running_loop().create_task(self._on_login_cb(), name="ami-on-login")
            self._tasks.add(task)
            task.add_done_callback(self._login_done)

    def _login_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("AMI on_login failed", exc_info=exc)

    async def _keepalive(self, reading: asyncio.Task[None]) -> None:
        """Ping every ``ping_interval`` s; returns when the reader ends."""
        while True:
            done, _ = await asyncio.wait({reading}, timeout=self._ping_interval)
            if done:
                return
            try:
                await self._send({"Action": "Ping"}, self._ping_interval)
            except AmiDisconnected:
                raise
            except TimeoutError as e:
                raise _ProtocolError(f"no answer to Ping in {self._ping_interval} s") from e

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while True:
            chunk = await reader.read(READ_SIZE)
            if not chunk:
                return
            try:
                messages, buffer = split_messages(
                    buffer + chunk, max_line=self._max_line, max_message=self._max_message
                )
            except FrameTooLarge as e:
                # What came before the offending message is good: handle it, then go.
                for raw in e.messages:
                    if not self._handle(raw):
                        return
                raise
            for raw in messages:
                if not self._handle(raw):
                    return

    def _handle(self, raw: bytes) -> bool:
        """One message from the peer; False when the session must end (Shutdown)."""
        message = parse_message(raw)
        if message is None:
            log.warning("AMI: skipped a block that is not a message", extra={"bytes": len(raw)})
            return True
        action_id = message.get("ActionID")
        if isinstance(action_id, str) and action_id in self._pending:
            reply, future = self._pending[action_id]
            if reply.add(message):
                del self._pending[action_id]
                if not future.done():
                    future.set_result(reply.messages)
            return True
        name = message.get("Event")
        if name is None:
            log.debug("AMI: response to no waiting action", extra={"action_id": action_id})
            return True
        self.events_seen += 1
        if name == "FullyBooted":
            self.fully_booted = True
        if self._on_event is not None:
            try:
                self._on_event(message)
            except Exception:
                # A bad event must never take the connection (or the CTI) down.
                log.exception("CTI failed on AMI event %s; skipped", name)
        if name == "Shutdown":
            log.warning("AMI: Asterisk is shutting down", extra={"restart": message.get("Restart")})
            return False
        return True

    # -- actions ----------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    async def _send(self, action: Action, timeout: float) -> list[AmiEvent]:
        writer = self._writer
        if writer is None or not self.connected:
            raise AmiDisconnected("AMI not connected")
        given = next((k for k in action if k.lower() == "actionid"), None)
        if given is None:
            action_id = self._new_id()
            action = {**action, "ActionID": action_id}
        else:
            value = action[given]
            if not isinstance(value, str):
                raise ValueError("ActionID must be one string")
            action_id = value
            if action_id in self._pending:
                raise ValueError(f"ActionID {action_id!r} is already waiting for a reply")
        data = encode_action(action)
        future: asyncio.Future[list[AmiEvent]] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = (Reply(action), future)

        async def round_trip() -> list[AmiEvent]:
            try:
                writer.write(data)
                await writer.drain()
            except AmiDisconnected:
                raise
            except OSError as e:
                raise AmiDisconnected(f"AMI write failed: {e}") from e
            return await future

        try:
            return await asyncio.wait_for(round_trip(), timeout)
        finally:
            entry = self._pending.get(action_id)
            if entry is not None and entry[1] is future:
                del self._pending[action_id]

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, {}
        for _reply, future in pending.values():
            if not future.done():
                future.set_exception(AmiDisconnected(why))

    def _mark_down(self) -> None:
        self.connected = self.logged_in = self.fully_booted = False
