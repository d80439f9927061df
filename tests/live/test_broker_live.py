"""The project's Mosquitto (scripts/broker.sh, broker-config/): its security, as clients see it.

Runs against the broker the live tier starts (``project_broker``): TCP for the
server and the agents' static logins, WebSockets for browser sessions issued by
the dynamic security plugin (cti/dynsec.py).  Every refusal is paired with the
same thing succeeding for whoever is allowed, so a test cannot pass because a
port is dead or a message was never sent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError

from cti.dynsec import DynsecClient, SessionCredentials
from cti.mqtt import MqttPublisher
from harness.mqtt import (
    Inbox,
    Login,
    agent_login,
    broker_down,
    broker_up,
    server_login,
    subscribe,
)
from harness.wait import wait_for
from hotline.config import Config

pytestmark = pytest.mark.asterisk

SUBACK_FAILURE = 0x80  # MQTT 3.1.1's refused subscription (5.0 says 0x87, not authorised)


def ws_options(cfg: Config, origin: str | None = None) -> dict[str, Any]:
    """aiomqtt over the WebSockets listener, from a page of ``origin`` (default: allowed).

    aiomqtt passes websocket_headers only with a websocket_path (aiomqtt 2.5).
    """
    return {
        "transport": "websockets",
        "websocket_path": "/mqtt",
        "websocket_headers": {"Origin": origin or cfg.broker.websocket_origins[0]},
    }


@pytest.fixture
async def server_pub(project_broker: Config) -> AsyncIterator[MqttPublisher]:
    """The server's own publisher class, logged in as hotline-server, prefix ``hotline``."""
    b = project_broker.broker
    login = server_login(project_broker)
    pub = MqttPublisher(
        b.host,
        b.port,
        username=login["username"],
        password=login["password"],
        client_id=f"test-broker-{uuid.uuid4().hex[:8]}",
        backoff_max=0.5,
    )
    pub.start()
    await wait_for(lambda: pub.connected, timeout=10, what="the server publisher connected")
    yield pub
    await pub.stop()


@pytest.fixture
async def everything(project_broker: Config) -> AsyncIterator[Inbox]:
    """What the server's login sees under ``hotline/`` and ``$CONTROL`` (it reads all)."""
    b = project_broker.broker
    inbox, ready = Inbox(), asyncio.Event()
    task = asyncio.create_task(
        subscribe(b.host, b.port, "hotline/#", inbox, ready, **server_login(project_broker))
    )
    await asyncio.wait_for(ready.wait(), 10)
    yield inbox
    task.cancel()


async def connect_refused(
    cfg: Config, login: Login, port: int | None = None, **options: Any
) -> BaseException | None:
    """The error connecting with ``login`` raises; None when the broker let it in."""
    try:
        async with aiomqtt.Client(cfg.broker.host, port or cfg.broker.port, **login, **options):
            return None
    except aiomqtt.MqttError as e:
        return e


async def collect(client: aiomqtt.Client, until: str, seconds: float = 10) -> list[str]:
    """Topics received until one ending in ``until`` arrives (or the time runs out)."""
    topics: list[str] = []
    try:
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                topics.append(message.topic.value)
                if until in bytes(message.payload).decode():
                    break
    except TimeoutError:
        pass
    return topics


async def suback(client: aiomqtt.Client, topic: str) -> int:
    """The broker's answer to subscribing to ``topic`` at QoS 1: 1 granted, 0x80 refused."""
    (rc,) = await client.subscribe(topic, qos=1)
    return rc if isinstance(rc, int) else rc.value


def pop(marker: str) -> dict[str, str]:
    return {"type": "screenpop", "call_id": f"test-{marker}", "note": marker}


# -- (a) nobody without a login --------------------------------------------------------------


async def test_anonymous_and_wrong_logins_are_refused_on_tcp_and_websockets(
    project_broker: Config,
) -> None:
    cfg = project_broker
    good = agent_login(cfg, "1001")
    wrong = Login(username="1001", password="not-" + good["password"])
    listeners: list[tuple[int, dict[str, Any]]] = [
        (cfg.broker.port, {}),
        (cfg.broker.websocket_port, ws_options(cfg)),
    ]
    for port, options in listeners:
        anonymous = await connect_refused(cfg, Login(), port, **options)
        assert isinstance(anonymous, MqttConnectError), (port, anonymous)
        assert isinstance(await connect_refused(cfg, wrong, port, **options), MqttConnectError)
        # The same listener lets the right login in: the refusals are the broker's.
        assert await connect_refused(cfg, good, port, **options) is None, port


async def test_websockets_refuse_a_page_from_another_origin(project_broker: Config) -> None:
    cfg = project_broker
    login = agent_login(cfg, "1001")
    port = cfg.broker.websocket_port
    foreign = await connect_refused(cfg, login, port, **ws_options(cfg, "http://evil.example"))
    assert foreign is not None and "handshake" in str(foreign).lower()
    assert await connect_refused(cfg, login, port, **ws_options(cfg)) is None


# -- (b) an agent's static login -------------------------------------------------------------


async def test_an_agent_reads_their_own_pops_not_another_agents_and_publishes_nothing(
    project_broker: Config, server_pub: MqttPublisher, everything: Inbox
) -> None:
    cfg = project_broker
    b = cfg.broker
    mark = uuid.uuid4().hex[:8]
    async with (
        aiomqtt.Client(b.host, b.port, **agent_login(cfg, "1001")) as agent,
        aiomqtt.Client(b.host, b.port, **agent_login(cfg, "1002")) as other,
    ):
        assert await suback(agent, "hotline/agents/1001/screenpop") == 1
        theirs = await suback(agent, "hotline/agents/1002/screenpop")
        await other.subscribe("hotline/agents/1002/screenpop", qos=1)
        # The ACL file filters delivery, not subscriptions: Mosquitto 2.1.2 grants
        # this SUBACK (seen: 1) where dynamic security would refuse it (0x80) ...
        assert theirs in (1, SUBACK_FAILURE)
        # ... and nothing of 1002's reaches 1001.  1002's pop is sent first: had the
        # broker let it through, it would arrive before 1001's (one publisher, in order).
        server_pub.publish("hotline/agents/1002/screenpop", pop(f"{mark}-for-1002"))
        server_pub.publish("hotline/agents/1001/screenpop", pop(f"{mark}-for-1001"))
        got = await collect(agent, until=f"{mark}-for-1001")
        assert set(got) == {"hotline/agents/1001/screenpop"}, got
        # It was sent: 1002 gets it.
        assert set(await collect(other, until=f"{mark}-for-1002")) == {
            "hotline/agents/1002/screenpop"
        }

        # An agent publishes nothing: not a pop for someone else, not one for
        # themself, not a dynamic security command making itself a login.
        await agent.publish("hotline/agents/1002/screenpop", json.dumps(pop(f"{mark}-forged")))
        await agent.publish("hotline/agents/1001/state", json.dumps({"state": "forged"}))
        await agent.publish(
            "$CONTROL/dynamic-security/v1",
            json.dumps(
                {
                    "commands": [
                        {
                            "command": "createClient",
                            "username": f"web-forged{mark}",
                            "password": "forged-password-1",
                            "roles": [{"rolename": "agent-1002"}],
                        }
                    ]
                }
            ),
        )
    server_pub.publish("hotline/agents/1002/screenpop", pop(f"{mark}-after"))
    await everything.expect("/agents/1002/screenpop", call_id=f"test-{mark}-after", timeout=10)
    seen = [p.get("note") or p.get("state") for _t, p, _at in everything.messages]
    assert f"{mark}-forged" not in seen and "forged" not in seen
    assert f"web-forged{mark}" not in await DynsecClient.from_config(cfg).list_clients()


# -- (c) a browser session over WebSockets ---------------------------------------------------


async def test_a_browser_session_reads_its_agents_topics_only_and_dies_with_revoke(
    project_broker: Config, server_pub: MqttPublisher, everything: Inbox
) -> None:
    cfg = project_broker
    b = cfg.broker
    ds = DynsecClient.from_config(cfg)
    creds = await ds.issue("1001", ["billing"])
    assert creds.username.startswith("web-") and creds.client_id_prefix.startswith(creds.username)
    assert creds.password not in repr(creds)
    mark = uuid.uuid4().hex[:8]
    session = Login(username=creds.username, password=creds.password)
    ws = {**ws_options(cfg), "identifier": f"{creds.client_id_prefix}tab1"}
    try:
        async with aiomqtt.Client(b.host, b.websocket_port, **session, **ws) as desk:
            granted = {
                topic: await suback(desk, topic)
                for topic in (
                    "hotline/agents/1001/#",
                    "hotline/queues/billing/stats",
                    "hotline/agents/1002/#",
                    "hotline/queues/support/stats",
                    "hotline/#",
                    "#",
                    "$CONTROL/#",
                    "$SYS/#",
                )
            }
            assert granted == {
                "hotline/agents/1001/#": 1,
                "hotline/queues/billing/stats": 1,
                "hotline/agents/1002/#": SUBACK_FAILURE,
                "hotline/queues/support/stats": SUBACK_FAILURE,
                "hotline/#": SUBACK_FAILURE,
                "#": SUBACK_FAILURE,
                "$CONTROL/#": SUBACK_FAILURE,
                "$SYS/#": SUBACK_FAILURE,
            }
            server_pub.publish("hotline/agents/1002/screenpop", pop(f"{mark}-for-1002"))
            server_pub.publish("hotline/queues/support/stats", {"note": f"{mark}-support"})
            server_pub.publish("hotline/agents/1001/screenpop", pop(f"{mark}-for-1001"))
            got = await collect(desk, until=f"{mark}-for-1001")
            # (and any retained state of 1001 or billing a running demo left)
            assert "hotline/agents/1001/screenpop" in got
            assert all(
                t.startswith("hotline/agents/1001/") or t == "hotline/queues/billing/stats"
                for t in got
            ), got

            # Read-only, even on its own topics, and no way to make itself a login.
            await desk.publish("hotline/agents/1001/screenpop", json.dumps(pop(f"{mark}-own")))
            await desk.publish("hotline/agents/1002/screenpop", json.dumps(pop(f"{mark}-other")))
            await desk.publish(
                "$CONTROL/dynamic-security/v1",
                json.dumps(
                    {
                        "commands": [
                            {
                                "command": "addClientRole",
                                "username": creds.username,
                                "rolename": "agent-1002",
                            }
                        ]
                    }
                ),
            )
            server_pub.publish("hotline/agents/1001/screenpop", pop(f"{mark}-marker"))
            await everything.expect(
                "/agents/1001/screenpop", call_id=f"test-{mark}-marker", timeout=10
            )
            notes = {p.get("note") for _t, p, _at in everything.messages}
            assert not notes & {f"{mark}-own", f"{mark}-other"}
            # The role it tried to give itself is not its.
            assert await suback(desk, "hotline/agents/1002/#") == SUBACK_FAILURE

            # Revoked (the browser session ended): the broker drops the connection.
            await ds.revoke(creds.username)
            with pytest.raises(aiomqtt.MqttError):
                async with asyncio.timeout(5):
                    async for _message in desk.messages:
                        pass
    finally:
        await ds.revoke(creds.username)  # idempotent: already gone
    again = await connect_refused(cfg, session, b.websocket_port, **ws)
    assert isinstance(again, MqttConnectError)
    assert creds.username not in await ds.list_clients()


# -- (d) a broker restart --------------------------------------------------------------------


async def test_after_a_broker_restart_the_server_and_a_session_reconnect(
    project_broker: Config, server_pub: MqttPublisher
) -> None:
    """The broker keeps no retained state across a restart (persistence false) but the
    sessions' logins (dynamic-security.json); the server publishes again what it knows."""
    cfg = project_broker
    b = cfg.broker
    ds = DynsecClient.from_config(cfg)
    creds: SessionCredentials = await ds.issue("1001", ["billing"])
    session = Login(username=creds.username, password=creds.password)
    ws = {**ws_options(cfg), "identifier": f"{creds.client_id_prefix}r"}
    mark = uuid.uuid4().hex[:8]
    own = f"hotline/test-{mark}"  # retained topics of this test alone
    try:
        server_pub.publish(f"{own}/agents/1001/state", {"state": "before"}, retain=True)
        await wait_for(lambda: not server_pub.buffered, timeout=10, what="the state sent")
        connects = server_pub.connects
        await asyncio.to_thread(broker_down)
        # Published while the broker is down: kept, and sent once it is back.
        server_pub.publish(f"{own}/queues/billing/stats", {"note": "while-down"}, retain=True)
        await asyncio.to_thread(broker_up)
        await wait_for(
            lambda: server_pub.connects > connects and not server_pub.buffered,
            timeout=15,
            what="the server publisher reconnected and sent what it kept",
        )
        watcher, ready = Inbox(), asyncio.Event()
        task = asyncio.create_task(
            subscribe(b.host, b.port, f"{own}/#", watcher, ready, **server_login(cfg))
        )
        try:
            await watcher.expect("/agents/1001/state", state="before", timeout=10)
            await watcher.expect("/queues/billing/stats", note="while-down", timeout=10)
        finally:
            task.cancel()
        # The session's login outlived the restart: the desktop gets back in.
        async with aiomqtt.Client(b.host, b.websocket_port, **session, **ws) as desk:
            await desk.subscribe("hotline/agents/1001/#", qos=1)
            server_pub.publish("hotline/agents/1001/screenpop", pop(f"{mark}-after"))
            assert "hotline/agents/1001/screenpop" in await collect(desk, until=f"{mark}-after")
    finally:
        await ds.revoke(creds.username)
        async with aiomqtt.Client(b.host, b.port, **server_login(cfg)) as server:
            for topic in (f"{own}/agents/1001/state", f"{own}/queues/billing/stats"):
                await server.publish(topic, b"", qos=1, retain=True)  # retained: cleared
