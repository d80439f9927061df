"""The MQTT publisher without a broker: its bounded buffer and its topic segments."""

from __future__ import annotations

import json
import socket

import pytest

from cti.mqtt import MqttPublisher, topic_segment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_buffer_is_bounded() -> None:
    pub = MqttPublisher("127.0.0.1", free_port(), buffer_size=3)  # nothing listens there
    for i in range(10):
        pub.publish(f"hotline/calls/c{i}/events", {"n": i})
    assert [json.loads(m.payload)["n"] for m in pub._buffer] == [7, 8, 9]


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65])
def test_topic_segments_cannot_be_smuggled(bad: str) -> None:
    with pytest.raises(ValueError):
        topic_segment(bad)
