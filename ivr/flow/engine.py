"""Runs a call through a flow over AGI.

One :class:`CallSession` per call.  Whatever happens inside a flow, the
caller ends with a person or with a flow that finished their business: an
exception in a node sends them to an agent with everything collected so far;
only their own hangup ends the call early (outcome ``abandoned``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import string
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hotline.contracts import ChannelVar
from hotline.deflection.callbacks import (
    DEFAULT_NUMBER_PATTERN,
    CallbackStore,
    InvalidNumber,
    dialable,
)
from hotline.deflection.notify import LinkMessage, Notifier, NotifyError
from hotline.erlang_c import WaitEstimate, spoken_minutes
from hotline.logs import call_id_var
from hotline.records.customers import Customer, CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore, utcnow
from ivr.agi import DIGITS, AgiChannel, AgiCommandFailed, AgiError, AgiHangup
from ivr.audiosocket import AudioSocketServer, StreamingListener, read_pcm
from ivr.flow import model as m
from ivr.prompts import PromptCache
from ivr.speech import (
    MenuGrammar,
    Recognition,
    SpeechRecognizer,
    SpeechUnavailable,
    match_option,
)

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
}


@dataclass
class Services:
    prompts: PromptCache
    directory: CustomerDirectory
    interactions: InteractionStore
    flows: dict[str, m.Flow]
    fallback_queue: str = "support"
    speech: SpeechRecognizer | None = None
    # Where caller utterances are recorded: as Hotline and as Asterisk see it.
    asr_host: Path = Path("recordings/asr")
    asr_asterisk: str = "/srv/hotline/recordings/asr"
    min_confidence: float = 0.5
    # "record": RECORD FILE then recognise; "stream": AudioSocket, recognised live.
    speech_mode: str = "record"
    audiosocket: AudioSocketServer | None = None
    # Streaming: quiet that ends an utterance naming an option whole / otherwise.
    complete_timeout_s: float = StreamingListener.EARLY_S
    incomplete_timeout_s: float = StreamingListener.HANGOVER_S
    # Deflection (docs/deflection.md).  All optional: without an estimate the
    # flow queues the caller as if the wait were short.
    wait_estimate: Callable[[str], WaitEstimate | None] | None = None
    callbacks: CallbackStore | None = None
    notifier: Notifier | None = None
    notify_timeout_s: float = 8.0
    # Numbers a link may be sent to ([deflection] number_pattern; bookings are
    # checked by the callback store against the same pattern).
    number_pattern: str = DEFAULT_NUMBER_PATTERN
    # (queue, what): "offered", "declined", "link_sent", "link_failed", "callback_booked".
    on_deflection: Callable[[str, str], None] | None = None
    on_callback_booked: Callable[[], None] | None = None


class _Handoff(Exception):
    """Leave the flow for a queue."""

    def __init__(self, queue: str, priority: int = 0, reason: str = "") -> None:
        self.queue, self.priority, self.reason = queue, priority, reason


def luhn_ok(digits: str) -> bool:
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def expiry_ok(digits: str, today: date | None = None) -> bool:
    """MMYY, this month or later."""
    if len(digits) != 4 or not digits.isdigit():
        return False
    month, year = int(digits[:2]), 2000 + int(digits[2:])
    today = today or date.today()
    return 1 <= month <= 12 and (year, month) >= (today.year, today.month)


def mask(digits: str) -> str:
    """What a sensitive input looks like in records: at most the last four digits."""
    if len(digits) >= 12:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "*" * len(digits)


class _Resolver(string.Formatter):
    """``{customer.first_name}`` over plain dicts, for prompts and conditions."""

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return self.lookup(field_name), field_name

    def lookup(self, path: str) -> Any:
        cur: Any = self.scope
        for part in path.split("."):
            if isinstance(cur, Mapping):
                cur = cur.get(part)
            else:
                return None
            if cur is None:
                return None
        return cur


def _spoken_amount(cents: int) -> str:
    return f"{cents // 100}" if cents % 100 == 0 else f"{cents // 100}.{cents % 100:02d}"


def _spoken_date(d: date | None, language: str) -> str:
    if d is None:
        return ""
    if language == "ko":
        return f"{d.month}월 {d.day}일"
    return f"{d.strftime('%B')} {d.day}"


class CallSession:
    def __init__(
        self,
        channel: AgiChannel,
        flow: m.Flow,
        services: Services,
        call_id: str,
        caller_lookup: asyncio.Task[Customer | None] | None = None,
    ) -> None:
        self._caller_lookup = caller_lookup
        self._queue_info: dict[str, Any] = {}
        self.channel = channel
        self.flow = flow
        self.services = services
        self.customer: Customer | None = None
        self.language = flow.default_language
        self.vars: dict[str, str] = {}
        self._secrets: dict[str, str] = {}  # sensitive inputs: memory only, never stored
        self.pending_digit: str | None = None
        self._stack: list[tuple[m.Flow, str]] = []
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
        except _Handoff as h:
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
                await self._to_queue(self._agent_queue(None), 0, "error")
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
            step: dict[str, Any] = {
                "node": node.id,
                "type": type(node).__name__.lower(),
                "at_ms": round((time.monotonic() - self._t0) * 1000),
            }
            self.interaction.steps.append(step)
            t = time.monotonic()
            try:
                node_id = await self._visit(node, step)
            finally:
                step["ms"] = round((time.monotonic() - t) * 1000)
        raise RuntimeError(f"flow {self.flow.name} ran {MAX_STEPS} steps without ending (a loop?)")

    async def _visit(self, node: m.AnyNode, step: dict[str, Any]) -> str | None:
        match node:
            case m.Say():
                await self._play_interruptible(node.prompt)
                return node.next
            case m.Menu():
                return await self._menu(node, step)
            case m.Collect():
                return await self._collect(node, step)
            case m.Lookup():
                return await self._lookup(node, step)
            case m.Branch():
                for case in node.cases:
                    if self._holds(case.condition):
                        step["result"] = case.condition.source
                        return case.goto
                step["result"] = "else"
                return node.otherwise
            case m.SetVars():
                scope = self._scope()
                for k, v in node.values.items():
                    self.vars[k] = _Resolver(scope).format(v)
                return node.next
            case m.Queue():
                if node.intent:
                    self.interaction.intent = node.intent
                await self._play(node.prompt, "")
                raise _Handoff(node.queue, node.priority)
            case m.Deflect():
                return await self._deflect(node, step)
            case m.Hangup():
                await self._play(node.prompt, "")
                self.interaction.outcome = "self_served"
                await self.channel.hangup()
                return None
            case m.Goto():
                return node.target
            case m.SubFlow():
                self._stack.append((self.flow, node.next))
                self.flow = self.services.flows[node.flow]
                return self.flow.start
            case m.Return():
                if not self._stack:
                    raise RuntimeError("return outside a sub-flow")
                self.flow, nxt = self._stack.pop()
                return nxt
            case m.Action():
                return await self._action(node, step)
            case m.Listen():
                return await self._listen_free(node, step)
        raise RuntimeError(f"unhandled node {node!r}")

    # -- prompts --------------------------------------------------------------------
    def _scope(self) -> dict[str, Any]:
        customer: dict[str, Any] | None = None
        if self.customer is not None:
            c = self.customer
            customer = c.profile()
            customer["balance_spoken"] = _spoken_amount(c.balance_cents)
            customer["bill_due_spoken"] = _spoken_date(c.bill_due_date, self.language)
        return {
            "customer": customer,
            "caller": {"number": self.channel.caller_number, "name": self.channel.caller_name},
            "vars": self.vars,
            "call": {"language": self.language, "id": self.interaction.call_id},
            "open": self._open_now(),
            "queue": self._queue_info,
        }

    def _open_now(self) -> bool:
        hours = self.flow.hours
        if hours is None:
            return True
        now = datetime.now(ZoneInfo(hours.timezone))
        minute = now.hour * 60 + now.minute
        return any(a <= minute < b for a, b in hours.spans.get(now.weekday(), ()))

    def _holds(self, cond: m.Condition) -> bool:
        r = _Resolver(self._scope())
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

    async def _paths(self, prompt: m.Prompt) -> list[str]:
        scope = self._scope()
        out = []
        for part in prompt.parts:
            lang = part.speak_in or self.language
            if lang in part.file:
                out.append(self.services.prompts.file_path(part.file[lang]))
            elif lang in part.text:
                text = _Resolver(scope).format(part.text[lang])
                out.append(await self.services.prompts.ensure(text, lang))
        return out

    async def _play(self, prompt: m.Prompt, escape: str) -> str | None:
        """Play every part; stop at the first escape digit pressed."""
        for path in await self._paths(prompt):
            try:
                digit = await self.channel.stream_file(path, escape)
            except AgiCommandFailed as e:
                # A missing file must not end the call: log it and go on.
                log.error("prompt could not be played: %s", e)
                continue
            if digit:
                return digit
        return None

    async def _play_interruptible(self, prompt: m.Prompt) -> None:
        """Greeting-style prompts: a key pressed here counts for the next menu."""
        if self.pending_digit is None:
            self.pending_digit = await self._play(prompt, DIGITS)

    async def _say_builtin(self, name: str, escape: str = "") -> str | None:
        texts = BUILTIN[name]
        lang = self.language if self.language in texts else "en"
        path = await self.services.prompts.ensure(texts[lang], lang)
        try:
            return await self.channel.stream_file(path, escape)
        except AgiCommandFailed as e:
            log.error("prompt could not be played: %s", e)
            return None

    # -- nodes ------------------------------------------------------------------------
    def _agent_queue(self, node_queue: str | None) -> str:
        return node_queue or self.flow.agent_queue or self.services.fallback_queue

    async def _menu(self, node: m.Menu, step: dict[str, Any]) -> str:
        keys = "".join(o.key for o in node.options)
        if "0" not in keys:
            keys += "0"  # 0 always reaches an agent
        tries: list[str] = []
        step["tries"] = tries
        if node.intent:
            self.interaction.intent = node.intent
        for attempt in range(node.retries):
            digit, self.pending_digit = self.pending_digit, None
            # Speech on every try but the last: the last try is DTMF only, so a
            # caller the recogniser cannot understand still gets through.
            listen = attempt < node.retries - 1 and self._can_listen(node)
            streaming = listen and self.services.speech_mode == "stream"
            if digit is None and not streaming:
                digit = await self._play(node.prompt, keys)
            if digit is None and listen:
                digit, heard = await (
                    self._listen_stream(node, keys) if streaming else self._listen(node, keys)
                )
                if digit is None and heard is not None and heard.text:
                    digit = self._understood(node, heard, step)
                    if digit is None:
                        tries.append(f"no_match:{heard.text}")
                        await (
                            self._play(node.invalid, "")
                            if node.invalid
                            else self._say_builtin("invalid")
                        )
                        continue
            elif digit is None:
                digit = await self.channel.wait_for_digit(int(node.timeout_s * 1000))
            if digit is None:
                tries.append("no_input")
                if node.no_input:
                    await self._play(node.no_input, "")
                else:
                    await self._say_builtin("no_input")
                continue
            option = node.option(digit)
            if option is None and digit == "0":
                step["result"] = "agent"
                self._record_input(node.id, "0")
                raise _Handoff(self._agent_queue(node.agent_queue))
            if option is None:
                tries.append(f"invalid:{digit}")
                if node.invalid:
                    await self._play(node.invalid, "")
                else:
                    await self._say_builtin("invalid")
                continue
            step["result"] = option.key
            self._record_input(node.id, option.key)
            if option.intent:
                self.interaction.intent = option.intent
            return option.goto
        step["result"] = "retries_exhausted"
        await self._say_builtin("to_agent")
        raise _Handoff(self._agent_queue(node.agent_queue))

    def _can_listen(self, node: m.Menu) -> bool:
        speech = self.services.speech
        if not node.speech or speech is None:
            return False
        if not speech.available(self.language):
            # Callers are not told; DTMF carries on.  The admin is told once.
            speech.warn_once(
                self.language,
                "speech menu without a model for this language: DTMF only (hotline models list)",
            )
            return False
        return True

    async def _listen(self, node: m.Menu, keys: str) -> tuple[str | None, Recognition | None]:
        """Record the caller (a menu key ends it too) and recognise what they said."""
        phrases = [p for o in node.options for p in o.phrases.get(self.language, ())]
        return await self._record_and_recognise(
            keys, node.timeout_s, silence_s=1, phrases=phrases, key_is_choice=True
        )

    async def _record_and_recognise(
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

    async def _listen_free(self, node: m.Listen, step: dict[str, Any]) -> str:
        """Free-form speech into ``vars[node.var]``; without a model the step is skipped."""
        await self._play(node.prompt, "")
        speech = self.services.speech
        if speech is None or not speech.available(self.language):
            if speech is not None:
                speech.warn_once(self.language, "listen step without a model: skipped")
            step["result"] = "no_model"
            return node.next
        # "#" ends the recording; what was said before it is still recognised.
        _, heard = await self._record_and_recognise(
            "#", node.timeout_s, silence_s=2, phrases=None, key_is_choice=False
        )
        text = heard.text if heard else ""
        self.vars[node.var] = text
        self.interaction.inputs[node.var] = text
        if heard is not None:
            self.interaction.transcripts.append(
                {
                    "node": node.id,
                    "text": text,
                    "confidence": heard.confidence,
                    "language": heard.language,
                    "option": None,
                }
            )
        step["result"] = "heard" if text else "nothing"
        return node.next

    async def _listen_stream(
        self, node: m.Menu, keys: str
    ) -> tuple[str | None, Recognition | None]:
        """Prompt and listening over AudioSocket: barge-in, result at end of speech."""
        speech, server = self.services.speech, self.services.audiosocket
        assert speech is not None
        if server is None:
            return await self._listen_after_prompt(node, keys)
        model = await speech.model(self.language)
        pcm = b"".join(
            [await asyncio.to_thread(read_pcm, p) for p in await self._host_paths(node.prompt)]
        )
        key, connected = server.expect()
        app = asyncio.create_task(
            self.channel.exec("AudioSocket", f"{key},{server.host}:{server.port}")
        )
        try:
            reader, writer = await asyncio.wait_for(asyncio.shield(connected), 5)
        except TimeoutError:
            server.forget(key)
            log.error("AudioSocket did not connect: using record mode for this prompt")
            await app
            return await self._listen_after_prompt(node, keys)
        grammar = MenuGrammar(self._options_in_language(node))
        listener = StreamingListener(
            model,
            grammar,
            keys,
            speech.run,
            complete_timeout_s=self.services.complete_timeout_s,
            incomplete_timeout_s=self.services.incomplete_timeout_s,
        )
        result = await listener.listen(reader, writer, pcm, node.timeout_s)
        await app  # returns once the socket is closed (raises AgiHangup if they hung up)
        if result.digit:
            return result.digit, None
        return None, Recognition(
            result.text, result.confidence, self.language, "stream", result.barged_in
        )

    async def _listen_after_prompt(
        self, node: m.Menu, keys: str
    ) -> tuple[str | None, Recognition | None]:
        digit = await self._play(node.prompt, keys)
        return (digit, None) if digit else await self._listen(node, keys)

    async def _host_paths(self, prompt: m.Prompt) -> list[Path]:
        """Prompt parts as files on this host (for streaming them ourselves)."""
        scope = self._scope()
        prompts = self.services.prompts
        out = []
        for part in prompt.parts:
            lang = part.speak_in or self.language
            if lang in part.file:
                out.append(prompts.host_dir / f"{part.file[lang]}.wav")
            elif lang in part.text:
                text = _Resolver(scope).format(part.text[lang])
                await prompts.ensure(text, lang)
                out.append(prompts.host_path(text, lang))
        return out

    def _options_in_language(self, node: m.Menu) -> dict[str, list[str]]:
        return {o.key: list(o.phrases.get(self.language, ())) for o in node.options}

    def _understood(self, node: m.Menu, heard: Recognition, step: dict[str, Any]) -> str | None:
        key = match_option(heard.text, self._options_in_language(node))
        confident = heard.confidence >= self.services.min_confidence
        self.interaction.transcripts.append(
            {
                "node": node.id,
                "text": heard.text,
                "confidence": heard.confidence,
                "language": heard.language,
                "option": key if confident else None,
                "mode": heard.mode,
                "barged_in": heard.barged_in,
            }
        )
        step.setdefault("heard", []).append(heard.text)
        return key if confident else None

    def _record_input(self, name: str, value: str, sensitive: bool = False) -> None:
        self.interaction.inputs[name] = mask(value) if sensitive else value

    async def _collect(self, node: m.Collect, step: dict[str, Any]) -> str:
        paths = await self._paths(node.prompt)
        tries: list[str] = []
        step["tries"] = tries
        for attempt in range(node.retries):
            prefix, self.pending_digit = self.pending_digit or "", None
            if attempt > 0 or prefix:
                lead, last = [], "silence/1"
            else:
                lead, last = paths[:-1], (paths[-1] if paths else "silence/1")
            for p in lead:
                d = await self.channel.stream_file(p, DIGITS)
                if d:
                    prefix, last = d, "silence/1"
                    break
            digits, _ = await self.channel.get_data(
                last, int(node.timeout_s * 1000), node.max_digits - len(prefix)
            )
            value = (prefix + digits).rstrip("#")
            if self._valid(node, value):
                self._record_input(node.var, value, node.sensitive)
                if node.sensitive:
                    self._secrets[node.var] = value
                else:
                    self.vars[node.var] = value
                step["result"] = "ok"
                return node.next
            tries.append("empty" if not value else "invalid")
            if node.invalid:
                await self._play(node.invalid, "")
            else:
                await self._say_builtin("bad_digits")
            if attempt + 1 < node.retries and paths:
                await self._play(node.prompt, "")
        step["result"] = "failed"
        if node.on_fail:
            return node.on_fail
        await self._say_builtin("to_agent")
        raise _Handoff(self._agent_queue(None))

    @staticmethod
    def _valid(node: m.Collect, value: str) -> bool:
        if not value.isdigit() or not node.min_digits <= len(value) <= node.max_digits:
            return False
        if node.validate == "luhn":
            return luhn_ok(value)
        if node.validate == "expiry":
            return expiry_ok(value)
        return True

    async def _lookup(self, node: m.Lookup, step: dict[str, Any]) -> str:
        directory = self.services.directory
        if node.by == "caller_id":
            prefetched, self._caller_lookup = self._caller_lookup, None
            if prefetched is not None:
                customer = await prefetched
            else:
                customer = await directory.by_phone(self.channel.caller_number)
        else:
            customer = await directory.by_account(self.vars.get(node.by[4:], ""))
        step["result"] = "found" if customer else "not_found"
        if customer is None:
            return node.not_found
        self.customer = customer
        self.interaction.customer_id = customer.id
        if customer.language in self.flow.languages:
            self._set_language(customer.language)
        return node.found

    def _set_language(self, language: str) -> None:
        self.language = language
        self.interaction.language = language

    async def _action(self, node: m.Action, step: dict[str, Any]) -> str:
        if node.do == "set_language":
            lang = node.args.get("language", "")
            if lang not in self.flow.languages:
                raise ValueError(f"set_language: {lang!r} is not a language of this flow")
            self._set_language(lang)
            await self._play(node.prompt, "")
            return node.next
        if self.customer is None:
            step["result"] = "no_customer"
            if node.on_error:
                return node.on_error
            raise _Handoff(self._agent_queue(None))
        if node.do == "say_balance":
            await self._play(node.prompt, "")
            self.interaction.self_service.append({"task": "balance", "outcome": "done"})
            step["result"] = "done"
            return node.next
        # pay_bill: the demo's payment back end books the balance as paid.
        card = self._secrets.get(node.args.get("card", "card"), "")
        expiry = self._secrets.get(node.args.get("expiry", "expiry"), "") or self.vars.get(
            node.args.get("expiry", "expiry"), ""
        )
        if not luhn_ok(card) or not expiry_ok(expiry):
            step["result"] = "declined"
            self.interaction.self_service.append({"task": "pay_bill", "outcome": "declined"})
            if node.on_error:
                return node.on_error
            raise _Handoff(self._agent_queue(None))
        amount = self.customer.balance_cents
        self.customer = await self.services.directory.pay_balance(self.customer.id, amount)
        self._secrets.clear()  # card data lives no longer than it must
        self.vars["paid_amount"] = _spoken_amount(amount)
        self.interaction.self_service.append(
            {"task": "pay_bill", "outcome": "paid", "amount": amount / 100, "card": mask(card)}
        )
        step["result"] = "paid"
        await self._play(node.prompt, "")
        return node.next

    # -- deflection ---------------------------------------------------------------------
    def _count(self, queue: str, what: str) -> None:
        self.interaction.self_service.append(
            {"task": "deflection", "queue": queue, "outcome": what}
        )
        if self.services.on_deflection is not None:
            self.services.on_deflection(queue, what)

    async def _deflect(self, node: m.Deflect, step: dict[str, Any]) -> str | None:
        svc = self.services
        number = self.channel.caller_number
        if svc.callbacks is not None and number:
            booked = await svc.callbacks.open_for(number)
            if booked is not None:
                # Called again while waiting for a callback: not queued twice.
                step["result"] = "callback_pending"
                self.interaction.outcome = "deflected"
                await self._play(node.callback_exists, "")
                await self.channel.hangup()
                return None
        estimate = svc.wait_estimate(node.queue) if svc.wait_estimate is not None else None
        open_now = self._open_now()
        if estimate is None and open_now:
            step["result"] = "no_estimate"
            return node.next
        if estimate is not None:
            step["estimate_s"] = None if math.isinf(estimate.seconds) else round(estimate.seconds)
            step["estimate_method"] = estimate.method
        if open_now and estimate is not None and estimate.seconds <= node.threshold_s:
            step["result"] = "short_wait"
            return node.next
        self._count(node.queue, "offered")
        keys = ("1" if node.link_kind else "") + "23"
        if estimate is None or math.isinf(estimate.seconds):
            offer = node.offer_no_agents
        else:
            self._queue_info = {"wait_minutes": spoken_minutes(estimate.seconds)}
            offer = node.offer
        digit: str | None = None
        for _ in range(node.retries):
            digit = await self._play(offer, keys + "0")
            if digit is None:
                digit = await self.channel.wait_for_digit(int(node.timeout_s * 1000))
            if digit is None or digit in keys + "0":
                break
            await self._say_builtin("invalid")
        self._record_input(node.id, digit or "")
        if digit == "1" and node.link_kind:
            return await self._send_link(node, step)
        if digit == "2":
            return await self._book_callback(node, step)
        step["result"] = "agent" if digit == "0" else "keep_waiting"
        self._count(node.queue, "declined")
        return node.next

    async def _send_link(self, node: m.Deflect, step: dict[str, Any]) -> str | None:
        svc = self.services
        lang = self.language if self.language in node.link_text else self.flow.default_language
        text = _Resolver(self._scope()).format(node.link_text.get(lang, ""))
        try:
            if svc.notifier is None:
                raise RuntimeError("no notifier configured ([deflection] notifier)")
            msg = LinkMessage(
                to=dialable(self.channel.caller_number, svc.number_pattern),
                text=text,
                call_id=self.interaction.call_id,
                language=lang,
                kind=node.link_kind or "link",
            )
            await asyncio.wait_for(svc.notifier.send(msg), svc.notify_timeout_s)
        except (InvalidNumber, NotifyError, RuntimeError, TimeoutError, ValueError) as e:
            log.warning("self-service link not sent: %s", e)
            step["result"] = "link_failed"
            self._count(node.queue, "link_failed")
            await self._play(node.link_failed, "")
            return node.next  # into the queue after all
        step["result"] = "link_sent"
        self._count(node.queue, "link_sent")
        self.interaction.outcome = "deflected"
        await self._play(node.link_sent, "")
        await self.channel.hangup()
        return None

    async def _book_callback(self, node: m.Deflect, step: dict[str, Any]) -> str | None:
        svc = self.services
        if svc.callbacks is None:
            step["result"] = "callback_unavailable"
            return node.next
        try:
            cb = await svc.callbacks.book(
                queue=node.queue,
                number=self.channel.caller_number,
                call_id=self.interaction.call_id,
                requested_at=self.interaction.started_at,
                interaction_id=self.interaction.id,
                customer_id=self.customer.id if self.customer else None,
                language=self.language,
            )
        except InvalidNumber as e:
            log.warning("callback not booked: %s", e)
            step["result"] = "callback_bad_number"
            await self._say_builtin("bad_digits")
            return node.next
        step["result"] = "callback_booked"
        step["callback"] = cb.id
        self.interaction.queue = node.queue
        self._count(node.queue, "callback_booked")
        # Saved now: the agent's screen pop for the callback shows this record.
        self.interaction.outcome = "deflected"
        await svc.interactions.save(self.interaction, wait=False)
        if svc.on_callback_booked is not None:
            svc.on_callback_booked()
        await self._play(node.callback_booked, "")
        await self.channel.hangup()
        return None

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
