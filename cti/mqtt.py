"""MQTT delivery to agent desktops (aiomqtt): topics, buffering, reconnects.

Wire contract (versioned; JSON Schemas in ``cti/schemas/``, docs/mqtt.md):

- ``{prefix}/agents/{agent}/screenpop``  QoS 1, not retained
- ``{prefix}/agents/{agent}/state``      QoS 1, retained
- ``{prefix}/queues/{queue}/stats``      QoS 1, retained
- ``{prefix}/calls/{call_id}/events``    QoS 1, not retained

While the broker is away, messages wait in a bounded buffer (oldest dropped
first when full); a screen pop whose call has ended by the time it could be
sent is dropped as stale.  Retained topics are republished on every
reconnect, so a desktop that connects later still sees the present.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiomqtt

log = logging.getLogger("hotline.mqtt")

SCHEMA_VERSION = 1
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def topic_segment(value: str) -> str:
    """A topic level from data (agent, queue, call id): no '/', '+' or '#' smuggled in."""
    if not _SEGMENT.match(value):
        raise ValueError(f"not usable in an MQTT topic: {value!r}")
    return value


@dataclass
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    call_id: str | None = None  # set for screen pops: dropped if the call has ended


class MqttPublisher:
    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "hotline-server",
        prefix: str = "hotline",
        buffer_size: int = 1000,
        is_live: Callable[[str], bool] = lambda _call_id: True,
        backoff_min: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self._username, self._password = username, password
        self.client_id = client_id
        self.prefix = prefix.rstrip("/")
        self._buffer: deque[Outgoing] = deque(maxlen=buffer_size)
        self._retained: dict[str, Outgoing] = {}
        self._wake = asyncio.Event()
        # Whether a call is still going on: a screen pop buffered while the broker
        # was away is dropped once its call has ended (CtiService sets it).
        self.is_live = is_live
        self._backoff = (backoff_min, backoff_max)
        self.connected = False
        self.published = 0
        self.dropped_stale = 0
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- what the CTI calls -----------------------------------------------------------
    def topic(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    def publish(
        self,
        topic: str,
        payload: Mapping[str, object],
        *,
        retain: bool = False,
        call_id: str | None = None,
    ) -> None:
        body = json.dumps(
            {"schema_version": SCHEMA_VERSION, **payload}, ensure_ascii=False, default=str
        ).encode()
        msg = Outgoing(topic, body, 1, retain, call_id)
        if retain:
            self._retained[topic] = msg
        if len(self._buffer) == self._buffer.maxlen:
            log.warning("MQTT buffer full: oldest message dropped")
        self._buffer.append(msg)
        self._wake.set()

    # -- the connection loop -----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-publisher")

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop publishing.  Bounded: a cancelled publish inside aiomqtt was seen
        to wait for a PUBACK indefinitely, and stopping must not hang a shutdown."""
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                log.warning("MQTT publisher did not stop within %.0f s; left behind", timeout)
            elif not self._task.cancelled() and self._task.exception() is not None:
                log.warning("MQTT publisher ended with %r", self._task.exception())

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self._username,
                    password=self._password,
                    identifier=self.client_id,
                    keepalive=30,
                    timeout=5,
                ) as client:
                    self.connected = True
                    self.connects += 1
                    attempt = 0
                    log.info("MQTT connected", extra={"broker": f"{self.host}:{self.port}"})
                    if self.connects > 1:
                        # Retained state may have changed while we were away, and a
                        # restarted broker without persistence lost it: send it again.
                        queued = {m.topic for m in self._buffer if m.retain}
                        for topic, msg in self._retained.items():
                            if topic not in queued:
                                self._buffer.appendleft(msg)
                    await self._drain(client)
            except aiomqtt.MqttError as e:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Stopping: aiomqtt's disconnect on the way out timed out and
                    # replaced our CancelledError; do not reconnect.
                    raise asyncio.CancelledError from e
                if self.connected:
                    log.warning("MQTT connection lost", extra={"error": str(e)})
                self.connected = False
                low, high = self._backoff
                delay = random.uniform(low, min(high, low * 2**attempt))
                attempt += 1
                await asyncio.sleep(delay)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            while self._buffer:
                msg = self._buffer[0]
                if msg.call_id is not None and not self.is_live(msg.call_id):
                    self._buffer.popleft()
                    self.dropped_stale += 1
                    log.info("stale screen pop dropped", extra={"call": msg.call_id})
                    continue
                await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                self._buffer.popleft()  # only once the broker has it
                self.published += 1
            self._wake.clear()
            await self._wake.wait()
