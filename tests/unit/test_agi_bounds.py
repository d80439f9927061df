"""A hostile FastAGI peer costs one connection: every phase is bounded in bytes and time.

Fake peers over real localhost sockets against the real FastAgiServer and
AgiChannel (issue 14): an endless ``520-`` reply, an over-long line, an
environment without end, a peer silent after its environment, ``allow`` and
``max_per_peer``.  Memory is measured with tracemalloc (what the process
allocated), not RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from harness.wait import wait_for
from ivr.agi import (
    AgiChannel,
    AgiEnvironmentTooLarge,
    AgiError,
    AgiProtocolError,
    AgiReplyTooLarge,
    AgiTimeout,
    waits_on_caller,
)
from ivr.server import FastAgiServer

ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: hotline\n"
    b"agi_channel: PJSIP/callers-00000001\n"
    b"agi_uniqueid: 1700000000.1\n"
    b"\n"
)
FLOOD_LIMIT = 20 * 1024 * 1024  # what a peer would send if nothing stopped it


class Handler:
    """A call handler running one step on the channel; keeps what it raised."""

    def __init__(self, step: Callable[[AgiChannel], Awaitable[object]]) -> None:
        self._step = step
        self.calls = 0
        self.results: list[object] = []
        self.errors: list[AgiError] = []
        self.done = asyncio.Event()

    async def __call__(self, channel: AgiChannel) -> None:
        self.calls += 1
        try:
            self.results.append(await self._step(channel))
        except AgiError as e:
            self.errors.append(e)
            raise
        finally:
            self.done.set()


@contextlib.asynccontextmanager
async def serving(
    handler: Handler,
    *,
    header_timeout: float = 5.0,
    command_timeout: float = 120.0,
    reply_timeout: float = 5.0,
    max_reply_bytes: int = 64 * 1024,
    max_per_peer: int = 5000,
    allow: tuple[str, ...] = ("127.0.0.0/8",),
) -> AsyncIterator[FastAgiServer]:
    server = FastAgiServer(
        handler,
        "127.0.0.1",
        0,
        header_timeout=header_timeout,
        command_timeout=command_timeout,
        reply_timeout=reply_timeout,
        max_reply_bytes=max_reply_bytes,
        max_per_peer=max_per_peer,
        allow=allow,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=1.0)


async def flood(writer: asyncio.StreamWriter, chunk: bytes) -> int:
    """Write ``chunk`` again and again until the server drops us; return the bytes sent."""
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < FLOOD_LIMIT:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    return sent


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """What the server sent before closing (b"" if nothing); a reset counts as closed."""
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        return b""


# -- one reply --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"520-" + b"u" * 59 + b"\n", "lines"),  # 200 short lines come first
        (b"520-" + b"u" * 1019 + b"\n", "bytes"),  # 64 KiB comes first
    ],
)
async def test_endless_520_reply_closes_the_connection_and_buffers_little(
    line: bytes, why: str
) -> None:
    handler = Handler(lambda ch: ch.verbose("hello"))
    async with serving(handler, reply_timeout=30.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert (await reader.readline()).startswith(b"VERBOSE")
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            t0 = time.monotonic()
            writer.write(b"520-Invalid command syntax.  Proper usage follows:\n")
            sent = await asyncio.wait_for(flood(writer, line * (65536 // len(line))), 10)
            elapsed = time.monotonic() - t0
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        writer.close()
        await asyncio.wait_for(handler.done.wait(), 3)
    assert sent < FLOOD_LIMIT, "the server kept reading an endless reply"
    assert elapsed < 3
    # The server held at most a few socket reads of it, never the reply so far.
    assert peak < 2 * 1024 * 1024, f"{peak} bytes allocated while {sent} were sent"
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], AgiReplyTooLarge)
    assert why in str(handler.errors[0])
    assert server.dropped_oversize == 1 and server.served == 0


async def test_a_reply_line_over_the_byte_bound_is_refused() -> None:
    handler = Handler(lambda ch: ch.get_variable("CALLER_NOTE"))
    async with serving(handler, max_reply_bytes=1024) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert (await reader.readline()).startswith(b"GET VARIABLE")
        writer.write(b"200 result=1 (" + b"x" * 2000 + b")\n")
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()
        await asyncio.wait_for(handler.done.wait(), 3)
    assert handler.results == []
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], AgiReplyTooLarge)
    assert server.dropped_oversize == 1


async def test_an_endless_reply_line_is_refused_without_buffering_it() -> None:
    handler = Handler(lambda ch: ch.get_variable("CALLER_NOTE"))
    async with serving(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert (await reader.readline()).startswith(b"GET VARIABLE")
        writer.write(b"200 result=1 (")
        sent = await asyncio.wait_for(flood(writer, b"x" * 65536), 10)
        writer.close()
        await asyncio.wait_for(handler.done.wait(), 3)
    assert sent < FLOOD_LIMIT
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], AgiReplyTooLarge)
    assert server.dropped_oversize == 1


# -- the environment --------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunk",
    [
        b"agi_padding: yes\n" * 4096,  # lines without the empty line that ends them
        b"agi_channel: " + b"x" * 65536,  # one line without end
    ],
    ids=["endless lines", "endless line"],
)
async def test_an_environment_without_end_is_refused_quickly(chunk: bytes) -> None:
    handler = Handler(lambda ch: ch.verbose("never"))
    tracemalloc.start()
    try:
        async with serving(handler, header_timeout=30.0) as server:
            base = tracemalloc.get_traced_memory()[0]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            t0 = time.monotonic()
            sent = await asyncio.wait_for(flood(writer, chunk), 10)
            assert await closed_by_server(reader) == b""
            writer.close()
            elapsed = time.monotonic() - t0
            await wait_for(lambda: server.dropped_oversize, 3)
            await asyncio.sleep(0.05)
            del reader, writer
            gc.collect()
            # Nothing of the connection outlives it: not even through the log
            # record of its rejection, which the test's log capture keeps.
            kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert kept < 64 * 1024, f"{kept} bytes still held after the connection closed"
    assert sent < FLOOD_LIMIT and elapsed < 3
    assert handler.calls == 0
    assert server.rejected == 1 and server.dropped_oversize == 1


async def test_an_environment_over_the_byte_bound_is_refused() -> None:
    # 100 lines of 1 KB: each line and the line count are within their bounds,
    # the whole is not (a real environment is about 1 KB).
    padding = b"".join(b"agi_pad_%d: %s\n" % (i, b"x" * 1000) for i in range(100))
    handler = Handler(lambda ch: ch.verbose("never"))
    async with serving(handler) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(padding + ENV)
        await writer.drain()
        assert await closed_by_server(reader) == b""
        writer.close()
        await wait_for(lambda: server.rejected, 3)
    assert handler.calls == 0
    assert server.dropped_oversize == 1


async def test_an_environment_trickled_slowly_is_dropped_at_the_header_timeout() -> None:
    handler = Handler(lambda ch: ch.verbose("never"))
    async with serving(handler, header_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        t0 = time.monotonic()
        with contextlib.suppress(ConnectionError):
            for byte in ENV:
                if reader.at_eof():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)
        assert await closed_by_server(reader) == b""
        writer.close()
        assert time.monotonic() - t0 < 2.5
    assert handler.calls == 0
    assert server.dropped_timeout == 1


# -- the wait for each reply -------------------------------------------------------------


def test_commands_are_classed_by_whether_they_wait_on_the_caller() -> None:
    for command in [
        "STREAM FILE hello #",
        "CONTROL STREAM FILE x # 3000",
        "WAIT FOR DIGIT 5000",
        'GET DATA "x" 5000 4',
        "GET OPTION x 12",
        "RECORD FILE x wav # 10000",
        "SAY NUMBER 42 #",
        "say digits 123 #",
        "EXEC AudioSocket x",
        "SPEECH RECOGNIZE x 5",
    ]:
        assert waits_on_caller(command), command
    for command in [
        'GET VARIABLE "X"',
        'GET FULL VARIABLE "${CHANNEL(linkedid)}"',
        'SET VARIABLE HOTLINE_QUEUE "billing"',
        "ANSWER",
        "HANGUP",
        "CHANNEL STATUS",
        'VERBOSE "x" 1',
        "SET MUSIC on",
    ]:
        assert not waits_on_caller(command), command


async def test_a_peer_silent_after_its_environment_is_dropped_after_reply_timeout() -> None:
    handler = Handler(lambda ch: ch.get_full_variable("${CHANNEL(linkedid)}"))
    async with serving(handler, reply_timeout=0.3, command_timeout=30.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert (await reader.readline()).startswith(b"GET FULL VARIABLE")
        t0 = time.monotonic()
        assert await closed_by_server(reader) == b""
        elapsed = time.monotonic() - t0
        writer.close()
        await asyncio.wait_for(handler.done.wait(), 3)
    assert 0.2 < elapsed < 2, elapsed
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], AgiTimeout)
    assert server.dropped_timeout == 1 and server.active_calls == 0


async def test_a_peer_silent_before_a_long_first_command_is_dropped_after_reply_timeout() -> None:
    # The demo dialplan passes the linkedid as an argument: the first command is a
    # prompt, which may take command_timeout.  The NOOP before it may not.
    handler = Handler(lambda ch: ch.stream_file("hotline/welcome", "1"))
    async with serving(handler, reply_timeout=0.3, command_timeout=30.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert await reader.readline() == b"NOOP\n"
        t0 = time.monotonic()
        assert await closed_by_server(reader) == b""
        elapsed = time.monotonic() - t0
        writer.close()
        await asyncio.wait_for(handler.done.wait(), 3)
    assert 0.2 < elapsed < 2, elapsed
    assert server.dropped_timeout == 1 and server.active_calls == 0


async def test_a_slow_stream_file_reply_within_command_timeout_is_accepted() -> None:
    # Asterisk answers STREAM FILE when the prompt has played: seconds, not at once.
    handler = Handler(lambda ch: ch.stream_file("hotline/welcome", "1"))
    async with serving(handler, reply_timeout=0.3, command_timeout=5.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(ENV)
        await writer.drain()
        assert await reader.readline() == b"NOOP\n"
        writer.write(b"200 result=0\n")
        await writer.drain()
        assert (await reader.readline()).startswith(b"STREAM FILE")
        await asyncio.sleep(1.0)
        writer.write(b"200 result=49 endpos=8000\n")
        await writer.drain()
        await asyncio.wait_for(handler.done.wait(), 3)
        writer.close()
        await wait_for(lambda: server.served, 3)
    assert handler.errors == [] and handler.results == ["1"]
    assert server.dropped_timeout == 0


# -- who may connect ---------------------------------------------------------------------


async def test_a_peer_outside_allow_is_refused_before_a_byte_is_read() -> None:
    handler = Handler(lambda ch: ch.verbose("never"))
    async with serving(handler, allow=("10.0.0.0/8",)) as server:
        # Connected and written before the server's loop even accepts the
        # connection: the bytes wait in the server's socket.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(ENV)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            # Closing a socket with unread bytes in it sends a reset: had the
            # server read the environment and then closed, we would see EOF.
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(loop.sock_recv(sock, 1024), 3)
        finally:
            sock.close()
        # Not even a silent client gets a slot.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await closed_by_server(reader, 1) == b""
        writer.close()
    assert handler.calls == 0
    assert server.refused_allow == 2


async def test_max_per_peer_refuses_one_more_from_that_address_only() -> None:
    release = asyncio.Event()

    async def hold(ch: AgiChannel) -> None:
        await ch.verbose("hold")
        await release.wait()

    handler = Handler(hold)

    async def call(local: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, local_addr=(local, 0)
        )
        writer.write(ENV)
        with contextlib.suppress(ConnectionError):  # a refused one may be reset at once
            await writer.drain()
        return reader, writer

    async with serving(handler, max_per_peer=2) as server:
        held = [await call("127.0.0.1"), await call("127.0.0.1")]
        for reader, writer in held:
            assert (await reader.readline()).startswith(b"VERBOSE")
            writer.write(b"200 result=1\n")
        third = await call("127.0.0.1")
        assert await closed_by_server(third[0]) == b""
        third[1].close()
        # Another address still gets its call.
        other = await call("127.0.0.2")
        assert (await other[0].readline()).startswith(b"VERBOSE")
        other[1].write(b"200 result=1\n")
        assert server.refused_per_peer == 1 and handler.calls == 3
        # Slots come back when calls end.
        release.set()
        for _, writer in [*held, other]:
            writer.close()
        await wait_for(lambda: server.active_calls == 0, 3)
        again = await call("127.0.0.1")
        assert (await again[0].readline()).startswith(b"VERBOSE")
        again[1].close()
        await wait_for(lambda: handler.calls == 4, 3)
    assert server.refused_per_peer == 1


def test_protocol_errors_are_precise() -> None:
    assert issubclass(AgiReplyTooLarge, AgiProtocolError)
    assert issubclass(AgiEnvironmentTooLarge, AgiProtocolError)
    assert issubclass(AgiTimeout, AgiProtocolError)
