"""What the live tier's fixtures hand to tests (tests/live/conftest.py builds them)."""

from __future__ import annotations

from dataclasses import dataclass

from cti.ami import AmiClient
from cti.bus import AmiEventBus
from cti.mqtt import MqttPublisher
from cti.setup import Cti
from cti.state import CallCenter
from hotline.recordings.store import RecordingStore


@dataclass(frozen=True)
class LiveCti:
    """The CTI feature on the real AMI, and the private recording store its calls go to."""

    cti: Cti
    recordings: RecordingStore

    @property
    def ami(self) -> AmiClient:
        return self.cti.ami

    @property
    def state(self) -> CallCenter:
        return self.cti.state

    @property
    def publisher(self) -> MqttPublisher:
        return self.cti.publisher

    @property
    def bus(self) -> AmiEventBus:
        return self.cti.bus

    def count_deflection(self, queue: str, what: str) -> None:
        self.cti.service.count_deflection(queue, what)

    async def drained(self) -> None:
        await self.cti.service.drained()
