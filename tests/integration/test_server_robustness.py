"""Bad FastAGI clients cost only their own connection (panoramisk's weak spot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hotline.records.interactions import Interaction
from ivr.flow.engine import CallRouter, Services
from ivr.server import FastAgiServer
from tests.support.bad_clients import BAD_CLIENTS, send_garbage
from tests.support.fake_asterisk import FakeCall


@pytest.fixture
async def server(services: Services) -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0, header_timeout=1.0)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_garbage_does_not_disturb_calls(server: FastAgiServer, services: Services) -> None:
    # A call starts, garbage of every kind arrives while it runs, and a
    # silent client just holds a socket open: the call finishes normally and a
    # new call afterwards is served at once.
    silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", server.port)
    call = asyncio.create_task(FakeCall(keys=["1", "0"]).run(server.port))
    replies = await asyncio.gather(*(send_garbage(server.port, p) for p in BAD_CLIENTS.values()))
    done = await call
    assert done.variables["HOTLINE_QUEUE"] == "billing"
    # Nothing was sent to any garbage client: no command to a non-call.
    assert replies == [b""] * len(BAD_CLIENTS)
    after = await asyncio.wait_for(
        FakeCall(keys=["0"], linkedid="1700000000.2").run(server.port), 5
    )
    assert after.variables["HOTLINE_QUEUE"] == "support"
    # The silent client is dropped after the header timeout.
    assert await asyncio.wait_for(silent_reader.read(), 3) == b""
    silent_writer.close()
    assert server.rejected >= len(BAD_CLIENTS) + 1


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_malformed_reply_mid_call_ends_only_that_call(
    server: FastAgiServer, services: Services
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(FakeCall().env())
    await writer.drain()
    await reader.readline()  # GET FULL VARIABLE
    writer.write(b"this is not AGI\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""  # server closed this call
    writer.close()
    ok = await asyncio.wait_for(FakeCall(keys=["0"], linkedid="1700000000.3").run(server.port), 5)
    assert ok.variables["HOTLINE_QUEUE"] == "support"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_malformed_reply_inside_the_flow_is_recorded_as_error(
    server: FastAgiServer, services: Services
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(FakeCall(linkedid="1700000000.4").env())
    await writer.drain()
    await reader.readline()  # GET FULL VARIABLE ${CHANNEL(linkedid)}
    writer.write(b"200 result=1 (1700000000.4)\n")
    await writer.drain()
    await reader.readline()  # the first STREAM FILE
    writer.write(b"\x00\x01garbage\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()

    async def finished() -> Interaction | None:
        it = await services.interactions.get("1700000000.4")
        return it if it and it.ended_at else None

    from harness.wait import wait_for

    it = await wait_for(finished, 5, what="the call's finished interaction record")
    assert it is not None and it.outcome == "error"
