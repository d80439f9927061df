"""Calls, queues and agents as Asterisk reports them over AMI: the CTI's domain.

Pure and synchronous: :meth:`CallCenter.apply` takes one AMI event (a dict)
and returns what changed, as outputs the service publishes.  No I/O here, so
recorded AMI transcripts drive it in tests exactly as Asterisk does live.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal, TypedDict

from cti.ami import AmiEvent, chan_variables
from hotline.config import WRAPUP_REASON
from hotline.contracts import ChannelVar, UserEvent
from hotline.erlang_c import QueueHistory, WaitEstimate, estimate_wait

log = logging.getLogger("hotline.cti")

# What a desktop shows for an agent (cti/schemas/agent_state.schema.json).
AgentStateName = Literal["available", "ringing", "busy", "on_hold", "paused", "offline", "unknown"]

# The agent as their phone and the desk show them (docs/agent-desktop.md): ringing,
# talking (on hold too), wrapup (paused "Wrap-up"), ready, paused, offline.
AgentPhase = Literal["ringing", "talking", "wrapup", "ready", "paused", "offline"]

# QueueMemberStatus "Status" (Asterisk device states) to what a desktop shows.
DEVICE_STATE: dict[str, AgentStateName] = {
    "0": "unknown",
    "1": "available",
    "2": "busy",
    "3": "busy",
    "4": "offline",
    "5": "offline",
    "6": "ringing",
    "7": "ringing",
    "8": "on_hold",
}


def agent_of(member_name: str, interface: str) -> str:
    """Agent number: the queue member name if it is one, else from the interface."""
    if member_name and member_name.isdigit():
        return member_name
    tail = interface.rsplit("/", 1)[-1]
    digits = "".join(ch for ch in tail if ch.isdigit())
    return digits or tail


@dataclass
class Call:
    call_id: str  # Asterisk linkedid
    caller_number: str = ""
    caller_name: str = ""
    started: float = field(default_factory=time.time)
    channels: set[str] = field(default_factory=set)
    queue: str | None = None
    joined_queue_at: float | None = None
    answered_by: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    callback: bool = False
    callback_id: str | None = None  # the callback being dialled (callback calls)
    # A callback whose caller answered and was put through to the agent.
    connected: bool = False


@dataclass
class Agent:
    number: str
    state: AgentStateName = "offline"
    since: float = field(default_factory=time.time)
    call_id: str | None = None
    paused: bool = False
    queues: set[str] = field(default_factory=set)
    # The device the queue rings (e.g. PJSIP/agent1001): where a callback rings too.
    interface: str = ""
    # Why Asterisk has the agent paused (QueuePause Reason; "" when not paused).
    pause_reason: str = ""
    # When the desk's wrap-up ends (epoch seconds; cti/desk.py sets it), while
    # Asterisk reports the agent paused "Wrap-up".
    wrapup_until: float | None = None
    # When the agent's part in the current call began (their phone rang).
    call_since: float | None = None
    # Queues in which the agent is a static member (queues.conf): no logging out.
    static_queues: set[str] = field(default_factory=set)

    @property
    def shown_state(self) -> AgentStateName:
        if self.paused and self.state in ("available", "unknown"):
            return "paused"
        return self.state

    @property
    def in_wrapup(self) -> bool:
        """Paused "Wrap-up" in Asterisk (by the desk, or anyone with that reason)."""
        return self.paused and self.pause_reason.casefold() == WRAPUP_REASON.casefold()

    @property
    def phase(self) -> AgentPhase:
        """The agent as their phone shows them: the call first, then the pause."""
        if self.state == "offline":
            return "offline"
        if self.state == "ringing":
            return "ringing"
        if self.state in ("busy", "on_hold"):
            return "talking"
        if self.paused:
            return "wrapup" if self.in_wrapup else "paused"
        return "ready"


@dataclass
class QueueState:
    name: str
    callers: dict[str, tuple[str, float]] = field(
        default_factory=dict
    )  # channel -> (call_id, joined)
    members: set[str] = field(default_factory=set)
    service_level_s: int = 30
    day: date = field(default_factory=date.today)
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    handle_times: deque[float] = field(default_factory=lambda: deque(maxlen=100))
    history: QueueHistory = field(default_factory=QueueHistory)
    # Deflection offers and outcomes today (offered, link_sent, callback_booked, ...).
    deflection: dict[str, int] = field(default_factory=dict)
    # Callbacks booked for this queue and not yet dialled: they keep their place,
    # so a caller joining now waits behind them too (set by the callback dispatcher).
    callbacks_waiting: int = 0

    def roll_day(self, today: date) -> None:
        if today != self.day:
            self.day, self.answered, self.answered_in_sl, self.abandoned = today, 0, 0, 0
            self.deflection = {}


@dataclass(frozen=True)
class ExpectedCallback:
    """A callback the dispatcher is about to originate to ``agent``."""

    id: str
    agent: str
    queue: str
    number: str
    interaction_id: str | None
    waited_s: float


# -- outputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScreenPop:
    agent: str
    call: Call
    queue: str
    wait_s: float


@dataclass(frozen=True)
class AgentChanged:
    agent: Agent  # a snapshot: the live Agent goes on changing

    @staticmethod
    def of(agent: Agent) -> AgentChanged:
        return AgentChanged(
            replace(agent, queues=set(agent.queues), static_queues=set(agent.static_queues))
        )


@dataclass(frozen=True)
class QueueChanged:
    queue: str


CallEventKind = Literal[
    "ivr_started",
    "queued",
    "ringing",
    "answered",
    "transferred",
    "abandoned",
    "ended",
    "callback_ringing",
]


class CallEventDetail(TypedDict, total=False):
    """What a call event says beyond its kind (cti/schemas/call_event.schema.json)."""

    queue: str  # queued, ringing, answered, abandoned, callback_ringing
    position: int  # queued
    agent: str  # ringing, answered, callback_ringing
    hold_s: int  # abandoned
    caller_number: str  # ivr_started
    cause: str  # ended
    to: str  # transferred (blind)
    kind: Literal["blind", "attended"]  # transferred
    callback: str  # callback_ringing: the callback's id


@dataclass(frozen=True)
class CallEvent:
    call_id: str
    kind: CallEventKind
    detail: CallEventDetail


@dataclass(frozen=True)
class CallFinished:
    """The call is over (its last channel hung up): recordings can be stored."""

    call: Call


@dataclass(frozen=True)
class AgentCallDone:
    """An agent finished a call they took (AgentComplete; a callback they talked on
    hung up): the desk's wrap-up starts."""

    agent: str
    call_id: str
    queue: str
    callback: bool


Output = ScreenPop | AgentChanged | QueueChanged | CallEvent | CallFinished | AgentCallDone


class QueueStats(TypedDict):
    """A queue's figures now (the body of cti/schemas/queue_stats.schema.json)."""

    queue: str
    waiting: int
    callbacks_waiting: int
    longest_wait_s: float
    agents_available: int
    agents_busy: int
    est_wait_s: float | None  # None: nobody staffed
    est_wait_method: str  # a hotline.erlang_c.METHODS name
    deflection: dict[str, int]  # today's deflection offers and outcomes, by kind
    answered_today: int
    abandoned_today: int
    service_level_pct: float | None  # None: no finished call today


class CallCenter:
    def __init__(self, ivr_contexts: tuple[str, ...] = ("from-callers",)) -> None:
        self.ivr_contexts = ivr_contexts
        self.calls: dict[str, Call] = {}
        self.channel_call: dict[str, str] = {}  # channel name -> call id
        self.agents: dict[str, Agent] = {}
        self.queues: dict[str, QueueState] = {}
        self.skipped = 0
        # Callbacks being originated: agent channel id -> who to pop and what with.
        self.expected_callbacks: dict[str, ExpectedCallback] = {}
        # Wrap-ups the desk is starting: agent -> when it ends (epoch seconds), taken
        # by the agent's state when Asterisk reports the pause.
        self.expected_wrapups: dict[str, float] = {}

    # -- queries -----------------------------------------------------------------------
    def queue(self, name: str) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueState(name)
        return q

    def agent(self, number: str) -> Agent:
        a = self.agents.get(number)
        if a is None:
            a = self.agents[number] = Agent(number)
        return a

    def call_live(self, call_id: str) -> bool:
        return call_id in self.calls

    def queue_stats(self, name: str, now: float | None = None) -> QueueStats:
        now = time.time() if now is None else now
        q = self.queue(name)
        q.roll_day(date.fromtimestamp(now))
        members = [self.agents[m] for m in q.members if m in self.agents]
        available = sum(1 for a in members if a.shown_state == "available")
        busy = sum(1 for a in members if a.shown_state in ("busy", "ringing", "on_hold"))
        longest = max((now - t for _, t in q.callers.values()), default=0.0)
        finished = q.answered + q.abandoned
        estimate = self.wait_estimate(name, now)
        return {
            "queue": name,
            "waiting": len(q.callers),
            "callbacks_waiting": q.callbacks_waiting,
            "longest_wait_s": round(longest, 1),
            "agents_available": available,
            "agents_busy": busy,
            "est_wait_s": None if math.isinf(estimate.seconds) else round(estimate.seconds, 1),
            "est_wait_method": estimate.method,
            "deflection": dict(q.deflection),
            "answered_today": q.answered,
            "abandoned_today": q.abandoned,
            "service_level_pct": round(100 * q.answered_in_sl / finished, 1) if finished else None,
        }

    def wait_estimate(self, name: str, now: float | None = None) -> WaitEstimate:
        """How long a caller joining ``name`` now would wait (docs/deflection.md).

        ``(callers ahead − free agents + 1) × AHT / staffed agents``: callers
        ahead are those waiting plus callbacks waiting, AHT the mean of the
        queue's last 50 handle times; the mean of recent answered waits, then a
        default AHT of 180 s, when there is too little data.  Not Erlang C:
        that formula only gives the probability of waiting in the estimate's
        detail (method label ``erlang_c`` = arrival rate known).  Only agents
        logged in and not paused are staffed.
        """
        now = time.time() if now is None else now
        q = self.queue(name)
        members = [self.agents[m] for m in q.members if m in self.agents]
        available = sum(1 for a in members if a.shown_state == "available")
        busy = sum(1 for a in members if a.shown_state in ("busy", "ringing", "on_hold"))
        return estimate_wait(
            position=len(q.callers) + q.callbacks_waiting,
            agents_staffed=available + busy,
            agents_available=available,
            arrival_rate_per_s=q.history.arrival_rate_per_s(now),
            aht_s=q.history.aht_s(),
            observed_waits_s=q.history.recent_waits(),
        )

    # -- events ------------------------------------------------------------------------------
    def apply(self, ev: AmiEvent, now: float | None = None) -> list[Output]:
        """Fold one AMI event into the state; return what changed.  Never raises."""
        now = time.time() if now is None else now
        name = ev.get("Event")
        handler = getattr(self, f"_on_{name}", None) if isinstance(name, str) else None
        if handler is None:
            return []
        try:
            out: list[Output] = handler(ev, now)
            return out
        except (KeyError, ValueError, TypeError) as e:
            self.skipped += 1
            log.warning("malformed AMI event skipped", extra={"event": name, "error": str(e)})
            return []

    def _call(self, ev: AmiEvent, now: float) -> Call:
        call_id = str(ev["Linkedid"])
        call = self.calls.get(call_id)
        if call is None:
            call = self.calls[call_id] = Call(call_id, started=now)
        if not call.caller_number and ev.get("CallerIDNum") not in (None, "", "<unknown>"):
            call.caller_number = str(ev["CallerIDNum"])
            name = str(ev.get("CallerIDName", ""))
            call.caller_name = "" if name == "<unknown>" else name
        call.variables.update({k: v for k, v in chan_variables(ev).items() if v})
        return call

    def count_deflection(self, queue: str, what: str, now: float | None = None) -> None:
        q = self.queue(queue)
        q.roll_day(date.fromtimestamp(time.time() if now is None else now))
        q.deflection[what] = q.deflection.get(what, 0) + 1
        if what == "callback_booked":
            q.callbacks_waiting += 1  # at once; the dispatcher's next look sets the count

    def _on_Newchannel(self, ev: AmiEvent, now: float) -> list[Output]:
        fresh = str(ev["Linkedid"]) not in self.calls
        call = self._call(ev, now)
        call.channels.add(str(ev["Channel"]))
        self.channel_call[str(ev["Channel"])] = call.call_id
        expected = self.expected_callbacks.pop(str(ev.get("Uniqueid", "")), None)
        if expected is not None:
            # An agent's phone rings for a callback: pop it like a queue call,
            # marked as a callback, with what the caller did in the IVR.
            call.callback = True
            call.callback_id = expected.id
            call.queue = expected.queue
            # The recording of a callback is filed under the agent who was rung
            # (no AgentConnect comes: the call never went through the queue).
            call.answered_by = expected.agent
            call.caller_number = expected.number
            call.caller_name = ""
            if expected.interaction_id:
                call.variables[ChannelVar.INTERACTION] = expected.interaction_id
            agent = self.agent(expected.agent)
            out: list[Output] = [
                ScreenPop(agent.number, call, expected.queue, round(expected.waited_s, 1)),
                CallEvent(
                    call.call_id,
                    "callback_ringing",
                    {"agent": agent.number, "queue": expected.queue, "callback": expected.id},
                ),
            ]
            if self._set_state(agent, "ringing", now, call.call_id):
                out.append(AgentChanged.of(agent))
            return out
        if (
            fresh
            and ev.get("Uniqueid") == ev.get("Linkedid")
            and ev.get("Context") in self.ivr_contexts
        ):
            return [CallEvent(call.call_id, "ivr_started", {"caller_number": call.caller_number})]
        return []

    def _on_Hangup(self, ev: AmiEvent, now: float) -> list[Output]:
        channel = str(ev["Channel"])
        call_id = self.channel_call.pop(channel, str(ev.get("Linkedid", "")))
        call = self.calls.get(call_id)
        if call is None:
            return []
        call.channels.discard(channel)
        if call.channels:
            return []
        del self.calls[call_id]
        out: list[Output] = [
            CallEvent(call_id, "ended", {"cause": ev.get("Cause-txt", "")}),
            CallFinished(call),
        ]
        if call.callback and call.connected and call.answered_by:
            out.append(AgentCallDone(call.answered_by, call_id, call.queue or "", callback=True))
        for q in self.queues.values():  # a caller can vanish without QueueCallerLeave
            if q.callers.pop(channel, None) is not None:
                out.append(QueueChanged(q.name))
        return out

    def _on_QueueCallerJoin(self, ev: AmiEvent, now: float) -> list[Output]:
        call = self._call(ev, now)
        queue = str(ev["Queue"])
        call.queue, call.joined_queue_at = queue, now
        self.queue(queue).callers[str(ev["Channel"])] = (call.call_id, now)
        self.queue(queue).history.record_arrival(now)
        position = int(ev.get("Position", 0) or 0)
        return [
            CallEvent(call.call_id, "queued", {"queue": queue, "position": position}),
            QueueChanged(queue),
        ]

    def _on_QueueCallerLeave(self, ev: AmiEvent, now: float) -> list[Output]:
        queue = str(ev["Queue"])
        self.queue(queue).callers.pop(str(ev["Channel"]), None)
        return [QueueChanged(queue)]

    def _on_QueueCallerAbandon(self, ev: AmiEvent, now: float) -> list[Output]:
        queue = str(ev["Queue"])
        q = self.queue(queue)
        q.roll_day(date.fromtimestamp(now))
        q.abandoned += 1
        q.callers.pop(str(ev["Channel"]), None)
        return [
            CallEvent(
                str(ev["Linkedid"]),
                "abandoned",
                {"queue": queue, "hold_s": int(ev.get("HoldTime", 0) or 0)},
            ),
            QueueChanged(queue),
        ]

    def _member_agent(self, ev: AmiEvent) -> Agent:
        interface = str(ev.get("Interface") or ev.get("DestChannel", "").rsplit("-", 1)[0])
        number = agent_of(str(ev.get("MemberName", "")), interface)
        if not number:
            raise ValueError("event names no agent")
        agent = self.agent(number)
        if ev.get("Interface"):
            agent.interface = str(ev.get("StateInterface") or ev["Interface"])
        return agent

    def _set_state(
        self, agent: Agent, state: AgentStateName, now: float, call_id: str | None
    ) -> bool:
        if agent.state == state and agent.call_id == call_id:
            return False
        if call_id != agent.call_id:
            agent.call_since = None if call_id is None else now
        agent.state, agent.since, agent.call_id = state, now, call_id
        return True

    def _pause_from(self, agent: Agent, ev: AmiEvent, now: float) -> None:
        """Paused or not, and why, as the event reports it (Asterisk 13+: PausedReason).

        An agent entering wrap-up takes the end the desk expects for them, if any.
        """
        agent.paused = ev.get("Paused") == "1"
        reason = ev.get("PausedReason", ev.get("Reason", ""))
        agent.pause_reason = str(reason or "") if agent.paused else ""
        if not agent.in_wrapup:
            agent.wrapup_until = None
        elif agent.wrapup_until is None:
            expected = self.expected_wrapups.pop(agent.number, None)
            agent.wrapup_until = expected if expected is not None and expected > now else None

    @staticmethod
    def _membership_from(agent: Agent, queue: str, ev: AmiEvent) -> None:
        if ev.get("Membership") == "static":
            agent.static_queues.add(queue)
        elif ev.get("Membership") is not None:
            agent.static_queues.discard(queue)

    def set_wrapup(self, number: str, until: float | None) -> bool:
        """The desk's wrap-up end for an agent Asterisk has in wrap-up (None: none);
        True when it changed.  Ignored for an agent not in wrap-up."""
        agent = self.agents.get(number)
        if agent is None:
            return False
        if until is not None and not agent.in_wrapup:
            until = None
        if agent.wrapup_until == until:
            return False
        agent.wrapup_until = until
        return True

    def _on_AgentCalled(self, ev: AmiEvent, now: float) -> list[Output]:
        call = self._call(ev, now)
        agent = self._member_agent(ev)
        queue = str(ev["Queue"])
        agent.queues.add(queue)
        self.queue(queue).members.add(agent.number)
        wait = now - call.joined_queue_at if call.joined_queue_at else 0.0
        out: list[Output] = [
            ScreenPop(agent.number, call, queue, round(wait, 1)),
            CallEvent(call.call_id, "ringing", {"agent": agent.number, "queue": queue}),
        ]
        if self._set_state(agent, "ringing", now, call.call_id):
            out.append(AgentChanged.of(agent))
        out.append(QueueChanged(queue))
        return out

    def _on_AgentRingNoAnswer(self, ev: AmiEvent, now: float) -> list[Output]:
        agent = self._member_agent(ev)
        if agent.state == "ringing" and self._set_state(agent, "available", now, None):
            return [AgentChanged.of(agent), QueueChanged(str(ev["Queue"]))]
        return []

    def _on_AgentConnect(self, ev: AmiEvent, now: float) -> list[Output]:
        call = self._call(ev, now)
        agent = self._member_agent(ev)
        queue = str(ev["Queue"])
        q = self.queue(queue)
        q.roll_day(date.fromtimestamp(now))
        q.answered += 1
        hold = int(ev.get("HoldTime", 0) or 0)
        if hold <= q.service_level_s:
            q.answered_in_sl += 1
        q.history.record_answered(float(max(hold, 0)), now)
        q.callers.pop(str(ev["Channel"]), None)
        call.answered_by = agent.number
        out: list[Output] = [
            CallEvent(call.call_id, "answered", {"agent": agent.number, "queue": queue})
        ]
        if self._set_state(agent, "busy", now, call.call_id):
            out.append(AgentChanged.of(agent))
        out.append(QueueChanged(queue))
        return out

    def _on_AgentComplete(self, ev: AmiEvent, now: float) -> list[Output]:
        agent = self._member_agent(ev)
        queue = str(ev["Queue"])
        talk = float(ev.get("TalkTime", 0) or 0)
        self.queue(queue).handle_times.append(talk)
        self.queue(queue).history.record_completed(max(talk, 0.0), now)
        out: list[Output] = []
        if self._set_state(agent, "available", now, None):
            out.append(AgentChanged.of(agent))
        done = AgentCallDone(agent.number, str(ev.get("Linkedid", "")), queue, callback=False)
        return [*out, QueueChanged(queue), done]

    def _on_UserEvent(self, ev: AmiEvent, now: float) -> list[Output]:
        # A callback's caller answered: the agent talks with them (cti/callbacks.py).
        if ev.get("UserEvent") != UserEvent.CALLBACK or ev.get("Status") != "ANSWER":
            return []
        call_id = self.channel_call.get(str(ev.get("Channel", "")), str(ev.get("Linkedid", "")))
        call = self.calls.get(call_id)
        if call is not None and call.callback:
            call.connected = True
        return []

    def _on_QueueMemberStatus(self, ev: AmiEvent, now: float) -> list[Output]:
        agent = self._member_agent(ev)
        queue = str(ev["Queue"])
        agent.queues.add(queue)
        self.queue(queue).members.add(agent.number)
        self._membership_from(agent, queue, ev)
        was = (agent.paused, agent.pause_reason, agent.wrapup_until)
        self._pause_from(agent, ev, now)
        state = DEVICE_STATE.get(str(ev.get("Status")), "unknown")
        call_id = agent.call_id if state in ("busy", "ringing", "on_hold") else None
        out: list[Output] = []
        changed = self._set_state(agent, state, now, call_id)
        if changed or was != (agent.paused, agent.pause_reason, agent.wrapup_until):
            out.append(AgentChanged.of(agent))
        return [*out, QueueChanged(queue)]

    _on_QueueMemberAdded = _on_QueueMemberStatus

    def _on_QueueMemberPause(self, ev: AmiEvent, now: float) -> list[Output]:
        agent = self._member_agent(ev)
        self._pause_from(agent, ev, now)
        agent.since = now
        return [AgentChanged.of(agent), QueueChanged(str(ev["Queue"]))]

    def _on_QueueMemberRemoved(self, ev: AmiEvent, now: float) -> list[Output]:
        agent = self._member_agent(ev)
        queue = str(ev["Queue"])
        agent.queues.discard(queue)
        agent.static_queues.discard(queue)
        self.queue(queue).members.discard(agent.number)
        out: list[Output] = [QueueChanged(queue)]
        if not agent.queues:
            # Logged out: no longer paused either (QueueAdd reports the pause anew).
            paused = agent.paused
            agent.paused, agent.pause_reason, agent.wrapup_until = False, "", None
            if self._set_state(agent, "offline", now, None) or paused:
                out.append(AgentChanged.of(agent))
        return out

    def _on_BlindTransfer(self, ev: AmiEvent, now: float) -> list[Output]:
        call_id = str(ev.get("TransfereeLinkedid") or ev.get("TransfererLinkedid", ""))
        if not call_id:
            return []
        return [CallEvent(call_id, "transferred", {"to": ev.get("Extension", ""), "kind": "blind"})]

    def _on_AttendedTransfer(self, ev: AmiEvent, now: float) -> list[Output]:
        call_id = str(ev.get("OrigTransfererLinkedid", ""))
        if not call_id:
            return []
        return [CallEvent(call_id, "transferred", {"kind": "attended"})]

    # -- rebuilding after (re)connect --------------------------------------------------
    def rebuild(
        self, queue_status: list[AmiEvent], channels: list[AmiEvent], now: float | None = None
    ) -> None:
        """Replace live state with what Asterisk reports now (counters for today are kept)."""
        now = time.time() if now is None else now
        self.calls.clear()
        self.channel_call.clear()
        for q in self.queues.values():
            q.callers.clear()
            q.members.clear()
        for a in self.agents.values():
            a.queues.clear()
            a.static_queues.clear()
        for ch in channels:
            if ch.get("Event") != "CoreShowChannel" or "Linkedid" not in ch:
                continue
            call = self._call(ch, now)
            call.channels.add(str(ch["Channel"]))
            self.channel_call[str(ch["Channel"])] = call.call_id
        for ev in queue_status:
            kind = ev.get("Event")
            if kind == "QueueParams":
                q = self.queue(str(ev["Queue"]))
                q.service_level_s = int(ev.get("ServiceLevel", q.service_level_s) or 30)
            elif kind == "QueueMember":
                location = str(ev.get("Location", ""))
                number = agent_of(str(ev.get("Name", "")), location)
                agent = self.agent(number)
                agent.interface = str(ev.get("StateInterface") or location) or agent.interface
                agent.queues.add(str(ev["Queue"]))
                self._membership_from(agent, str(ev["Queue"]), ev)
                self.queue(str(ev["Queue"])).members.add(number)
                self._pause_from(agent, ev, now)
                state = DEVICE_STATE.get(str(ev.get("Status")), "unknown")
                if state != agent.state:
                    agent.state, agent.since = state, now
                if state not in ("busy", "ringing", "on_hold"):
                    agent.call_id = agent.call_since = None
            elif kind == "QueueEntry":
                channel = str(ev["Channel"])
                call_id = self.channel_call.get(channel, str(ev.get("Uniqueid", channel)))
                joined = now - float(ev.get("Wait", 0) or 0)
                self.queue(str(ev["Queue"])).callers[channel] = (call_id, joined)
                if call_id in self.calls:
                    self.calls[call_id].queue = str(ev["Queue"])
                    self.calls[call_id].joined_queue_at = joined
        for a in self.agents.values():
            if not a.queues and a.state != "offline":
                a.state, a.since, a.call_id = "offline", now, None
