"""The CTI service: AMI events in, screen pops and live state out over MQTT."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cti.ami import AmiClient, AmiEvent
from cti.mqtt import MqttPublisher, topic_segment
from cti.state import (
    AgentChanged,
    Call,
    CallCenter,
    CallEvent,
    CallFinished,
    Output,
    QueueChanged,
    ScreenPop,
)
from hotline.contracts import ChannelVar
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore

log = logging.getLogger("hotline.cti")


def _ts(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).isoformat(
        timespec="milliseconds"
    )


class CtiService:
    def __init__(
        self,
        publisher: MqttPublisher,
        directory: CustomerDirectory,
        interactions: InteractionStore,
        ivr_contexts: tuple[str, ...] = ("from-callers",),
    ) -> None:
        self.state = CallCenter(ivr_contexts)
        self.publisher = publisher
        publisher.is_live = self.state.call_live
        self.directory = directory
        self.interactions = interactions
        self.ami: AmiClient | None = None
        self._events: asyncio.Queue[AmiEvent | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.pops_sent = 0
        # Called when a call is over (the recording store ingests its files).
        self.on_call_finished: Callable[[Call], None] | None = None
        self._pops: set[asyncio.Task[None]] = set()
        # Also told of every AMI event, as it arrives (the callback dispatcher).
        self.event_hooks: list[Callable[[AmiEvent], None]] = []

    # -- wiring -------------------------------------------------------------------------
    def attach(self, ami: AmiClient) -> None:
        self.ami = ami

    def on_event(self, ev: AmiEvent) -> None:
        """Called for every AMI event; work happens in order on one worker task."""
        self._events.put_nowait(ev)
        for hook in self.event_hooks:
            try:
                hook(ev)
            except Exception:
                log.exception("AMI event hook failed on %s", ev.get("Event"))

    def count_deflection(self, queue: str, what: str) -> None:
        """An IVR deflection offer or outcome: counted in the queue's statistics."""
        self.state.count_deflection(queue, what)
        self._emit_queue(queue)

    async def on_login(self) -> None:
        """After every (re)connect: events during the gap are lost, so ask Asterisk."""
        assert self.ami is not None
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
        for agent in self.state.agents.values():
            self._emit_agent(agent.number)
        for queue in self.state.queues:
            self._emit_queue(queue)

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
            case QueueChanged():
                self._emit_queue(out.queue)
            case CallFinished():
                if self.on_call_finished is not None:
                    self.on_call_finished(out.call)
            case CallEvent():
                self.publisher.publish(
                    self.publisher.topic("calls", topic_segment(out.call_id), "events"),
                    {
                        "type": "call_event",
                        "call_id": out.call_id,
                        "event": out.kind,
                        "ts": _ts(),
                        **out.detail,
                    },
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

    def _emit_agent(self, number: str) -> None:
        a = self.state.agents[number]
        self.publisher.publish(
            self.publisher.topic("agents", topic_segment(number), "state"),
            {
                "type": "agent_state",
                "agent": number,
                "state": a.shown_state,
                "since": _ts(a.since),
                "call_id": a.call_id,
                "queues": sorted(a.queues),
            },
            retain=True,
        )

    def _emit_queue(self, queue: str) -> None:
        self.publisher.publish(
            self.publisher.topic("queues", topic_segment(queue), "stats"),
            {"type": "queue_stats", **self.state.queue_stats(queue), "ts": _ts()},
            retain=True,
        )

    async def screen_pop(self, pop: ScreenPop, lookups: bool = True) -> dict[str, Any]:
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
        customer_json = None
        if customer is not None:
            recent = [
                {
                    "call_id": i.call_id,
                    "started_at": i.started_at.isoformat(),
                    "outcome": i.outcome,
                    "intent": i.intent,
                }
                for i in await self.interactions.recent(limit=4, caller=call.caller_number)
                if i.call_id != call.call_id
            ][:3]
            customer_json = {
                "id": customer.id,
                "name": customer.name,
                "account": customer.account,
                "language": customer.language,
                "balance": customer.balance_cents / 100,
                "last_bill": None
                if customer.last_bill_date is None
                else {
                    "date": customer.last_bill_date.isoformat(),
                    "amount": (customer.last_bill_cents or 0) / 100,
                },
                "bill_due_date": customer.bill_due_date.isoformat()
                if customer.bill_due_date
                else None,
                "open_ticket": customer.open_ticket,
                "recent_interactions": recent,
            }
        ivr = None
        if interaction is not None:
            ivr = {
                "interaction_id": interaction.id,
                "path": interaction.path,
                "intent": interaction.intent,
                "inputs": interaction.inputs,
                "transcripts": interaction.transcripts,
                "language": interaction.language,
                "self_service": interaction.self_service,
                "outcome": interaction.outcome,
            }
        return {
            "type": "screenpop",
            "call_id": call.call_id,
            "agent": pop.agent,
            "queue": pop.queue,
            "caller_number": call.caller_number,
            "caller_name": call.caller_name,
            "customer": customer_json,
            "ivr": ivr,
            "wait_seconds": pop.wait_s,
            "callback": call.callback,
            "ts": _ts(),
        }
