"""``menu``: options by key (and, for speech menus, by what the caller says).

0 always reaches an agent, retries end with an agent, and the last try of a
speech menu takes keys only, so a caller the recogniser cannot understand
still gets through.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ivr.audiosocket import StreamingListener, read_pcm
from ivr.flow.node import Exit, Handoff, Node, Step
from ivr.flow.parsing import NodeSource, YamlMap
from ivr.flow.prompt import Prompt
from ivr.speech import MenuGrammar, Recognition, match_option

if TYPE_CHECKING:
    from ivr.flow.session import Session

log = logging.getLogger("hotline.ivr")

DIGIT_KEYS = set("0123456789*#")
# (key pressed, what was heard): at most one of them.
Heard = tuple[str | None, Recognition | None]


@dataclass(frozen=True, slots=True)
class MenuOption:
    key: str
    goto: str
    intent: str | None = None
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Menu(Node):
    prompt: Prompt
    options: tuple[MenuOption, ...]
    timeout_s: float = 5.0
    retries: int = 3
    no_input: Prompt = field(default_factory=Prompt)
    invalid: Prompt = field(default_factory=Prompt)
    agent_queue: str | None = None
    intent: str | None = None
    # Listen for the options' phrases too (where a speech model for the
    # caller's language exists); DTMF always works alongside.
    speech: bool = False

    shape: ClassVar[str] = "box3d"

    def option(self, key: str) -> MenuOption | None:
        for o in self.options:
            if o.key == key:
                return o
        return None

    @classmethod
    def parse(cls, src: NodeSource) -> Menu:
        src.take(
            {
                "say",
                "options",
                "timeout",
                "retries",
                "no_input",
                "invalid",
                "agent_queue",
                "intent",
                "speech",
            },
            {"say", "options"},
        )
        speech = src.raw.get("speech", False)
        if not isinstance(speech, bool):
            src.err(src.at("speech"), "speech: expected true or false")
            speech = False
        options = _options(src)
        return cls(
            src.id,
            src.line,
            src.prompt("say"),
            options,
            timeout_s=src.number("timeout", 5, 1, 60),
            retries=int(src.number("retries", 3, 1, 10)),
            no_input=src.prompt("no_input"),
            invalid=src.prompt("invalid"),
            agent_queue=src.text("agent_queue"),
            intent=src.text("intent"),
            speech=speech,
        )

    def targets(self) -> list[Exit]:
        # A missing target is reported on the line of the first option naming it.
        first_line: dict[str, int] = {}
        for o in self.options:
            first_line.setdefault(o.goto, o.line)
        return [
            Exit(f"options[{o.key}].goto", o.goto, o.key, first_line[o.goto]) for o in self.options
        ]

    def implicit_exits(self, agent_queue: str) -> list[tuple[str, str]]:
        if self.option("0") is None:
            return [("0", f"agent ({self.agent_queue or agent_queue})")]
        return []

    def describe(self, language: str) -> str:
        return f'menu "{self.prompt.first_text(language)}"'

    async def run(self, session: Session, step: Step) -> str | None:
        keys = "".join(o.key for o in self.options)
        if "0" not in keys:
            keys += "0"  # 0 always reaches an agent
        tries: list[str] = []
        step["tries"] = tries
        if self.intent:
            session.interaction.intent = self.intent
        for attempt in range(self.retries):
            digit, session.pending_digit = session.pending_digit, None
            # Speech on every try but the last: the last try is DTMF only, so a
            # caller the recogniser cannot understand still gets through.
            listen = attempt < self.retries - 1 and session.can_listen(self.speech)
            streaming = listen and session.services.speech_mode == "stream"
            if digit is None and not streaming:
                digit = await session.play(self.prompt, keys)
            if digit is None and listen:
                digit, heard = await (
                    self._listen_stream(session, keys) if streaming else self._listen(session, keys)
                )
                if digit is None and heard is not None and heard.text:
                    digit = self._understood(session, heard, step)
                    if digit is None:
                        tries.append(f"no_match:{heard.text}")
                        await (
                            session.play(self.invalid, "")
                            if self.invalid
                            else session.say_builtin("invalid")
                        )
                        continue
            elif digit is None:
                digit = await session.channel.wait_for_digit(int(self.timeout_s * 1000))
            if digit is None:
                tries.append("no_input")
                if self.no_input:
                    await session.play(self.no_input, "")
                else:
                    await session.say_builtin("no_input")
                continue
            option = self.option(digit)
            if option is None and digit == "0":
                step["result"] = "agent"
                session.record_input(self.id, "0")
                raise Handoff(session.agent_queue(self.agent_queue))
            if option is None:
                tries.append(f"invalid:{digit}")
                if self.invalid:
                    await session.play(self.invalid, "")
                else:
                    await session.say_builtin("invalid")
                continue
            step["result"] = option.key
            session.record_input(self.id, option.key)
            if option.intent:
                session.interaction.intent = option.intent
            return option.goto
        step["result"] = "retries_exhausted"
        await session.say_builtin("to_agent")
        raise Handoff(session.agent_queue(self.agent_queue))

    # -- speech -----------------------------------------------------------------------
    def _phrases(self, language: str) -> dict[str, list[str]]:
        return {o.key: list(o.phrases.get(language, ())) for o in self.options}

    async def _listen(self, session: Session, keys: str) -> Heard:
        """Record the caller (a menu key ends it too) and recognise what they said."""
        phrases = [p for o in self.options for p in o.phrases.get(session.language, ())]
        return await session.record_and_recognise(
            keys, self.timeout_s, silence_s=1, phrases=phrases, key_is_choice=True
        )

    async def _listen_stream(self, session: Session, keys: str) -> Heard:
        """Prompt and listening over AudioSocket: barge-in, result at end of speech."""
        speech, server = session.services.speech, session.services.audiosocket
        assert speech is not None
        if server is None:
            return await self._listen_after_prompt(session, keys)
        model = await speech.model(session.language)
        pcm = b"".join(
            [await asyncio.to_thread(read_pcm, p) for p in await session.host_paths(self.prompt)]
        )
        key, connected = server.expect()
        app = asyncio.create_task(
            session.channel.exec("AudioSocket", f"{key},{server.host}:{server.port}")
        )
        try:
            reader, writer = await asyncio.wait_for(asyncio.shield(connected), 5)
        except TimeoutError:
            server.forget(key)
            log.error("AudioSocket did not connect: using record mode for this prompt")
            await app
            return await self._listen_after_prompt(session, keys)
        grammar = MenuGrammar(self._phrases(session.language))
        listener = StreamingListener(
            model,
            grammar,
            keys,
            speech.run,
            complete_timeout_s=session.services.complete_timeout_s,
            incomplete_timeout_s=session.services.incomplete_timeout_s,
        )
        result = await listener.listen(reader, writer, pcm, self.timeout_s)
        await app  # returns once the socket is closed (raises AgiHangup if they hung up)
        if result.digit:
            return result.digit, None
        return None, Recognition(
            result.text, result.confidence, session.language, "stream", result.barged_in
        )

    async def _listen_after_prompt(self, session: Session, keys: str) -> Heard:
        digit = await session.play(self.prompt, keys)
        return (digit, None) if digit else await self._listen(session, keys)

    def _understood(self, session: Session, heard: Recognition, step: Step) -> str | None:
        key = match_option(heard.text, self._phrases(session.language))
        confident = heard.confidence >= session.services.min_confidence
        session.interaction.transcripts.append(
            {
                "node": self.id,
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


def _options(src: NodeSource) -> tuple[MenuOption, ...]:
    options: list[MenuOption] = []
    raw_opts = src.get("options") or []
    if not isinstance(raw_opts, list) or not raw_opts:
        src.err(src.line, "options: expected a list of {key, goto}")
        raw_opts = []
    seen: dict[str, int] = {}
    for o in raw_opts:
        if not isinstance(o, YamlMap):
            src.err(src.line, "options: each option is a mapping with key and goto")
            continue
        opt = src.within(o)
        opt.take({"key", "goto", "intent", "phrases", "description"}, {"key", "goto"})
        key = str(o.get("key", ""))
        if key not in DIGIT_KEYS:
            src.err(o.line, f"option key {key!r}: one of 0-9, * or #")
        if key in seen:
            src.err(o.line, f"option key {key!r} used twice (first on line {seen[key]})")
        seen[key] = o.line
        phrases: dict[str, tuple[str, ...]] = {}
        raw_phrases = o.get("phrases") or {}
        if not isinstance(raw_phrases, dict):
            src.err(o.line, "phrases: expected phrases per language")
            raw_phrases = {}
        for lang, ps in raw_phrases.items():
            if lang not in src.languages:
                src.err(o.line, f"phrases: language {lang!r} is not declared")
            phrases[str(lang)] = tuple(str(x) for x in (ps if isinstance(ps, list) else [ps]))
        options.append(MenuOption(key, opt.word("goto"), opt.text("intent"), phrases, o.line))
    return tuple(options)
