"""An MQTT subscriber that keeps what it receives: for the tests and the benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from harness.wait import poll_until

# A decoded MQTT payload: a JSON object, whatever its topic.
Json = dict[str, Any]


class Inbox:
    """Everything an MQTT subscriber received: (topic, payload, monotonic time)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Json, float]] = []

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
    import json
    import time

    import aiomqtt

    async with aiomqtt.Client(host, port, username=username, password=password) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            payload = json.loads(message.payload)
            inbox.messages.append((message.topic.value, payload, time.monotonic()))
