"""The CTI service: AMI events in, screen pops and live state out over MQTT."""

from __future__ import annotations

import asyncio
import logging
import time

from cti.ami import AmiClient, AmiEvent
from cti.mqtt import MqttPublisher, topic_segment
from cti.payloads import (
    HISTORY_ENTRIES,
    ScreenPopPayload,
    agent_state_payload,
    call_event_payload,
    queue_stats_payload,
    screen_pop_payload,
)
from cti.state import (
    AgentCallDone,
    AgentChanged,
    CallCenter,
    CallEvent,
    CallFinished,
    Output,
    QueueChanged,
    ScreenPop,
)
from hotline.contracts import ChannelVar
from hotline.deflection.callbacks import CallbackStore
from hotline.events import CallEnded, Signal
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore

log = logging.getLogger("hotline.cti")


class CtiService:
    """Turns the AMI event stream into screen pops, agent states, queue stats and call events.

    Built with everything it uses; the composition root subscribes
    :meth:`on_event` and :meth:`on_login` to the AMI event bus, and other
    features subscribe to :attr:`call_ended`.
    """

    def __init__(
        self,
        state: CallCenter,
        publisher: MqttPublisher,
        ami: AmiClient,
        directory: CustomerDirectory,
        interactions: InteractionStore,
        callbacks: CallbackStore | None = None,
    ) -> None:
        self.state = state
        self.publisher = publisher
        self.ami = ami
        self.directory = directory
        self.interactions = interactions
        # Where a pop's history finds the status of the callbacks earlier calls booked.
        self.callbacks = callbacks
        self._events: asyncio.Queue[AmiEvent | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.pops_sent = 0
        # A call is over (the recordings feature stores its audio).
        self.call_ended: Signal[CallEnded] = Signal("call_ended")
        # For the agent desk (cti/desk.py): an agent's state was published (after
        # an AMI event or a rebuild), an agent finished a call they took, a pop went out.
        self.agent_changed: Signal[str] = Signal("agent_changed")
        self.agent_call_done: Signal[AgentCallDone] = Signal("agent_call_done")
        self.popped: Signal[ScreenPopPayload] = Signal("popped")
        self._pops: set[asyncio.Task[None]] = set()

    # -- wiring -------------------------------------------------------------------------
    def on_event(self, ev: AmiEvent) -> None:
        """Called for every AMI event; work happens in order on one worker task."""
        self._events.put_nowait(ev)

    def count_deflection(self, queue: str, what: str) -> None:
        """An IVR deflection offer or outcome: counted in the queue's statistics."""
        self.state.count_deflection(queue, what)
        self._emit_queue(queue)

    async def on_login(self) -> None:
        """After every (re)connect: events during the gap are lost, so ask Asterisk."""
        try:
            queue_status = await self.ami.action({"Action": "QueueStatus"})
            channels = await self.ami.action({"Action": "CoreShowChannels"})
        except (TimeoutError, OSError) as e:
            log.warning("state rebuild failed: %s", e)
            return
        self._events.put_nowait(
            {"Event": "_Rebuild", "queue_status": queue_status, "channels": channels}
        )

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="cti-worker")

    async def stop(self) -> None:
        if self._worker is not None:
            self._events.put_nowait(None)
            await self._worker

    async def drained(self) -> None:
        """Wait until every event received so far has been handled (for tests, benches)."""
        await self._events.join()
        while self._pops:
            await asyncio.gather(*self._pops)

    async def _work(self) -> None:
        while True:
            ev = await self._events.get()
            if ev is None:
                self._events.task_done()
                return
            try:
                if ev.get("Event") == "_Rebuild":
                    self.state.rebuild(ev["queue_status"], ev["channels"])
                    self._publish_all()
                    log.info(
                        "CTI state rebuilt",
                        extra={"agents": len(self.state.agents), "calls": len(self.state.calls)},
                    )
                    continue
                for out in self.state.apply(ev):
                    await self._emit(out)
            except Exception:
                log.exception("CTI failed on event %s; skipped", ev.get("Event"))
            finally:
                self._events.task_done()

    # -- outputs ------------------------------------------------------------------------
    def _publish_all(self) -> None:
        for agent in list(self.state.agents.values()):
            self._emit_agent(agent.number)
            self.agent_changed.emit(agent.number)
        for queue in self.state.queues:
            self._emit_queue(queue)

    def set_wrapup(self, agent: str, until: float | None) -> None:
        """The desk's wrap-up end for an agent (None: none): published on the agent's
        retained state topic when it changes."""
        if self.state.set_wrapup(agent, until):
            self._emit_agent(agent)

    async def _emit(self, out: Output) -> None:
        match out:
            case ScreenPop():
                # The look-ups run beside the event stream, not in it: a slow
                # database must not hold up every other call's events.
                task = asyncio.get_running_loop().create_task(self._pop(out))
                self._pops.add(task)
                task.add_done_callback(self._pops.discard)
            case AgentChanged():
                self._emit_agent(out.agent.number)
                self.agent_changed.emit(out.agent.number)
            case AgentCallDone():
                self.agent_call_done.emit(out)
            case QueueChanged():
                self._emit_queue(out.queue)
            case CallFinished():
                call = out.call
                self.call_ended.emit(
                    CallEnded(
                        call_id=call.call_id,
                        caller=call.caller_number,
                        agent=call.answered_by or "",
                        queue=call.queue or "",
                    )
                )
            case CallEvent():
                self.publisher.publish(
                    self.publisher.topic("calls", topic_segment(out.call_id), "events"),
                    call_event_payload(out, time.time()),
                )

    async def _pop(self, pop: ScreenPop) -> None:
        try:
            payload = await self.screen_pop(pop)
        except Exception:
            # The agent still learns who is calling, even without the extras.
            log.exception("screen pop look-up failed; sending the pop without profile")
            payload = await self.screen_pop(pop, lookups=False)
        self.publisher.publish(
            self.publisher.topic("agents", topic_segment(pop.agent), "screenpop"),
            payload,
            call_id=pop.call.call_id,
        )
        self.pops_sent += 1
        self.popped.emit(payload)

    def _emit_agent(self, number: str) -> None:
        self.publisher.publish(
            self.publisher.topic("agents", topic_segment(number), "state"),
            agent_state_payload(self.state.agents[number]),
            retain=True,
        )

    def _emit_queue(self, queue: str) -> None:
        self.publisher.publish(
            self.publisher.topic("queues", topic_segment(queue), "stats"),
            queue_stats_payload(self.state.queue_stats(queue), time.time()),
            retain=True,
        )

    async def screen_pop(self, pop: ScreenPop, lookups: bool = True) -> ScreenPopPayload:
        """Who is calling and everything they did in the IVR.

        ``lookups=False`` builds the pop from the AMI event alone (the database
        failed): the agent still sees the caller and the queue.
        """
        call = pop.call
        interaction = None
        customer = None
        if lookups:
            interaction_id = call.variables.get(ChannelVar.INTERACTION)
            if interaction_id:
                interaction = await self.interactions.get(interaction_id)
            if interaction is None:
                interaction = await self.interactions.get(call.call_id)
            customer_id = call.variables.get(ChannelVar.CUSTOMER) or (
                str(interaction.customer_id) if interaction and interaction.customer_id else ""
            )
            if customer_id.isdigit():
                customer = await self.directory.get(int(customer_id))
            if customer is None and call.caller_number:
                customer = await self.directory.by_phone(call.caller_number)
        recent: list[Interaction] = []
        callbacks: dict[str, str] = {}
        if lookups and (customer is not None or call.caller_number):
            # The customer's or the number's history, across channels (bounded, indexed).
            recent = await self.interactions.history(
                customer_id=customer.id if customer else None,
                caller=call.caller_number or None,
                limit=HISTORY_ENTRIES,
                exclude={call.call_id, *([interaction.id] if interaction else [])},
            )
            callbacks = await self._callback_status(recent)
        return screen_pop_payload(
            pop, interaction, customer, recent, time.time(), callbacks=callbacks
        )

    async def _callback_status(self, recent: list[Interaction]) -> dict[str, str]:
        """The status of each callback the records booked (a point read each, at most five)."""
        if self.callbacks is None:
            return {}
        out: dict[str, str] = {}
        for it in recent:
            for step in it.steps:
                callback_id = step.get("callback")
                if callback_id and callback_id not in out:
                    cb = await self.callbacks.get(callback_id)
                    if cb is not None:
                        out[callback_id] = cb.status
        return out
