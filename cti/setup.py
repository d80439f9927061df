"""The agent side as one feature: AMI client, call model, MQTT publisher, callback dialling.

:func:`setup` builds the parts in the order they need each other, so nothing
is changed after it is built: the call model first (the publisher asks it
whether a pop is still worth sending), then the AMI client with an event bus,
then the service and the callback dispatcher, which subscribe to the events
they handle by name.  The AMI connection opens only in :meth:`Cti.connect`,
once every feature has subscribed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cti.ami import AmiClient
from cti.bus import ALL, AmiEventBus
from cti.callbacks import CallbackDispatcher, CallbackPolicy
from cti.desk import AgentDesk
from cti.mqtt import MqttPublisher
from cti.service import CtiService
from cti.state import CallCenter
from hotline.config import Config
from hotline.deflection.callbacks import CallbackStore
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore


def callback_policy(cfg: Config) -> CallbackPolicy:
    d = cfg.deflection
    return CallbackPolicy(
        context=d.callback_context,
        agent_channel=d.callback_agent_channel,
        max_attempts=d.callback_max_attempts,
        retry_after_s=d.callback_retry_after_s,
        agent_ring_s=d.callback_agent_ring_s,
        number_pattern=d.number_pattern,
    )


@dataclass(frozen=True)
class CtiDeps:
    directory: CustomerDirectory
    interactions: InteractionStore
    ami_secret: str
    # Callbacks the IVR booked, to be dialled here (None: deflection is off).
    callbacks: CallbackStore | None = None


@dataclass(frozen=True)
class Cti:
    state: CallCenter
    service: CtiService
    publisher: MqttPublisher
    ami: AmiClient
    bus: AmiEventBus
    dispatcher: CallbackDispatcher | None
    # The agent desktop's back end: state control, wrap-up, dispositions (cti/desk.py).
    desk: AgentDesk

    async def connect(self) -> None:
        """Open the AMI connection (every subscriber is in place) and start dialling."""
        await self.ami.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()

    def health(self) -> dict[str, dict[str, object]]:
        return {
            "ami": self.ami.health(),
            "mqtt": {
                "connected": self.publisher.connected,
                "published": self.publisher.published,
                "buffered": self.publisher.buffered,
            },
        }


@contextlib.asynccontextmanager
async def setup(cfg: Config, deps: CtiDeps) -> AsyncIterator[Cti]:
    state = CallCenter(tuple(cfg.cti.ivr_contexts))
    publisher = MqttPublisher(
        cfg.mqtt.host,
        cfg.mqtt.port,
        username=cfg.mqtt.username,
        password=cfg.mqtt_password(),
        client_id=cfg.mqtt.client_id,
        prefix=cfg.mqtt.prefix,
        buffer_size=cfg.mqtt.buffer_size,
        # A screen pop for a call that has ended is not worth sending late.
        is_live=state.call_live,
    )
    bus = AmiEventBus()
    ami = AmiClient(
        cfg.ami.host,
        cfg.ami.port,
        cfg.ami.username,
        deps.ami_secret,
        on_event=bus.publish,
        on_login=bus.logged_in,
        backoff_min=cfg.ami.reconnect_min_s,
        backoff_max=cfg.ami.reconnect_max_s,
    )
    service = CtiService(
        state, publisher, ami, deps.directory, deps.interactions, callbacks=deps.callbacks
    )
    bus.subscribe(ALL, service.on_event)
    bus.on_login(service.on_login)
    desk = AgentDesk(cfg.desk, state, ami, service, deps.interactions)
    service.agent_changed.subscribe(desk.on_agent_changed)
    service.agent_call_done.subscribe(desk.on_call_done)
    service.popped.subscribe(desk.on_pop)
    dispatcher = None
    if deps.callbacks is not None:
        dispatcher = CallbackDispatcher(
            deps.callbacks, state, ami, callback_policy(cfg), on_outcome=service.count_deflection
        )
        bus.subscribe(CallbackDispatcher.EVENTS, dispatcher.on_event)
    publisher.start()
    service.start()
    try:
        yield Cti(state, service, publisher, ami, bus, dispatcher, desk)
    finally:
        await desk.stop()
        if dispatcher is not None:
            await dispatcher.stop()
        ami.close()
        await service.stop()
        await publisher.stop()
