"""MQTT delivery against real Mosquitto brokers started by the test: ACLs, passwords,
broker restarts, the bounded buffer and stale screen pops."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import aiomqtt
import pytest

from cti.broker import write_broker_files
from cti.mqtt import MqttPublisher
from harness.mqtt import Inbox, subscribe
from harness.wait import wait_for

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port = conf, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "")
            import time

            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, str]]]:
    port = free_port()
    users = write_broker_files(tmp_path, ["1001", "1002"], port=port)
    # As root, mosquitto drops to its own user; let it read the files it needs.
    (tmp_path / "mosquitto.conf").write_text(
        (tmp_path / "mosquitto.conf").read_text() + "user root\n"
    )
    broker = Broker(tmp_path / "mosquitto.conf", port)
    broker.start()
    yield broker, users
    broker.stop()


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    conf = tmp_path / "plain.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
    )
    broker = Broker(conf, port)
    broker.start()
    yield broker
    broker.stop()


async def listen(port: int, topic: str, **auth: str) -> tuple[Inbox, asyncio.Task[None]]:
    inbox, ready = Inbox(), asyncio.Event()
    task = asyncio.create_task(subscribe("127.0.0.1", port, topic, inbox, ready, **auth))
    await asyncio.wait_for(ready.wait(), 5)
    return inbox, task


async def test_agent_reads_only_own_pops_and_cannot_publish(
    secured: tuple[Broker, dict[str, str]],
) -> None:
    broker, users = secured
    server = {"username": "hotline-server", "password": users["hotline-server"]}
    agent = {"username": "1002", "password": users["1002"]}
    own, t1 = await listen(broker.port, "hotline/agents/#", **agent)
    other, t2 = await listen(broker.port, "hotline/agents/1001/screenpop", **agent)
    stats, t3 = await listen(broker.port, "hotline/queues/+/stats", **agent)
    # What agent 1001's desktop would get, seen by the server's user (reads everything).
    victim, t4 = await listen(broker.port, "hotline/agents/1001/screenpop", **server)
    pub = MqttPublisher(
        "127.0.0.1", broker.port, username=server["username"], password=server["password"]
    )
    pub.start()
    try:
        pub.publish("hotline/agents/1001/screenpop", {"type": "screenpop", "call_id": "a"})
        pub.publish("hotline/agents/1002/screenpop", {"type": "screenpop", "call_id": "b"})
        pub.publish(
            "hotline/queues/billing/stats", {"type": "queue_stats", "waiting": 3}, retain=True
        )
        await own.expect("/agents/1002/screenpop", call_id="b", timeout=5)
        await stats.expect("/queues/billing/stats", timeout=5)
        await victim.expect("/agents/1001/screenpop", call_id="a", timeout=5)
        # An agent's own publish to someone else's pop topic is refused by the ACL.
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, username=agent["username"], password=agent["password"]
        ) as c:
            await c.publish(
                "hotline/agents/1001/screenpop", json.dumps({"call_id": "forged"}), qos=1
            )
        # The broker acknowledged the forgery before the server's next pop: had it
        # been let through, 1001 would have it before that pop.
        pub.publish("hotline/agents/1001/screenpop", {"type": "screenpop", "call_id": "after"})
        await victim.expect("/agents/1001/screenpop", call_id="after", timeout=5)
        assert [p["call_id"] for p, _ in victim.messages_for("/screenpop")] == ["a", "after"]
        assert [p["call_id"] for p, _ in own.messages_for("/screenpop")] == ["b"]
        assert other.messages == []
    finally:
        await pub.stop()
        for t in (t1, t2, t3, t4):
            t.cancel()


async def test_wrong_password_is_refused(
    secured: tuple[Broker, dict[str, str]],
) -> None:
    broker, _users = secured
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker.port, username="1001", password="wrong"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", broker.port):  # anonymous
            pass


async def test_pops_wait_for_a_restarted_broker_and_stale_ones_are_dropped(plain: Broker) -> None:
    live = {"call-1", "call-2"}
    pub = MqttPublisher(
        "127.0.0.1", plain.port, is_live=lambda c: c in live, backoff_min=0.1, backoff_max=0.5
    )
    pub.start()
    try:
        await wait_for(lambda: _v(pub.connected), timeout=5, what="the publisher connected")
        pub.publish("hotline/queues/billing/stats", {"waiting": 2}, retain=True)
        await wait_for(
            lambda: _v(pub.published == 1), timeout=5, what="the retained stats published"
        )
        plain.stop()
        await asyncio.sleep(0.3)
        pub.publish("hotline/agents/1001/screenpop", {"call_id": "call-1"}, call_id="call-1")
        pub.publish("hotline/agents/1001/screenpop", {"call_id": "call-2"}, call_id="call-2")
        live.discard("call-2")  # this caller hung up while the broker was away
        plain.start()
        inbox, task = await listen(plain.port, "hotline/#")
        _pop, _ = await inbox.expect("/screenpop", call_id="call-1", timeout=10)
        # Retained stats were republished for desktops connecting to the new broker.
        stats, _ = await inbox.expect("/queues/billing/stats", timeout=5)
        assert stats["waiting"] == 2 and stats["schema_version"] == 1
        await asyncio.sleep(0.3)
        assert [p["call_id"] for p, _ in inbox.messages_for("/screenpop")] == ["call-1"]
        assert pub.dropped_stale == 1
        task.cancel()
    finally:
        await pub.stop()


async def _v(x: T) -> T:
    return x
