"""Runs a call through a flow over AGI.

One :class:`CallSession` per call.  Whatever happens inside a flow, the
caller ends with a person or with a flow that finished their business: an
exception in a node sends them to an agent with everything collected so far;
only their own hangup ends the call early (outcome ``abandoned``).

The session walks the flow and offers nodes what they share (prompts,
placeholders, speech capture, the hand-off); what each node type does is
its ``run`` in :mod:`ivr.flow.nodes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hotline.contracts import ChannelVar
from hotline.logs import call_id_var
from hotline.records.customers import Customer
from hotline.records.interactions import Interaction, utcnow
from ivr.agi import DIGITS, AgiChannel, AgiCommandFailed, AgiError, AgiHangup
from ivr.flow.cards import expiry_ok, luhn_ok, mask
from ivr.flow.condition import Condition
from ivr.flow.flow import Flow
from ivr.flow.node import Handoff, Step
from ivr.flow.placeholders import Resolver, Scope, spoken_amount, spoken_date
from ivr.flow.prompt import Prompt
from ivr.flow.services import Services
from ivr.flow.session import Session
from ivr.speech import Recognition, SpeechUnavailable

__all__ = [
    "BUILTIN",
    "MAX_STEPS",
    "CallRouter",
    "CallSession",
    "Handoff",
    "Services",
    "expiry_ok",
    "luhn_ok",
    "mask",
]

log = logging.getLogger("hotline.ivr")

MAX_STEPS = 200

# What the engine says on its own, per language (a flow can override per menu).
BUILTIN = {
    "no_input": {"en": "Sorry, I did not hear a choice.", "ko": "선택을 듣지 못했습니다."},
    "invalid": {"en": "Sorry, that is not one of the choices.", "ko": "잘못된 선택입니다."},
    "to_agent": {
        "en": "Please hold, an agent will be with you shortly.",
        "ko": "잠시만 기다려 주십시오. 상담원을 연결해 드리겠습니다.",
    },
    "bad_digits": {"en": "Sorry, that number is not valid.", "ko": "번호가 올바르지 않습니다."},
    "not_verified": {
        "en": "Sorry, that does not match our records.",
        "ko": "입력하신 정보가 고객 정보와 일치하지 않습니다.",
    },
    "link_limit": {
        "en": "Sorry, we cannot send more links to this number for now. Please hold for an agent.",
        "ko": "죄송합니다. 지금은 이 번호로 링크를 더 보내 드릴 수 없습니다. "
        "상담원을 기다려 주세요.",
    },
    "callback_limit": {
        "en": "Sorry, we cannot book more callbacks for this number for now. "
        "Please hold for an agent.",
        "ko": "죄송합니다. 지금은 이 번호로 콜백을 더 예약할 수 없습니다. 상담원을 기다려 주세요.",
    },
}

# Earlier names, for code written against them.
_Handoff = Handoff
_Resolver = Resolver


class CallSession:
    def __init__(
        self,
        channel: AgiChannel,
        flow: Flow,
        services: Services,
        call_id: str,
        caller_lookup: asyncio.Task[Customer | None] | None = None,
    ) -> None:
        self._caller_lookup = caller_lookup
        # {queue.wait_minutes} for prompts, once a deflect node has an estimate.
        self.queue_info: dict[str, int] = {}
        self.channel = channel
        self.flow = flow
        self.services = services
        self.customer: Customer | None = None
        self.language = flow.default_language
        self.vars: dict[str, str] = {}
        self.secrets: dict[str, str] = {}  # sensitive inputs: memory only, never stored
        self.pending_digit: str | None = None
        # Who the caller proved to be (verify steps), and their wrong tries by method.
        self.verified_as: int | None = None
        self.verify_tries: dict[str, int] = {}
        self._stack: list[tuple[Flow, str]] = []
        self._t0 = time.monotonic()
        self.interaction = Interaction(
            id=uuid.uuid4().hex,
            call_id=call_id,
            flow=flow.name,
            caller_number=channel.caller_number,
            caller_name=channel.caller_name,
            channel=channel.channel,
            language=self.language,
        )

    # -- running ------------------------------------------------------------------
    async def run(self) -> None:
        # The first write (a trace even if this server dies mid-call) is queued
        # and goes out beside the greeting instead of delaying it.
        await self.services.interactions.save(self.interaction, wait=False)
        try:
            await self._walk()
        except Handoff as h:
            await self._to_queue(h.queue, h.priority, "queued")
        except AgiHangup:
            if self.interaction.outcome == "in_progress":
                self.interaction.outcome = "abandoned"
            log.info("caller hung up", extra={"node": self._current_node()})
        except Exception as e:
            log.exception(
                "flow failed; sending caller to an agent", extra={"node": self._current_node()}
            )
            self.interaction.error = f"{type(e).__name__}: {e}"
            try:
                await self._to_queue(self.agent_queue(None), 0, "error")
            except AgiError:
                # The dialplan queues the caller anyway when HOTLINE_QUEUE is unset.
                self.interaction.outcome = "error"
        finally:
            # A lookup the call no longer needs is left to finish (it is quick):
            # cancelling it mid-connect would strand the directory's connection.
            self.interaction.ended_at = utcnow()
            # Queued, not awaited: the dialplan takes the caller to the queue at
            # once; the screen pop reads this snapshot from the store's memory,
            # and the row is committed within the store's linger time.
            await self.services.interactions.save(self.interaction, wait=False)

    def _current_node(self) -> str | None:
        steps = self.interaction.steps
        return steps[-1]["node"] if steps else None

    async def _walk(self) -> None:
        node_id: str | None = self.flow.start
        for _ in range(MAX_STEPS):
            if node_id is None:
                return
            node = self.flow.nodes[node_id]
            step: Step = {
                "node": node.id,
                "type": type(node).__name__.lower(),
                "at_ms": round((time.monotonic() - self._t0) * 1000),
            }
            self.interaction.steps.append(step)
            t = time.monotonic()
            try:
                node_id = await node.run(self, step)
            finally:
                step["ms"] = round((time.monotonic() - t) * 1000)
        raise RuntimeError(f"flow {self.flow.name} ran {MAX_STEPS} steps without ending (a loop?)")

    # -- sub-flows ----------------------------------------------------------------------
    def enter_subflow(self, name: str, then: str) -> str:
        """Run flow ``name`` from its start; its ``return`` comes back to ``then``."""
        self._stack.append((self.flow, then))
        self.flow = self.services.flows[name]
        return self.flow.start

    def leave_subflow(self) -> str:
        if not self._stack:
            raise RuntimeError("return outside a sub-flow")
        self.flow, then = self._stack.pop()
        return then

    # -- prompts --------------------------------------------------------------------
    def scope(self) -> Scope:
        """What placeholders and conditions read (docs/flows.md, Placeholders)."""
        customer: dict[str, Any] | None = None
        if self.customer is not None:
            c = self.customer
            customer = c.profile()
            customer["balance_spoken"] = spoken_amount(c.balance_cents)
            customer["bill_due_spoken"] = spoken_date(c.bill_due_date, self.language)
        return {
            "customer": customer,
            "caller": {"number": self.channel.caller_number, "name": self.channel.caller_name},
            "vars": self.vars,
            "call": {"language": self.language, "id": self.interaction.call_id},
            "open": self.open_now(),
            "queue": self.queue_info,
            # The caller proved to be the customer the flow is talking about.
            "verified": self.customer is not None and self.verified_as == self.customer.id,
            # The link being sent by text message (a deflect step): its token.
            "link": {"token": self.interaction.link_token or ""},
        }

    def open_now(self) -> bool:
        hours = self.flow.hours
        if hours is None:
            return True
        now = datetime.now(ZoneInfo(hours.timezone))
        minute = now.hour * 60 + now.minute
        return any(a <= minute < b for a, b in hours.spans.get(now.weekday(), ()))

    def holds(self, cond: Condition) -> bool:
        r = Resolver(self.scope())
        for cl in cond.clauses:
            v = r.lookup(cl.path)
            if cl.op == "truthy":
                ok = bool(v)
            elif cl.op in ("==", "!="):
                ok = (v == cl.literal) == (cl.op == "==")
            else:
                try:
                    ok = {
                        "<": v < cl.literal,
                        "<=": v <= cl.literal,
                        ">": v > cl.literal,
                        ">=": v >= cl.literal,
                    }[cl.op]
                except TypeError:
                    ok = False
            if ok == cl.negate:
                return False
        return True

    async def paths(self, prompt: Prompt) -> list[str]:
        scope = self.scope()
        out = []
        for part in prompt.parts:
            lang = part.speak_in or self.language
            if lang in part.file:
                out.append(self.services.prompts.file_path(part.file[lang]))
            elif lang in part.text:
                text = Resolver(scope).format(part.text[lang])
                out.append(await self.services.prompts.ensure(text, lang))
        return out

    async def play(self, prompt: Prompt, escape: str) -> str | None:
        """Play every part; stop at the first escape digit pressed."""
        for path in await self.paths(prompt):
            try:
                digit = await self.channel.stream_file(path, escape)
            except AgiCommandFailed as e:
                # A missing file must not end the call: log it and go on.
                log.error("prompt could not be played: %s", e)
                continue
            if digit:
                return digit
        return None

    async def play_interruptible(self, prompt: Prompt) -> None:
        """Greeting-style prompts: a key pressed here counts for the next menu."""
        if self.pending_digit is None:
            self.pending_digit = await self.play(prompt, DIGITS)

    async def say_builtin(self, name: str, escape: str = "") -> str | None:
        texts = BUILTIN[name]
        lang = self.language if self.language in texts else "en"
        path = await self.services.prompts.ensure(texts[lang], lang)
        try:
            return await self.channel.stream_file(path, escape)
        except AgiCommandFailed as e:
            log.error("prompt could not be played: %s", e)
            return None

    # -- what nodes share ----------------------------------------------------------------
    def agent_queue(self, node_queue: str | None) -> str:
        return node_queue or self.flow.agent_queue or self.services.fallback_queue

    def record_input(self, name: str, value: str, sensitive: bool = False) -> None:
        self.interaction.inputs[name] = mask(value) if sensitive else value

    def set_language(self, language: str) -> None:
        self.language = language
        self.interaction.language = language

    async def caller_customer(self) -> Customer | None:
        """The customer calling (by caller ID): the router's early lookup, else asked now."""
        prefetched, self._caller_lookup = self._caller_lookup, None
        if prefetched is not None:
            return await prefetched
        return await self.services.directory.by_phone(self.channel.caller_number)

    # -- speech capture -------------------------------------------------------------------
    def can_listen(self, wanted: bool) -> bool:
        """Whether a speech menu (``wanted``) can listen in the caller's language now."""
        speech = self.services.speech
        if not wanted or speech is None:
            return False
        if not speech.available(self.language):
            # Callers are not told; DTMF carries on.  The admin is told once.
            speech.warn_once(
                self.language,
                "speech menu without a model for this language: DTMF only (hotline models list)",
            )
            return False
        return True

    async def record_and_recognise(
        self,
        keys: str,
        timeout_s: float,
        *,
        silence_s: int,
        phrases: list[str] | None,
        key_is_choice: bool,
    ) -> tuple[str | None, Recognition | None]:
        """RECORD FILE into the folder Asterisk shares with us, recognise, delete.

        Returns the key that ended the recording when ``key_is_choice`` (a menu
        choice: nothing to recognise), else what was heard (None: silence, or
        no model).  ``phrases`` None decodes free-form.
        """
        speech = self.services.speech
        assert speech is not None
        name = uuid.uuid4().hex
        host_file = self.services.asr_host / f"{name}.wav"
        try:
            reply = await self.channel.record_file(
                f"{self.services.asr_asterisk}/{name}",
                "wav",
                keys,
                int(timeout_s * 1000),
                silence_s=silence_s,
            )
            if key_is_choice and reply.data == "dtmf" and reply.value > 0:
                return chr(reply.value), None
            if not await asyncio.to_thread(host_file.exists):
                return None, None
            try:
                return None, await speech.recognize_file(host_file, self.language, phrases)
            except SpeechUnavailable as e:
                speech.warn_once(self.language, str(e))
                return None, None
        finally:
            # The caller's voice is personal data: keep the transcript, not the audio.
            await asyncio.to_thread(host_file.unlink, True)

    async def host_paths(self, prompt: Prompt) -> list[Path]:
        """Prompt parts as files on this host (for streaming them ourselves)."""
        scope = self.scope()
        prompts = self.services.prompts
        out = []
        for part in prompt.parts:
            lang = part.speak_in or self.language
            if lang in part.file:
                out.append(prompts.host_dir / f"{part.file[lang]}.wav")
            elif lang in part.text:
                text = Resolver(scope).format(part.text[lang])
                await prompts.ensure(text, lang)
                out.append(prompts.host_path(text, lang))
        return out

    # -- hand-off ----------------------------------------------------------------------
    async def _to_queue(self, queue: str, priority: int, outcome: str) -> None:
        """Hand the caller to a queue with everything the IVR learned."""
        it = self.interaction
        it.queue = queue
        it.outcome = outcome  # type: ignore[assignment]
        # Set first what the dialplan needs to queue the caller, then the extras.
        await self.channel.set_variable(ChannelVar.QUEUE, queue)
        await self.channel.set_variable(ChannelVar.PRIORITY, str(priority))
        await self.channel.set_variable(ChannelVar.INTERACTION, it.id)
        await self.channel.set_variable(ChannelVar.INTENT, it.intent or "")
        await self.channel.set_variable(ChannelVar.LANGUAGE, self.language)
        await self.channel.set_variable(
            ChannelVar.CUSTOMER, str(self.customer.id) if self.customer else ""
        )
        log.info("caller handed to queue", extra={"queue": queue, "outcome": outcome})


def _is_a_session(session: CallSession) -> Session:
    """Never called: mypy checks here that ``CallSession`` is a ``Session``.

    Nodes and actions are typed against the :class:`~ivr.flow.session.Session`
    protocol, not this class, so nothing else would notice a member they use
    going missing or changing type here until a call failed.
    """
    return session


_lookups: set[asyncio.Task[Customer | None]] = set()


@dataclass
class CallRouter:
    """The FastAGI handler: picks the flow by the AGI path and runs the call."""

    services: Services
    sessions: dict[str, CallSession] = field(default_factory=dict)

    async def __call__(self, channel: AgiChannel) -> None:
        flow = self.services.flows.get(channel.script)
        if flow is None:
            log.error("no flow for FastAGI path %r: caller sent to an agent", channel.script)
            await channel.set_variable(ChannelVar.QUEUE, self.services.fallback_queue)
            return
        # Who is calling is asked while Asterisk answers our first command: the
        # lookup's database round trip then costs the caller nothing.
        caller: asyncio.Task[Customer | None] | None = None
        if flow.looks_up_caller:
            caller = asyncio.create_task(self.services.directory.by_phone(channel.caller_number))
            # A failure is raised where the flow awaits it; if it never does, it is
            # dropped.  Held here until done: the loop keeps only weak references.
            _lookups.add(caller)
            caller.add_done_callback(_lookups.discard)
            caller.add_done_callback(lambda t: t.cancelled() or t.exception())
        # The demo dialplan passes the linkedid as an AGI argument; other dialplans
        # make us ask for it (one more round trip before the greeting).
        call_id = (
            channel.argument("linkedid")
            or await channel.get_full_variable("${CHANNEL(linkedid)}")
            or channel.uniqueid
        )
        call_id_var.set(call_id)
        session = CallSession(channel, flow, self.services, call_id, caller)
        self.sessions[session.interaction.id] = session
        try:
            await session.run()
        finally:
            del self.sessions[session.interaction.id]
