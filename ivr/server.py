"""The FastAGI server: accepts Asterisk's connections and runs one task per call.

Why not panoramisk's ``fast_agi.Application``: its header loop reads until it
sees a blank line and spins forever on a connection that closes early, which
stalls the whole event loop, so one bad client makes every later call sit in
AGI until hangup (seen here with Asterisk 22, see docs/operations.md).  This
server bounds every phase of a connection in bytes and time (the environment,
each reply, the wait for each reply: ``ivr.agi``), refuses a peer outside
``allow`` or over its ``max_per_peer`` slots before reading a byte of it, and
a bad client only ever costs its own connection (docs/operations.md, "What a
FastAGI peer may cost").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from hotline.logs import call_id_var
from ivr.agi import (
    MAX_REPLY_BYTES,
    MAX_REPLY_LINES,
    AgiChannel,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiTimeout,
    AgiTooLarge,
    read_environment,
)

log = logging.getLogger("hotline.agi")

CallHandler = Callable[[AgiChannel], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# A refusal is logged at most this often per reason (a flood of refused
# connections must not become a flood of log lines); the counters see them all.
REFUSAL_LOG_INTERVAL_S = 10.0


def peer_address(peername: object) -> Address | None:
    """The IP address of a socket's peer name; an IPv4-mapped IPv6 one as IPv4."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None
    try:
        address = ipaddress.ip_address(peername[0].split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _Throttled:
    """Logs a warning at most once per interval, with how many were not logged."""

    def __init__(self, message: str, interval: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self._message = message
        self._interval = interval
        self._next = 0.0
        self._quiet = 0

    def warn(self, peer: str) -> None:
        now = time.monotonic()
        if now < self._next:
            self._quiet += 1
            return
        log.warning(self._message, extra={"peer": peer, "not_logged": self._quiet})
        self._next = now + self._interval
        self._quiet = 0


class FastAgiServer:
    def __init__(
        self,
        handler: CallHandler,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        command_timeout: float = 120.0,
        max_connections: int = 5000,
        *,
        reply_timeout: float = 5.0,
        max_reply_lines: int = MAX_REPLY_LINES,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        max_per_peer: int = 5000,
        allow: Iterable[Network | str] = LOOPBACK,
    ) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._reply_timeout = reply_timeout
        self._max_reply_lines = max_reply_lines
        self._max_reply_bytes = max_reply_bytes
        self._max_connections = max_connections
        self._max_per_peer = max_per_peer
        self._allow: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in allow
        )
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()
        # Connections accepted and not yet closed: in all, and per peer address.
        self._open = 0
        self._per_peer: dict[Address, int] = {}
        # Refused before a byte was read: at max_connections (rejected, with the
        # bad environments), outside allow, over max_per_peer.
        self.rejected = 0
        self.refused_allow = 0
        self.refused_per_peer = 0
        # Closed because the peer broke a bound, in any phase (environment, reply).
        self.dropped_oversize = 0
        self.dropped_timeout = 0
        self.served = 0
        self._log_full = _Throttled("FastAGI connection refused: at max_connections")
        self._log_allow = _Throttled("FastAGI connection refused: peer not in [agi] allow")
        self._log_per_peer = _Throttled("FastAGI connection refused: peer at [agi] max_per_peer")

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    def counters(self) -> dict[str, int]:
        """What /health reports of the connections this server refused or dropped."""
        return {
            "rejected": self.rejected,
            "refused_allow": self.refused_allow,
            "refused_per_peer": self.refused_per_peer,
            "dropped_oversize": self.dropped_oversize,
            "dropped_timeout": self.dropped_timeout,
        }

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connected,
            self.host,
            self.port,
            limit=8192,
            reuse_address=True,
            # asyncio's default backlog of 100 drops connections when a burst of
            # calls arrives at once (seen in bench/fastagi_load.py at N=1000).
            backlog=1024,
        )
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("FastAGI listening", extra={"address": f"{sock[0]}:{sock[1]}"})

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._calls:
            _, pending = await asyncio.wait(set(self._calls), timeout=grace)
            for t in pending:
                t.cancel()

    def _connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Awaitable[None] | None:
        """Admit or refuse a new connection.

        Plain, not async: asyncio's stream protocol calls it from connection_made,
        before the socket is ever read, and runs the coroutine it returns as the
        connection's task.  A refused connection is closed here: not one byte of
        it is read, nothing is sent.
        """
        address = peer_address(writer.get_extra_info("peername"))
        if address is None or not any(address in net for net in self._allow):
            self.refused_allow += 1
            self._log_allow.warn(str(address))
            writer.close()
            return None
        if self._open >= self._max_connections:
            self.rejected += 1
            self._log_full.warn(str(address))
            writer.close()
            return None
        held = self._per_peer.get(address, 0)
        if held >= self._max_per_peer:
            self.refused_per_peer += 1
            self._log_per_peer.warn(str(address))
            writer.close()
            return None
        self._open += 1
        self._per_peer[address] = held + 1
        return self._accept(reader, writer, address)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            await self._serve(reader, writer, str(address))
        finally:
            self._calls.discard(task)
            self._open -= 1
            left = self._per_peer[address] - 1
            if left:
                self._per_peer[address] = left
            else:
                del self._per_peer[address]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _count_drop(self, error: AgiError) -> None:
        if isinstance(error, AgiTooLarge):
            self.dropped_oversize += 1
        elif isinstance(error, AgiTimeout):
            self.dropped_timeout += 1

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            env = await read_environment(reader, self._header_timeout)
        except AgiProtocolError as e:
            self.rejected += 1
            self._count_drop(e)
            # The text, not the exception: a handler that keeps records (a test's
            # log capture, a queue) would keep its traceback, and the frames hold
            # the connection's buffers.
            log.warning("FastAGI client rejected: %s", str(e), extra={"peer": peer})
            return
        channel = AgiChannel(
            reader,
            writer,
            env,
            self._command_timeout,
            reply_timeout=self._reply_timeout,
            max_reply_lines=self._max_reply_lines,
            max_reply_bytes=self._max_reply_bytes,
        )
        token = call_id_var.set(channel.uniqueid or None)
        try:
            try:
                await self._handler(channel)
                failure: AgiError | None = None
            except AgiHangup:
                failure = None
            except AgiError as e:
                failure = e
            except Exception:
                # The handler sends callers to an agent on its own errors; this is
                # the last net so one call's bug never reaches another call.
                log.exception("unhandled error in call handler")
                return
            # The engine may have swallowed the channel's failure (the flow ends and
            # the dialplan queues the caller): the channel keeps it, so the cause is
            # counted and logged here, once per connection.
            failure = channel.failure or failure
            if failure is None:
                self.served += 1
                return
            self._count_drop(failure)
            log.warning("AGI session ended: %s", str(failure), extra={"peer": peer})
        finally:
            call_id_var.reset(token)
