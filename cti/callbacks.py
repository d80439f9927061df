"""The callback dispatcher: rings an agent, then the caller, when a callback's turn comes.

A callback keeps its caller's place: it is dialled once no caller still
waiting in the real queue joined before it did, and an agent of that queue
is available.  The agent's leg is originated first (their screen pop, marked
``callback``, comes from the CTI state when that channel appears); once the
agent answers, the dialplan context ``hotline-callback`` records the call
and dials the caller through the ``pstn`` trunk, then reports the result in
a ``UserEvent(HotlineCallback)``.

Only the callback store's validated digits go into the Originate, as one
channel variable; the dialplan re-checks them.  The context, the trunk and
the agent's endpoint come from configuration, never from a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cti.ami import AmiClient, AmiEvent
from cti.state import CallCenter, ExpectedCallback
from hotline.contracts import NUMBER_PATTERN, ChannelVar, UserEvent
from hotline.deflection.callbacks import Callback, CallbackStore, InvalidNumber, dialable

log = logging.getLogger("hotline.callbacks")

# Dial statuses from the dialplan (Dial's DIALSTATUS) and what they mean here.
CONNECTED = "ANSWER"


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    context: str = "hotline-callback"
    agent_channel: str = "PJSIP/{agent}"
    max_attempts: int = 3
    retry_after_s: float = 120.0
    agent_ring_s: float = 25.0  # how long the agent's phone rings
    caller_ring_s: float = 30.0  # set in the dialplan; here only to bound the wait
    poll_s: float = 1.0
    # An agent who lets a callback ring out is not asked again for this long, and
    # after this many such misses the attempt counts against the caller after all
    # (a logged-in agent who is away must not hold a callback up for ever).
    agent_cooldown_s: float = 60.0
    max_agent_misses: int = 5
    number_pattern: str = NUMBER_PATTERN


class CallbackDispatcher:
    def __init__(
        self,
        store: CallbackStore,
        state: CallCenter,
        ami: AmiClient,
        policy: CallbackPolicy | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.ami = ami
        self.policy = policy or CallbackPolicy()
        self._results: dict[str, asyncio.Future[str]] = {}
        self._busy_agents: set[str] = set()
        self._cooldown: dict[str, float] = {}  # agent -> monotonic time they may be rung again
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._waiting = False  # the last look found callbacks pending
        # Called with (queue, "callback_completed" | "callback_failed").
        self.on_outcome = on_outcome
        self.completed = 0
        self.failed = 0

    # -- wiring -----------------------------------------------------------------------
    # The AMI events :meth:`on_event` needs (the composition root subscribes it to these).
    EVENTS = ("UserEvent", "AgentComplete", "QueueMemberStatus", "QueueCallerLeave")

    def on_event(self, ev: AmiEvent) -> None:
        """The dialplan's callback results, and hints that an agent may be free."""
        if ev.get("Event") == "UserEvent" and ev.get("UserEvent") == UserEvent.CALLBACK:
            fut = self._results.get(str(ev.get("Id", "")))
            if fut is not None and not fut.done():
                fut.set_result(str(ev.get("Status", "")))
        elif self._waiting and ev.get("Event") in (
            "AgentComplete",
            "QueueMemberStatus",
            "QueueCallerLeave",
        ):
            # An agent may have become free, or the line moved.  Only when some
            # callback waits: otherwise these frequent events would each cost a
            # database read for nothing (bookings poke, and the poll finds the rest).
            self._wake.set()

    async def start(self) -> None:
        # A callback that was being dialled when we stopped may still be ringing
        # (or talking) in Asterisk: wait out both legs' ring time before trying again.
        p = self.policy
        recovered = await self.store.recover(
            p.max_attempts, retry_after_s=p.agent_ring_s + p.caller_ring_s
        )
        if recovered:
            log.info("callbacks interrupted by a restart are back in line: %d", recovered)
        self._task = asyncio.create_task(self._loop(), name="callback-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    def poke(self) -> None:
        """Look now (a callback was booked)."""
        self._wake.set()

    # -- scheduling -------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            try:
                await self.dispatch_due()
            except Exception:
                log.exception("callback dispatch failed; trying again shortly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.policy.poll_s)
            self._wake.clear()

    def free_agent(self, queue: str) -> str | None:
        q = self.state.queues.get(queue)
        if q is None:
            return None
        now = time.monotonic()
        for number in sorted(q.members):
            agent = self.state.agents.get(number)
            if (
                agent is not None
                and agent.shown_state == "available"
                and number not in self._busy_agents
                and self._cooldown.get(number, 0.0) <= now
            ):
                return number
        return None

    def agent_channel(self, agent: str) -> str:
        """The device the queue rings for this agent; the configured pattern otherwise."""
        known = self.state.agents.get(agent)
        if known is not None and known.interface:
            return known.interface
        return self.policy.agent_channel.format(agent=agent)

    def count_waiting(self, pending: list[Callback]) -> None:
        """Callbacks waiting per queue, for the wait estimate new callers hear."""
        waiting: dict[str, int] = {}
        for cb in pending:
            waiting[cb.queue] = waiting.get(cb.queue, 0) + 1
        for name in {*self.state.queues, *waiting}:
            self.state.queue(name).callbacks_waiting = waiting.get(name, 0)

    def ahead_in_queue(self, cb: Callback) -> int:
        """Callers on the line in the callback's queue who joined before it was booked."""
        q = self.state.queues.get(cb.queue)
        if q is None:
            return 0
        booked = cb.requested_at.timestamp()
        return sum(1 for _, joined in q.callers.values() if joined < booked)

    async def dispatch_due(self) -> int:
        """Start every callback whose turn it is; returns how many started."""
        if not self.ami.logged_in:
            return 0
        started = 0
        now = datetime.now(UTC)
        seen_queues: set[str] = set()
        pending = await self.store.pending()
        self._waiting = bool(pending)
        for cb in pending:
            if cb.id in self._running or cb.queue in seen_queues:
                continue
            if cb.next_attempt_at > now:
                continue  # waiting to retry: the ones behind it may go first
            # One callback per queue at a time, in booking order: the first
            # pending one of a queue holds the place for the ones behind it.
            seen_queues.add(cb.queue)
            if self.ahead_in_queue(cb):
                continue
            agent = self.free_agent(cb.queue)
            if agent is None:
                continue
            self._busy_agents.add(agent)
            task = asyncio.create_task(self._attempt(cb, agent), name=f"callback-{cb.id}")
            self._running[cb.id] = task
            started += 1
        self.count_waiting([cb for cb in pending if cb.id not in self._running])
        return started

    # -- one attempt ------------------------------------------------------------------
    async def _attempt(self, cb: Callback, agent: str) -> None:
        try:
            await self._attempt_inner(cb, agent)
        except Exception:
            log.exception("callback %s: attempt failed unexpectedly", cb.id)
            await self.store.finish_attempt(
                cb.id,
                "error",
                connected=False,
                max_attempts=self.policy.max_attempts,
                retry_after_s=self.policy.retry_after_s,
            )
        finally:
            self._busy_agents.discard(agent)
            self._running.pop(cb.id, None)
            self._wake.set()

    async def _attempt_inner(self, cb: Callback, agent: str) -> None:
        p = self.policy
        try:
            digits = dialable(cb.number, p.number_pattern)
        except InvalidNumber as e:
            await self.store.cancel(cb.id, str(e))
            return
        started = await self.store.start_attempt(cb.id, agent)
        if started is None:
            return  # cancelled or taken meanwhile
        channel_id = f"cb-{cb.id[:12]}-{started.attempts}-{int(time.time())}"
        result_fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._results[cb.id] = result_fut
        self.state.expected_callbacks[channel_id] = ExpectedCallback(
            id=cb.id,
            agent=agent,
            queue=cb.queue,
            number=digits,
            interaction_id=cb.interaction_id,
            waited_s=time.time() - cb.requested_at.timestamp(),
        )
        log.info(
            "callback: ringing agent",
            extra={"callback": cb.id, "agent": agent, "attempt": started.attempts},
        )
        try:
            replies = await self.ami.action(
                {
                    "Action": "Originate",
                    "Channel": self.agent_channel(agent),
                    "Context": p.context,
                    "Exten": "s",
                    "Priority": "1",
                    "CallerID": f'"Callback" <{digits}>',
                    "Timeout": str(int(p.agent_ring_s * 1000)),
                    "ChannelId": channel_id,
                    "Async": "true",
                    "Variable": [
                        f"{ChannelVar.CALLBACK_ID}={cb.id}",
                        f"{ChannelVar.CALLBACK_NUMBER}={digits}",
                        f"{ChannelVar.INTERACTION}={cb.interaction_id or ''}",
                    ],
                },
                timeout=p.agent_ring_s + 10,
            )
            agent_answered = any(
                r.get("Event") == "OriginateResponse" and r.get("Response") == "Success"
                for r in replies
            )
            if not agent_answered:
                # Not the caller's fault: the attempt is given back (up to a point),
                # and this agent is left alone for a while.
                why = next((r.get("Reason") or r.get("Message") for r in reversed(replies)), "?")
                self._cooldown[agent] = time.monotonic() + p.agent_cooldown_s
                misses = sum(
                    1
                    for h in started.history
                    if str(h.get("result", "")).startswith("agent_no_answer")
                )
                await self._finish(
                    cb,
                    f"agent_no_answer:{why}",
                    connected=False,
                    counts=misses + 1 >= p.max_agent_misses,
                )
                return
            status = await asyncio.wait_for(result_fut, p.caller_ring_s + 15)
        except TimeoutError:
            await self._finish(cb, "no_result", connected=False)
            return
        finally:
            self._results.pop(cb.id, None)
            self.state.expected_callbacks.pop(channel_id, None)
        await self._finish(cb, status.lower() or "unknown", connected=status == CONNECTED)

    async def _finish(
        self, cb: Callback, result: str, *, connected: bool, counts: bool = True
    ) -> None:
        done = await self.store.finish_attempt(
            cb.id,
            result,
            connected=connected,
            max_attempts=self.policy.max_attempts,
            retry_after_s=self.policy.retry_after_s if counts else 5.0,
            counts=counts,
        )
        log.info(
            "callback %s: attempt finished: %s -> %s",
            cb.id,
            result,
            done and done.status,
            extra={"callback": cb.id, "result": result, "status": done and done.status},
        )
        if done is None or self.on_outcome is None:
            return
        if done.status == "completed":
            self.completed += 1
            self.on_outcome(cb.queue, "callback_completed")
        elif done.status == "failed":
            self.failed += 1
            self.on_outcome(cb.queue, "callback_failed")
