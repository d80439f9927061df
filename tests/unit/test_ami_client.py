"""The AMI client: pure framing on any cut of the bytes, then the client against
a scripted AMI peer on a real localhost socket (login, actions, events,
reconnect with backoff, refused login, size limits, keepalive)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from cti.ami import AmiClient, AmiDisconnected, AmiEvent
from cti.amiproto import (
    FrameTooLarge,
    Reply,
    chan_variables,
    encode_action,
    parse_message,
    split_messages,
)

# -- framing: pure -----------------------------------------------------------------------

STREAM = (
    "Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
    "Event: AgentCalled\r\nCallerIDName: 김민지\r\nChanVariable: HOTLINE_INTENT=billing\r\n"
    "ChanVariable: X=a=b\r\nQueue: billing\r\n\r\n"
    "Response: Success\r\nActionID: a-1\r\nMessage: Pong\r\n\r\n"
).encode()


def frame_all(chunks: list[bytes], **limits: int) -> list[AmiEvent | None]:
    rest, out = b"", []
    for chunk in chunks:
        messages, rest = split_messages(rest + chunk, **limits)
        out += [parse_message(m) for m in messages]
    assert rest == b""
    return out


def test_framing_is_the_same_for_every_cut_into_two_reads() -> None:
    whole = frame_all([STREAM])
    assert [m and m.get("Event", m.get("Response")) for m in whole] == [
        "FullyBooted",
        "AgentCalled",
        "Success",
    ]
    for cut in range(1, len(STREAM)):
        assert frame_all([STREAM[:cut], STREAM[cut:]]) == whole, cut


def test_framing_byte_by_byte_and_coalesced_with_stray_blank_lines() -> None:
    whole = frame_all([STREAM])
    assert frame_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == whole
    assert frame_all([b"\r\n" + STREAM + b"\r\n\r\n" + STREAM]) == whole + whole


def test_repeated_headers_stay_lists_and_utf8_survives() -> None:
    called = frame_all([STREAM])[1]
    assert called is not None
    assert called["ChanVariable"] == ["HOTLINE_INTENT=billing", "X=a=b"]
    assert chan_variables(called) == {"HOTLINE_INTENT": "billing", "X": "a=b"}
    assert called["CallerIDName"] == "김민지"


def test_an_over_long_line_or_message_is_refused_not_buffered() -> None:
    limits = {"max_line": 100, "max_message": 1000}
    # An endless line, arriving in pieces: refused as soon as it passes the limit.
    with pytest.raises(FrameTooLarge, match="line"):
        frame_all([b"Event: X\r\nData: ", b"a" * 60, b"a" * 60], **limits)
    # A long line inside one complete message; the good ones before it are kept.
    with pytest.raises(FrameTooLarge, match="line") as refused:
        split_messages(b"Event: A\r\n\r\nEvent: X\r\nData: " + b"a" * 200 + b"\r\n\r\n", **limits)
    assert refused.value.messages == [b"Event: A"]
    # An endless message of short lines.
    with pytest.raises(FrameTooLarge, match="message"):
        frame_all([b"Event: X\r\n"] + [b"Key: value\r\n"] * 100, **limits)
    # Right at the limits is fine, and without limits nothing is refused.
    line = b"Data: " + b"a" * 94
    assert frame_all([b"Event: X\r\n" + line + b"\r\n\r\n"], **limits)[0] == {
        "Event": "X",
        "Data": "a" * 94,
    }
    assert split_messages(b"x" * 10_000)[1] == b"x" * 10_000


def test_old_command_output_with_blank_lines_is_one_message() -> None:
    raw = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c-1\r\n"
        b"Channel   State\nPJSIP/a  Up\n\r\n\r\nEnd: of: table\n--END COMMAND--\r\n\r\n"
        b"Event: Next\r\n\r\n"
    )
    for cut in (5, 60, 80, len(raw) - 20):
        got = frame_all([raw[:cut], raw[cut:]])
        assert len(got) == 2
        assert got[0] == {
            "Response": "Follows",
            "Privilege": "Command",
            "ActionID": "c-1",
            "Output": ["Channel   State", "PJSIP/a  Up", "", "", "End: of: table"],
        }
        assert got[1] == {"Event": "Next"}


def test_actions_encode_lists_as_repeated_headers_and_refuse_line_breaks() -> None:
    data = encode_action({"Action": "Originate", "Variable": ["A=1", "B=2"], "ActionID": "x"})
    assert data == b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\nActionID: x\r\n\r\n"
    with pytest.raises(ValueError):
        encode_action({"Action": "Originate", "CallerID": "evil\r\nAction: Hangup"})
    with pytest.raises(ValueError):
        encode_action({"Bad:Key": "x"})


def test_replies_complete_like_asterisk_answers() -> None:
    plain = Reply({"Action": "Ping"})
    assert plain.add({"Response": "Success", "Ping": "Pong"})
    listing = Reply({"Action": "QueueStatus"})
    assert not listing.add({"Response": "Success", "EventList": "start"})
    assert not listing.add({"Event": "QueueMember"})
    assert listing.add({"Event": "QueueStatusComplete", "EventList": "Complete"})
    assert len(listing.messages) == 3
    originate = Reply({"Action": "Originate", "Async": "true"})
    assert not originate.add({"Response": "Success", "Message": "Originate successfully queued"})
    assert originate.add({"Event": "OriginateResponse", "Response": "Failure"})
    refused = Reply({"Action": "Originate", "Async": "true"})
    assert refused.add({"Response": "Error", "Message": "Extension does not exist."})


def test_backoff_grows_from_min_to_max_with_jitter() -> None:
    random.seed(3)
    client = AmiClient("127.0.0.1", 1, "u", "s", backoff_min=0.5, backoff_max=4.0)
    delays = [client.next_delay() for _ in range(12)]
    assert all(0.5 <= d <= 4.0 for d in delays)
    assert max(delays[:2]) <= 1.0  # attempts 0, 1: up to min, min·2
    assert max(delays[6:]) > 2.0  # later ones reach towards the cap


# -- the client on a real socket ---------------------------------------------------------

Handler = Callable[[dict[str, str], asyncio.StreamWriter], Awaitable[None]]


class FakeAmi:
    """Plays Asterisk's side of AMI on 127.0.0.1: banner, login, scripted actions."""

    def __init__(self, secret: str = "s") -> None:
        self.secret = secret
        self.answer_pings = True
        self.after_login: bytes = b""
        self.handlers: dict[str, Handler] = {}
        self.actions: list[dict[str, str]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.connected_at: list[float] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeAmi:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()

    def drop(self) -> None:
        """Close the newest connection (as a restarting Asterisk does)."""
        self.writers[-1].close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected_at.append(time.monotonic())
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        buf = b""
        try:
            while chunk := await reader.read(4096):
                messages, buf = split_messages(buf + chunk)
                for m in messages:
                    action = dict(
                        line.split(": ", 1) for line in m.decode().split("\r\n") if ": " in line
                    )
                    self.actions.append(action)
                    await self._answer(action, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _answer(self, action: dict[str, str], writer: asyncio.StreamWriter) -> None:
        aid = action.get("ActionID", "")
        name = action.get("Action", "")
        if name == "Login":
            if action.get("Secret") != self.secret:
                writer.write(
                    f"Response: Error\r\nActionID: {aid}\r\n"
                    "Message: Authentication failed\r\n\r\n".encode()
                )
                await writer.drain()
                writer.close()
                return
            writer.write(
                f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"
                "Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n".encode()
                + self.after_login
            )
        elif name == "Ping":
            if self.answer_pings:
                writer.write(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode())
        elif name in self.handlers:
            await self.handlers[name](action, writer)
        await writer.drain()


async def wait_until(cond: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Owner:
    """What the CTI does with the client: collects events, counts logins."""

    def __init__(self) -> None:
        self.events: list[AmiEvent] = []
        self.logins = 0

    def on_event(self, ev: AmiEvent) -> None:
        self.events.append(ev)

    async def on_login(self) -> None:
        self.logins += 1


def client_for(fake: FakeAmi, owner: Owner, secret: str = "s", **kw: float) -> AmiClient:
    return AmiClient(
        "127.0.0.1",
        fake.port,
        "hotline",
        secret,
        on_event=owner.on_event,
        on_login=owner.on_login,
        backoff_min=kw.pop("backoff_min", 0.05),
        backoff_max=kw.pop("backoff_max", 0.1),
        ping_interval=kw.pop("ping_interval", 5.0),
        connect_timeout=1.0,
        max_line=1024,
        max_message=16 * 1024,
    )


async def stop(client: AmiClient) -> None:
    client.close()
    await client.wait_closed()


async def test_login_action_by_action_id_and_event_dispatch() -> None:
    async def queue_status(action: dict[str, str], w: asyncio.StreamWriter) -> None:
        aid = action["ActionID"]
        # The reply in pieces, with an unrelated event in the middle of it.
        w.write(
            f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
            f"Message: Queue status will follow\r\n\r\nEvent: QueueMember\r\nActionID: {aid}\r\n"
            "Queue: billing\r\nName: agent1001\r\n\r\nEvent: Newch".encode()
        )
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(
            "annel\r\nChannel: PJSIP/a-1\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n"
            f"Event: QueueStatusComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n\r\n".encode()
        )

    pending: list[tuple[str, asyncio.StreamWriter]] = []

    async def slow(action: dict[str, str], w: asyncio.StreamWriter) -> None:
        pending.append((action["ActionID"], w))
        if len(pending) == 2:  # answer the second first: replies go by ActionID
            for aid, writer in reversed(pending):
                writer.write(
                    f"Response: Success\r\nActionID: {aid}\r\nMessage: {aid}\r\n\r\n".encode()
                )

    owner = Owner()
    async with FakeAmi() as fake:
        fake.handlers = {"QueueStatus": queue_status, "Slow": slow}
        client = client_for(fake, owner)
        await client.start()
        try:
            await wait_until(lambda: client.logged_in and client.fully_booted and owner.logins)
            assert fake.actions[0]["Username"] == "hotline"
            assert client.version == "9.0.0"
            reply = await client.action({"Action": "QueueStatus"})
            assert [m.get("Event", m.get("Response")) for m in reply] == [
                "Success",
                "QueueMember",
                "QueueStatusComplete",
            ]
            assert [e["Event"] for e in owner.events] == ["FullyBooted", "Newchannel"]
            assert owner.events[1]["ChanVariable"] == ["A=1", "B=2"]
            one, two = await asyncio.gather(
                client.action({"Action": "Slow"}), client.action({"Action": "Slow"})
            )
            assert one[0]["Message"] == one[0]["ActionID"] != two[0]["Message"]
            assert two[0]["Message"] == two[0]["ActionID"]
            health = client.health()
            assert health["connected"] and health["logins"] == 1 and health["events"] == 2
            assert health["error"] is None
        finally:
            await stop(client)
        assert not client.logged_in
        assert fake.actions[-1]["Action"] == "Logoff"


async def test_disconnect_reconnects_with_backoff_and_logs_in_again() -> None:
    owner = Owner()
    async with FakeAmi() as fake:
        fake.handlers = {"Never": lambda a, w: asyncio.sleep(0)}  # never answered
        client = client_for(fake, owner, backoff_min=0.05, backoff_max=0.1)
        await client.start()
        try:
            await wait_until(lambda: owner.logins == 1)
            waiting = asyncio.create_task(client.action({"Action": "Never"}, timeout=5))
            await wait_until(lambda: fake.actions[-1]["Action"] == "Never")
            dropped = time.monotonic()
            fake.drop()
            # The waiting action fails at once (not after its timeout), as a
            # TimeoutError too: what callers already handle.
            with pytest.raises(AmiDisconnected):
                await waiting
            assert isinstance(waiting.exception(), TimeoutError)
            await wait_until(lambda: not client.logged_in)
            with pytest.raises(AmiDisconnected):
                await client.action({"Action": "Ping"})
            await wait_until(lambda: owner.logins == 2)
            assert 0.05 <= fake.connected_at[1] - dropped < 0.5
            assert client.logged_in and client.logins == 2 and len(fake.writers) == 2
            assert (await client.action({"Action": "Ping"}))[0]["Ping"] == "Pong"
        finally:
            await stop(client)


async def test_refused_login_is_reported_in_health_and_retried() -> None:
    owner = Owner()
    async with FakeAmi(secret="right") as fake:
        client = client_for(fake, owner, secret="wrong")
        await client.start()
        try:
            await wait_until(lambda: len(fake.writers) >= 2)  # retried, with backoff
            health = client.health()
            assert not health["connected"] and health["logins"] == 0
            assert "Authentication failed" in str(health["error"])
            assert owner.logins == 0
            with pytest.raises(AmiDisconnected):
                await client.action({"Action": "Ping"})
        finally:
            await stop(client)


async def test_an_over_long_line_costs_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = Owner()
    async with FakeAmi() as fake:
        # After the first login: an event whose line never ends.
        fake.after_login = b"Event: Junk\r\nData: " + b"x" * 4096
        client = client_for(fake, owner)
        with caplog.at_level(logging.ERROR, logger="hotline.ami"):
            await client.start()
            try:
                await wait_until(lambda: owner.logins >= 1 and len(fake.writers) >= 2)
                fake.after_login = b""
                await wait_until(lambda: client.logged_in and owner.logins >= 2)
                assert (await client.action({"Action": "Ping"}))[0]["Ping"] == "Pong"
                assert all(e["Event"] != "Junk" for e in owner.events)
            finally:
                await stop(client)
        limits = [r for r in caplog.records if "size limits" in r.getMessage()]
        # One line in the log per dropped connection.
        assert 1 <= len(limits) <= len(fake.writers) - 1


async def test_unanswered_ping_drops_a_dead_connection() -> None:
    owner = Owner()
    async with FakeAmi() as fake:
        fake.answer_pings = False
        client = client_for(fake, owner, ping_interval=0.05)
        await client.start()
        try:
            await wait_until(lambda: len(fake.writers) >= 2)
            assert sum(1 for a in fake.actions if a["Action"] == "Ping") >= 1
            fake.answer_pings = True
            await wait_until(lambda: client.logged_in)
            logins = client.logins
            await asyncio.sleep(0.2)  # a few pings, answered: the session stays
            assert client.logged_in and client.logins == logins
        finally:
            await stop(client)


async def test_action_timeout_and_shutdown_event() -> None:
    owner = Owner()

    async def shutdown(_action: dict[str, str], w: asyncio.StreamWriter) -> None:
        w.write(b"Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n")

    async with FakeAmi() as fake:
        fake.handlers = {"Never": lambda a, w: asyncio.sleep(0), "Bye": shutdown}
        client = client_for(fake, owner)
        await client.start()
        try:
            await wait_until(lambda: client.logged_in)
            with pytest.raises(TimeoutError):
                await client.action({"Action": "Never"}, timeout=0.05)
            assert not client._pending
            with pytest.raises(AmiDisconnected):  # the session ends with the Shutdown
                await client.action({"Action": "Bye"}, timeout=2)
            assert owner.events[-1]["Event"] == "Shutdown"
            await wait_until(lambda: client.logins == 2)
        finally:
            await stop(client)
