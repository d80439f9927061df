"""An MQTT subscriber that keeps what it receives, and the project broker's logins.

For the tests, the benchmarks and the demo.  The project broker (scripts/broker.sh,
hotline.toml's [broker]) wants a login from everybody: :func:`project_broker_env`
points a server's [mqtt] at it as ``hotline-server``, :func:`server_login` gives a
watcher the same login (it reads everything under the prefix).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any, TypedDict

from harness.wait import poll_until
from hotline.config import Config

REPO = Path(__file__).resolve().parent.parent
BROKER_SH = REPO / "scripts" / "broker.sh"

# A decoded MQTT payload: a JSON object, whatever its topic.
Json = dict[str, Any]


class Inbox:
    """Everything an MQTT subscriber received: (topic, payload, monotonic time)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Json, float]] = []
        self.connects = 0  # how many times the subscriber (re)subscribed

    def on(self, topic_suffix: str, **match: object) -> list[tuple[Json, float]]:
        return [
            (p, t)
            for top, p, t in self.messages
            if top.endswith(topic_suffix) and all(p.get(k) == v for k, v in match.items())
        ]

    def messages_for(self, topic_suffix: str) -> list[tuple[Json, float]]:
        return self.on(topic_suffix)

    async def wait(
        self, topic_suffix: str, timeout: float = 15.0, **match: object
    ) -> tuple[Json, float] | None:
        """The first matching message, once there is one; None if none came in time."""

        async def found() -> tuple[Json, float] | None:
            got = self.on(topic_suffix, **match)
            return got[0] if got else None

        return await poll_until(found, timeout=timeout, interval=0.05)

    async def expect(
        self, topic_suffix: str, timeout: float = 15.0, **match: object
    ) -> tuple[Json, float]:
        """Like wait, but a message that does not come in time fails (AssertionError)."""
        got = await self.wait(topic_suffix, timeout, **match)
        assert got is not None, f"no message on *{topic_suffix} matching {match} in {timeout} s"
        return got


async def subscribe(
    host: str,
    port: int,
    topic: str,
    inbox: Inbox,
    ready: asyncio.Event,
    *,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """Keep what arrives on ``topic`` in ``inbox``; ``ready`` once subscribed."""
    import json
    import time

    import aiomqtt

    async with aiomqtt.Client(host, port, username=username, password=password) as client:
        await client.subscribe(topic, qos=1)
        inbox.connects += 1
        ready.set()
        async for message in client.messages:
            payload = json.loads(message.payload)
            inbox.messages.append((message.topic.value, payload, time.monotonic()))


async def subscribe_forever(
    host: str,
    port: int,
    topic: str,
    inbox: Inbox,
    ready: asyncio.Event,
    *,
    username: str | None = None,
    password: str | None = None,
) -> None:
    """:func:`subscribe`, connecting and subscribing again every 0.2 s after a lost
    connection (a broker restarted); what was sent meanwhile is lost."""
    import aiomqtt

    while True:
        try:
            await subscribe(host, port, topic, inbox, ready, username=username, password=password)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


# -- the project broker ------------------------------------------------------------------


class Login(TypedDict, total=False):
    """A broker login as aiomqtt.Client takes it (``**login``); empty: anonymous."""

    username: str
    password: str


class BrokerUnavailable(RuntimeError):
    """scripts/broker.sh could not start the project broker (its output in the message)."""


def broker_up(timeout: float = 900) -> None:
    """``scripts/broker.sh up`` (builds the root and installs Mosquitto the first time)."""
    try:
        run = subprocess.run(
            [str(BROKER_SH), "up"], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BrokerUnavailable(f"scripts/broker.sh up: {e}") from None
    if run.returncode != 0:
        raise BrokerUnavailable(run.stderr.strip()[-2000:] or f"exit {run.returncode}")


def broker_running() -> bool:
    return subprocess.run([str(BROKER_SH), "status"], capture_output=True).returncode == 0


def broker_down() -> None:
    subprocess.run([str(BROKER_SH), "down"], capture_output=True, timeout=60)


def project_broker_env(cfg: Config) -> dict[str, str]:
    """``HOTLINE_MQTT__*`` that make a server built from ``cfg`` publish to [broker]
    as its server user."""
    b = cfg.broker
    return {
        "HOTLINE_MQTT__HOST": b.host,
        "HOTLINE_MQTT__PORT": str(b.port),
        "HOTLINE_MQTT__USERNAME": b.server_username,
        "HOTLINE_MQTT__PASSWORD_FILE": str(cfg.path(b.server_password_file).resolve()),
    }


def server_login(cfg: Config) -> Login:
    """The server user's login to [broker], as aiomqtt takes it (username=, password=)."""
    password = cfg.broker_server_password()
    if not password:
        raise BrokerUnavailable("[broker] server_password_file is empty")
    return {"username": cfg.broker.server_username, "password": password}


def agent_login(cfg: Config, agent: str) -> Login:
    """An agent's static login to [broker] (from credentials.json beside the server's)."""
    import json

    creds = cfg.path(cfg.broker.server_password_file).parent / "credentials.json"
    return {"username": agent, "password": str(json.loads(creds.read_text())[agent])}
