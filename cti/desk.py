"""The agent desktop's back end: state control through AMI, wrap-up, dispositions.

The web layer calls :class:`AgentDesk`; nothing here decides what an agent's
state *is*.  A request (ready, pause with a reason, log out, log in) is sent to
Asterisk (``QueuePause``, ``QueueRemove``, ``QueueAdd``); what Asterisk then
reports (``QueueMemberPause``, ``QueueMemberStatus``, ``QueueMemberAdded``,
``QueueMemberRemoved``) flows through :mod:`cti.state` to the retained agent
state topic, so a reload, a second tab or a change made in the Asterisk CLI
shows the truth (docs/agent-desktop.md).

Wrap-up: after each call an agent took (``AgentComplete``; a callback they
talked on, when it hangs up) the desk pauses them in Asterisk with the reason
``Wrap-up`` for ``wrapup_s`` (per queue), then makes them ready, unless they
paused for something else meanwhile.  The timer follows Asterisk too: an agent
reported paused ``Wrap-up`` with no timer (the server restarted mid-wrap-up,
or someone paused them so in the CLI) gets a fresh ``wrapup_s`` from then; an
agent reported out of wrap-up loses their timer.

The pure decisions (:func:`wrapup_after_call`, :func:`ready_when_due`,
:class:`WrapupClock`, the ``check_*`` validators) are apart from the I/O, for
tests (tests/unit/test_agent_desk.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from sqlalchemy.exc import SQLAlchemyError

from cti.ami import AmiClient, AmiEvent
from cti.amiproto import Action
from cti.payloads import (
    AgentStatePayload,
    QueueStatsPayload,
    ScreenPopPayload,
    agent_state_payload,
    queue_stats_payload,
    timestamp,
)
from cti.service import CtiService
from cti.state import Agent, AgentCallDone, CallCenter
from hotline.config import WRAPUP_REASON, DeskConfig
from hotline.records.interactions import NOTE_MAX, InteractionStore

log = logging.getLogger("hotline.desk")

DeskState = Literal["ready", "pause", "logout", "login"]
DESK_STATES: tuple[DeskState, ...] = ("ready", "pause", "logout", "login")
_AGENT = re.compile(r"[A-Za-z0-9_.-]{1,32}")


# -- errors: what the web layer shows the agent ----------------------------------------


class DeskError(Exception):
    """A desk request was not carried out; the message says why, for the agent.

    ``status`` is the HTTP status a web route answers with (409: not now).
    """

    status = 409


class InvalidRequest(DeskError, ValueError):
    """The request itself is wrong (a state, a reason, a label, a note, seconds)."""

    status = 400


class InvalidReason(InvalidRequest):
    """A pause reason that is not configured (``[desk] pause_reasons``), or none."""


class InvalidDisposition(InvalidRequest):
    """A disposition not configured for the call's queue, or a note too long."""


class UnknownAgent(DeskError, LookupError):
    """No such agent: Asterisk has never reported them and no membership names them."""

    status = 404


class NotLoggedIn(DeskError):
    """The agent is in no queue: ready and pause need them logged in."""


class NoQueues(DeskError):
    """Log in: no queue to log the agent in to (no ``[desk] memberships`` entry)."""


class NotInWrapup(DeskError):
    """Finish or extend a wrap-up the agent is not in (as Asterisk reports them)."""


class UnknownCall(DeskError, LookupError):
    """Dispose: no interaction record for this call."""

    status = 404


class NotYourCall(DeskError):
    """Dispose: another agent took this call."""

    status = 403


class AsteriskUnavailable(DeskError):
    """No AMI connection, or Asterisk did not answer in time: nothing was changed."""

    status = 503


class AsteriskRefused(DeskError):
    """Asterisk answered the action with an error; ``reason`` is its message."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StaticMembership(AsteriskRefused):
    """Log out: a static member (``member =>`` in queues.conf) cannot be removed."""


class RecordsUnavailable(DeskError):
    """Dispose: the database failed; the disposition was not stored."""

    status = 503


# -- pure decisions ------------------------------------------------------------------


def check_agent(agent: str) -> str:
    if not isinstance(agent, str) or not _AGENT.fullmatch(agent):
        raise UnknownAgent(f"not an agent number: {agent!r}")
    return agent


def check_pause_reason(reason: str | None, allowed: Sequence[str]) -> str:
    """The configured reason ``reason`` names (case aside), or InvalidReason."""
    if not reason or not reason.strip():
        raise InvalidReason(f"a pause needs a reason: one of {', '.join(allowed)}")
    for label in allowed:
        if label.casefold() == reason.strip().casefold():
            return label
    raise InvalidReason(f"{reason!r} is not a pause reason: one of {', '.join(allowed)}")


def check_disposition(disposition: str, allowed: Sequence[str] | None, queue: str | None) -> str:
    """The configured label ``disposition`` names (case aside), or InvalidDisposition."""
    if not allowed:
        raise InvalidDisposition(f"no dispositions are configured for queue {queue or '(none)'}")
    wanted = disposition.strip().casefold() if isinstance(disposition, str) else ""
    for label in allowed:
        if label.casefold() == wanted:
            return label
    raise InvalidDisposition(
        f"{disposition!r} is not a disposition of queue {queue}: one of {', '.join(allowed)}"
    )


def check_note(note: str) -> str:
    """The note as stored: trimmed, at most ``NOTE_MAX`` characters, no NUL."""
    if not isinstance(note, str):
        raise InvalidDisposition("the note must be text")
    note = note.strip()
    if "\x00" in note:
        raise InvalidDisposition("the note holds a NUL character")
    if len(note) > NOTE_MAX:
        raise InvalidDisposition(f"the note is {len(note)} characters long: at most {NOTE_MAX}")
    return note


def wrapup_after_call(agent: Agent | None, seconds: float) -> bool:
    """Whether a call the agent just finished starts a wrap-up: not when wrap-up is
    off (0 s), not for an agent logged out, and not for one who paused for
    something else meanwhile (their pause stands: they wrap up within it)."""
    if agent is None or seconds <= 0 or not agent.queues:
        return False
    return not (agent.paused and not agent.in_wrapup)


def wrapup_running(agent: Agent | None) -> bool:
    """Asterisk has the agent, logged in, paused "Wrap-up": their timer should run."""
    return agent is not None and bool(agent.queues) and agent.in_wrapup


def ready_when_due(agent: Agent | None) -> bool:
    """At the end of a wrap-up: make the agent ready only if Asterisk still has them
    paused "Wrap-up" (not if they paused for another reason, are ready already or
    logged out)."""
    return wrapup_running(agent)


def wrapup_seconds(cfg: DeskConfig, queues: Sequence[str]) -> float:
    """The wrap-up of an agent in these queues: the longest of theirs."""
    return max((cfg.wrapup_for(q) for q in queues), default=cfg.wrapup_s)


class WrapupClock:
    """When each agent's wrap-up ends (epoch seconds).  Pure: the time is passed in."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self._until: dict[str, float] = {}

    def ends(self, agent: str) -> float | None:
        return self._until.get(agent)

    def start(self, agent: str, now: float, seconds: float) -> float:
        """A wrap-up of ``seconds`` (at most ``max_s``) from now."""
        return self.set(agent, now + min(max(seconds, 0.0), self.max_s))

    def set(self, agent: str, until: float) -> float:
        self._until[agent] = until
        return until

    def extend(self, agent: str, now: float, seconds: float) -> float:
        """Later by ``seconds``, never more than ``max_s`` after now."""
        if not isinstance(seconds, int | float) or not 0 < seconds <= self.max_s:
            raise InvalidRequest(f"extend by 1 to {self.max_s:.0f} seconds, not {seconds!r}")
        current = self._until.get(agent)
        if current is None:
            raise NotInWrapup(f"agent {agent} is not in wrap-up")
        until = min(max(current, now) + seconds, now + self.max_s)
        self._until[agent] = until
        return until

    def stop(self, agent: str) -> float | None:
        return self._until.pop(agent, None)


# -- what a page that reloads gets -------------------------------------------------------


class CurrentCall(TypedDict):
    call_id: str
    caller_number: str
    caller_name: str
    queue: str | None
    callback: bool
    since: str | None  # when the agent's phone began ringing for it


class ToDispose(TypedDict):
    """The last call the agent took, while they have not disposed it."""

    call_id: str
    queue: str
    ended_at: str


class DeskSnapshot(TypedDict):
    agent: str
    state: AgentStatePayload  # what the retained state topic holds now
    call: CurrentCall | None
    pop: ScreenPopPayload | None  # the last pop for the agent, while its call lives
    queues: list[QueueStatsPayload]  # the agent's queues, by name
    pause_reasons: list[str]
    dispositions: dict[str, list[str]]  # for the agent's queues
    to_dispose: ToDispose | None


@dataclass(slots=True)
class _Handled:
    """A call the desk saw popped to, or taken by, an agent."""

    agent: str
    queue: str
    interaction_id: str | None
    taken: bool = False  # the agent answered it (AgentComplete, a connected callback)


class AgentDesk:
    """What the agent desktop does, applied through Asterisk (see the module doc)."""

    ACTION_TIMEOUT_S = 5.0
    RETRY_S = 5.0  # a wrap-up end that could not be sent is tried again after this
    REMEMBER_CALLS = 2000

    def __init__(
        self,
        cfg: DeskConfig,
        state: CallCenter,
        ami: AmiClient,
        service: CtiService,
        interactions: InteractionStore,
    ) -> None:
        self.cfg = cfg
        self.state = state
        self.ami = ami
        self.service = service
        self.interactions = interactions
        self.clock = WrapupClock(cfg.max_wrapup_s)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._calls: OrderedDict[str, _Handled] = OrderedDict()
        self._last_pop: dict[str, ScreenPopPayload] = {}
        self._to_dispose: dict[str, ToDispose] = {}
        self._left_queues: dict[str, list[str]] = {}  # agent -> queues at their last logout
        self.wrapups_started = 0
        self.wrapups_ended = 0

    # -- the API ---------------------------------------------------------------------
    async def set_state(
        self,
        agent: str,
        state: Literal["ready", "pause", "logout", "login"],
        reason: str | None = None,
    ) -> None:
        """Ask Asterisk to make the agent ready, paused (``reason`` from
        ``[desk] pause_reasons``), logged out or logged in.  Returns once Asterisk
        accepted; the state shown comes back from its events."""
        check_agent(agent)
        if state not in DESK_STATES:
            raise InvalidRequest(f"not a desk state: {state!r} (one of {', '.join(DESK_STATES)})")
        if state == "login":
            await self._login(agent)
            return
        known = self._known(agent)
        if state == "logout":
            await self._logout(known)
            return
        if not known.queues:
            raise NotLoggedIn(f"agent {agent} is logged out: log in first")
        if state == "pause":
            label = check_pause_reason(reason, self.cfg.pause_reasons)
            await self._pause(known, True, label)
        else:
            await self._pause(known, False)

    async def finish_wrapup(self, agent: str) -> None:
        """End the agent's wrap-up now: ready in Asterisk."""
        known = self._known(check_agent(agent))
        if not known.in_wrapup:
            raise NotInWrapup(f"agent {agent} is not in wrap-up")
        await self._pause(known, False)
        self._disarm(agent)

    async def extend_wrapup(self, agent: str, seconds: float) -> None:
        """Make the wrap-up longer by ``seconds`` (at most ``max_wrapup_s`` from now).
        The new end is on the agent's state topic (``wrapup_until``) at once."""
        known = self._known(check_agent(agent))
        if not known.in_wrapup:
            raise NotInWrapup(f"agent {agent} is not in wrap-up")
        now = time.time()
        if self.clock.ends(agent) is None:  # a wrap-up with no end (wrap-up off): from now
            self.clock.set(agent, now)
        until = self.clock.extend(agent, now, seconds)
        self._arm(agent, until)
        self.service.set_wrapup(agent, until)

    async def dispose(self, agent: str, call_id: str, disposition: str, note: str = "") -> None:
        """Record the call's disposition (a label configured for its queue) and a note
        on its interaction record: ``hotline calls show`` and later pops show them."""
        check_agent(agent)
        note = check_note(note)
        if not isinstance(call_id, str) or not call_id or len(call_id) > 64:
            raise UnknownCall(f"not a call id: {call_id!r}")
        handled = self._calls.get(call_id)
        live = self.state.calls.get(call_id)
        owner = (handled.agent if handled and handled.taken else None) or (
            live.answered_by if live else None
        )
        if owner is not None and owner != agent:
            raise NotYourCall(f"call {call_id} was taken by agent {owner}")
        try:
            key = handled.interaction_id if handled and handled.interaction_id else call_id
            record = await self.interactions.get(key)
            if record is None and key != call_id:
                record = await self.interactions.get(call_id)
            if record is None:
                raise UnknownCall(f"no interaction record for call {call_id}")
            queue = handled.queue if handled and handled.queue else record.queue
            label = check_disposition(disposition, self.cfg.dispositions.get(queue or ""), queue)
            stored = await self.interactions.dispose(record.id, label, note, agent)
        except (SQLAlchemyError, OSError) as e:
            log.exception("storing a disposition failed")
            raise RecordsUnavailable(f"the disposition was not stored: {e}") from e
        if stored is None:
            raise UnknownCall(f"no interaction record for call {call_id}")
        pending = self._to_dispose.get(agent)
        if pending is not None and pending["call_id"] == call_id:
            del self._to_dispose[agent]
        log.info(
            "call disposed",
            extra={"agent": agent, "call": call_id, "disposition": label, "queue": queue},
        )

    def snapshot(self, agent: str) -> DeskSnapshot:
        """The agent's state, current call and pop, queues and what they may choose:
        all a page that reloads mid-call needs to show the truth at once."""
        known = self._known(check_agent(agent))
        now = time.time()
        call: CurrentCall | None = None
        live = self.state.calls.get(known.call_id) if known.call_id else None
        if live is not None:
            call = {
                "call_id": live.call_id,
                "caller_number": live.caller_number,
                "caller_name": live.caller_name,
                "queue": live.queue,
                "callback": live.callback,
                "since": timestamp(known.call_since) if known.call_since else None,
            }
        pop = self._last_pop.get(agent)
        if pop is not None and not self.state.call_live(pop["call_id"]):
            pop = None
        queues = sorted(known.queues)
        return {
            "agent": agent,
            "state": agent_state_payload(known),
            "call": call,
            "pop": pop,
            "queues": [queue_stats_payload(self.state.queue_stats(q, now), now) for q in queues],
            "pause_reasons": list(self.cfg.pause_reasons),
            "dispositions": {
                q: list(self.cfg.dispositions[q]) for q in queues if q in self.cfg.dispositions
            },
            "to_dispose": self._to_dispose.get(agent),
        }

    # -- what the CTI service tells the desk (subscribed in cti/setup.py) -------------
    def on_pop(self, pop: ScreenPopPayload) -> None:
        ivr = pop["ivr"]
        handled = _Handled(pop["agent"], pop["queue"], ivr["interaction_id"] if ivr else None)
        # The pop's look-ups run beside the events: the call may be over already.
        known = self._calls.get(pop["call_id"])
        handled.taken = known is not None and known.taken and known.agent == handled.agent
        self._remember(pop["call_id"], handled)
        self._last_pop[pop["agent"]] = pop

    def on_call_done(self, done: AgentCallDone) -> None:
        """An agent finished a call they took: remember it for the disposition, and
        start their wrap-up unless it is off or they paused for something else."""
        handled = self._calls.get(done.call_id)
        if handled is None or handled.agent != done.agent:
            handled = _Handled(done.agent, done.queue, handled.interaction_id if handled else None)
        handled.taken = True
        handled.queue = handled.queue or done.queue
        self._remember(done.call_id, handled)
        self._to_dispose[done.agent] = {
            "call_id": done.call_id,
            "queue": handled.queue,
            "ended_at": timestamp(time.time()),
        }
        agent = self.state.agents.get(done.agent)
        seconds = self.cfg.wrapup_for(done.queue or None)
        if not wrapup_after_call(agent, seconds):
            return
        assert agent is not None
        until = time.time() + min(seconds, self.cfg.max_wrapup_s)
        if wrapup_running(agent):  # in wrap-up already: it starts again
            self._arm(done.agent, until)
            self.service.set_wrapup(done.agent, until)
            return
        # The agent's state takes this end when Asterisk reports the pause.
        self.state.expected_wrapups[done.agent] = until
        self._spawn(self._begin_wrapup(agent, until))

    def on_agent_changed(self, number: str) -> None:
        """Asterisk reported the agent (an event, or a rebuild after a (re)connect):
        the wrap-up timer follows what it says."""
        agent = self.state.agents.get(number)
        if not wrapup_running(agent):
            if number in self._timers or self.clock.ends(number) is not None:
                self._disarm(number)
            return
        assert agent is not None
        if number in self._timers:
            return
        until = agent.wrapup_until
        if until is None:
            # In wrap-up with no timer: the server restarted mid-wrap-up, or the
            # pause was set in the CLI.  A fresh wrap-up from now; with wrap-up
            # off (0 s) the agent ends it themselves.
            seconds = wrapup_seconds(self.cfg, sorted(agent.queues))
            if seconds <= 0:
                return
            until = time.time() + min(seconds, self.cfg.max_wrapup_s)
        self._arm(number, until)
        self.service.set_wrapup(number, until)

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- wrap-up ------------------------------------------------------------------------
    async def _begin_wrapup(self, agent: Agent, until: float) -> None:
        try:
            await self._pause(agent, True, WRAPUP_REASON)
        except DeskError as e:
            self.state.expected_wrapups.pop(agent.number, None)
            log.warning("wrap-up not started for agent %s: %s", agent.number, e)
            return
        self.wrapups_started += 1
        log.info("wrap-up started", extra={"agent": agent.number, "until": until})

    def _arm(self, agent: str, until: float) -> None:
        old = self._timers.pop(agent, None)
        if old is not None:
            old.cancel()
        self.clock.set(agent, until)
        delay = max(0.0, until - time.time())
        self._timers[agent] = asyncio.get_running_loop().call_later(delay, self._due, agent)

    def _disarm(self, agent: str) -> None:
        handle = self._timers.pop(agent, None)
        if handle is not None:
            handle.cancel()
        self.clock.stop(agent)
        self.service.set_wrapup(agent, None)

    def _due(self, agent: str) -> None:
        self._timers.pop(agent, None)
        self._spawn(self._end_wrapup(agent))

    async def _end_wrapup(self, number: str) -> None:
        agent = self.state.agents.get(number)
        if not ready_when_due(agent):
            self._disarm(number)
            return
        assert agent is not None
        try:
            await self._pause(agent, False)
        except DeskError as e:
            log.warning("wrap-up end for agent %s failed (%s); trying again", number, e)
            if number not in self._timers:  # not extended meanwhile
                self._arm(number, time.time() + self.RETRY_S)
            return
        self.wrapups_ended += 1
        log.info("wrap-up over: agent ready", extra={"agent": number})

    # -- AMI ----------------------------------------------------------------------------
    def _interface(self, agent: Agent | str) -> str:
        if isinstance(agent, Agent) and agent.interface:
            return agent.interface
        number = agent.number if isinstance(agent, Agent) else agent
        return self.cfg.interface.format(agent=number)

    async def _pause(self, agent: Agent, paused: bool, reason: str = "") -> None:
        # No Queue: Asterisk pauses (or unpauses) the member in all its queues.
        action: dict[str, str] = {
            "Action": "QueuePause",
            "Interface": self._interface(agent),
            "Paused": "true" if paused else "false",
        }
        if paused:
            action["Reason"] = reason
        await self._act(action)

    async def _logout(self, agent: Agent) -> None:
        queues = sorted(agent.queues)
        if not queues:
            return  # already logged out
        static = sorted(agent.static_queues & agent.queues)
        if static:
            raise StaticMembership(
                f"agent {agent.number} is a static member of {', '.join(static)} "
                "(queues.conf member =>): Asterisk cannot log them out; pause instead",
                "Member not dynamic",
            )
        interface = self._interface(agent)
        self._left_queues[agent.number] = queues
        for queue in queues:
            try:
                await self._act({"Action": "QueueRemove", "Queue": queue, "Interface": interface})
            except AsteriskRefused as e:
                if "Not there" in e.reason:
                    continue  # gone already: what was asked
                if "not dynamic" in e.reason:
                    raise StaticMembership(
                        f"agent {agent.number} is a static member of {queue} "
                        "(queues.conf member =>): Asterisk cannot log them out; pause instead",
                        e.reason,
                    ) from e
                raise

    async def _login(self, number: str) -> None:
        agent = self.state.agents.get(number)
        queues = self.cfg.memberships.get(number) or self._left_queues.get(number)
        if agent is None and not queues:
            raise UnknownAgent(f"agent {number} is not known to Asterisk or [desk] memberships")
        if not queues:
            raise NoQueues(f"no queue to log agent {number} in to: set [desk] memberships")
        interface = self._interface(agent or number)
        for queue in queues:
            if agent is not None and queue in agent.queues:
                continue
            try:
                await self._act(
                    {
                        "Action": "QueueAdd",
                        "Queue": queue,
                        "Interface": interface,
                        "MemberName": number,
                        "StateInterface": interface,
                        "Paused": "false",
                    }
                )
            except AsteriskRefused as e:
                if "Already there" not in e.reason:
                    raise

    async def _act(self, action: Action) -> AmiEvent:
        name = str(action.get("Action"))
        try:
            reply = await self.ami.action(action, timeout=self.ACTION_TIMEOUT_S)
        except (TimeoutError, OSError) as e:  # AmiDisconnected is both
            raise AsteriskUnavailable(f"Asterisk did not take {name}: {e or 'no answer'}") from e
        first = reply[0] if reply else {}
        if first.get("Response") != "Success":
            reason = str(first.get("Message") or "no reason given")
            raise AsteriskRefused(f"Asterisk refused {name}: {reason}", reason)
        return first

    # -- bookkeeping ---------------------------------------------------------------------
    def _known(self, number: str) -> Agent:
        agent = self.state.agents.get(number)
        if agent is None:
            raise UnknownAgent(f"agent {number} is not known to Asterisk")
        return agent

    def _remember(self, call_id: str, handled: _Handled) -> None:
        self._calls[call_id] = handled
        self._calls.move_to_end(call_id)
        while len(self._calls) > self.REMEMBER_CALLS:
            self._calls.popitem(last=False)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
