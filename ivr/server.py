"""The FastAGI server: accepts Asterisk's connections and runs one task per call.

Why not panoramisk's ``fast_agi.Application``: its header loop reads until it
sees a blank line and spins forever on a connection that closes early, which
stalls the whole event loop, so one bad client makes every later call sit in
AGI until hangup (seen here with Asterisk 22, see docs/operations.md).  This
server bounds the environment block in lines, bytes and time, and a bad
client only ever costs its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from hotline.logs import call_id_var
from ivr.agi import AgiChannel, AgiError, AgiHangup, AgiProtocolError, read_environment

log = logging.getLogger("hotline.agi")

CallHandler = Callable[[AgiChannel], Awaitable[None]]


class FastAgiServer:
    def __init__(
        self,
        handler: CallHandler,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout: float = 5.0,
        command_timeout: float = 120.0,
        max_connections: int = 5000,
    ) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._header_timeout = header_timeout
        self._command_timeout = command_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self.rejected = 0
        self.served = 0

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept,
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

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        peer = writer.get_extra_info("peername")
        try:
            if self._slots.locked():
                log.warning("FastAGI connection refused: at max_connections")
                self.rejected += 1
                return
            async with self._slots:
                await self._serve(reader, writer, peer)
        finally:
            self._calls.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        try:
            env = await read_environment(reader, self._header_timeout)
        except AgiProtocolError as e:
            self.rejected += 1
            log.warning("FastAGI client rejected: %s", e, extra={"peer": str(peer)})
            return
        channel = AgiChannel(reader, writer, env, self._command_timeout)
        token = call_id_var.set(channel.uniqueid or None)
        try:
            await self._handler(channel)
            self.served += 1
        except AgiHangup:
            self.served += 1
        except AgiError as e:
            log.warning("AGI session ended: %s", e)
        except Exception:
            # The handler sends callers to an agent on its own errors; this is
            # the last net so one call's bug never reaches another call.
            log.exception("unhandled error in call handler")
        finally:
            call_id_var.reset(token)
