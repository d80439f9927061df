"""``collect``: digits into a variable (account numbers, card numbers), checked on entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ivr.flow.cards import expiry_ok, luhn_ok
from ivr.flow.keys import key_entry
from ivr.flow.node import Exit, Handoff, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session

Validation = Literal["none", "luhn", "expiry"]
VALIDATIONS: tuple[Validation, ...] = ("none", "luhn", "expiry")


@dataclass(frozen=True, slots=True)
class Collect(Node):
    prompt: Prompt
    var: str
    next: str
    min_digits: int = 1
    max_digits: int = 20
    validate: Validation = "none"
    sensitive: bool = False
    timeout_s: float = 6.0
    retries: int = 3
    invalid: Prompt = field(default_factory=Prompt)
    on_fail: str | None = None

    @classmethod
    def parse(cls, src: NodeSource) -> Collect:
        src.take(
            {
                "say",
                "var",
                "next",
                "min_digits",
                "max_digits",
                "validate",
                "sensitive",
                "timeout",
                "retries",
                "invalid",
                "on_fail",
            },
            {"say", "var", "next"},
        )
        validate = _validation(src)
        var = src.var_name()
        lo = int(src.number("min_digits", 1, 1, 64))
        hi = int(src.number("max_digits", 20, 1, 64))
        if lo > hi:
            src.err(src.line, "min_digits is larger than max_digits")
        # Card numbers are sensitive unless the flow says otherwise.
        sensitive = src.raw.get("sensitive", validate == "luhn")
        return cls(
            src.id,
            src.line,
            src.prompt("say"),
            var,
            src.word("next"),
            lo,
            hi,
            validate,
            bool(sensitive),
            src.number("timeout", 6, 1, 60),
            int(src.number("retries", 3, 1, 10)),
            src.prompt("invalid"),
            src.text("on_fail"),
        )

    def targets(self) -> list[Exit]:
        out = [Exit("next", self.next, "ok")]
        return out + ([Exit("on_fail", self.on_fail, "fail")] if self.on_fail else [])

    def describe(self, language: str) -> str:
        extra = f", {self.validate}" if self.validate != "none" else ""
        secret = ", sensitive" if self.sensitive else ""
        return f"collect {self.min_digits}-{self.max_digits} digits into {self.var}{extra}{secret}"

    def valid(self, value: str) -> bool:
        if not value.isdigit() or not self.min_digits <= len(value) <= self.max_digits:
            return False
        if self.validate == "luhn":
            return luhn_ok(value)
        if self.validate == "expiry":
            return expiry_ok(value)
        return True

    async def run(self, session: Session, step: Step) -> str | None:
        paths = await session.paths(self.prompt)
        tries: list[str] = []
        step["tries"] = tries
        for attempt in range(self.retries):
            value = await key_entry(
                session,
                paths,
                first=attempt == 0,
                timeout_s=self.timeout_s,
                max_digits=self.max_digits,
            )
            if self.valid(value):
                session.record_input(self.var, value, self.sensitive)
                if self.sensitive:
                    session.secrets[self.var] = value
                else:
                    session.vars[self.var] = value
                step["result"] = "ok"
                return self.next
            tries.append("empty" if not value else "invalid")
            if self.invalid:
                await session.play(self.invalid, "")
            else:
                await session.say_builtin("bad_digits")
            if attempt + 1 < self.retries and paths:
                await session.play(self.prompt, "")
        step["result"] = "failed"
        if self.on_fail:
            return self.on_fail
        await session.say_builtin("to_agent")
        raise Handoff(session.agent_queue(None))


def _validation(src: NodeSource) -> Validation:
    validate = src.word("validate", "none")
    for known in VALIDATIONS:
        if validate == known:
            return known
    src.err(
        src.at("validate"),
        f"validate: {validate!r} is not one of {', '.join(VALIDATIONS)}",
    )
    return "none"
