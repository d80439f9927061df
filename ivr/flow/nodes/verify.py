"""``verify``: the caller proves who they are by keys, before the flow speaks account data.

A caller ID says which number called, not who is speaking (it is easily
spoofed).  The customer a ``lookup`` found is only *verified* once the caller
keys their PIN, their date of birth (DDMMYYYY) or the last digits of their
account number (``method``).  Then ``verified`` holds in conditions, and later
verify steps for the same customer pass without asking again.

The keys are checked by the directory (the PIN against its salted hash, in a
thread) and recorded masked (``****``); what was keyed is never kept, logged
or put in ``vars``.  Wrong entries are limited per call and method: a step
gives ``attempts`` tries, fewer when earlier steps of the call already had
wrong entries by the same method, none once they are used up (the step then
goes to ``failed`` at once).  Silence uses up the step's try only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from hotline.records.customers import VERIFY_METHODS, VerifyMethod
from ivr.flow.keys import key_entry
from ivr.flow.node import Exit, Handoff, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session

# What the caller keys, per method: (fewest, most) digits.
PIN_DIGITS = (4, 8)
BIRTH_DATE_DIGITS = (8, 8)


@dataclass(frozen=True, slots=True)
class Verify(Node):
    method: VerifyMethod
    prompt: Prompt
    next: str
    failed: str | None = None  # after the last wrong try; default: an agent
    attempts: int = 3
    digits: int = 4  # method account: how many of the account number's last digits
    timeout_s: float = 6.0
    invalid: Prompt = field(default_factory=Prompt)

    shape: ClassVar[str] = "octagon"

    @classmethod
    def parse(cls, src: NodeSource) -> Verify:
        src.take(
            {"method", "say", "next", "failed", "attempts", "digits", "timeout", "invalid"},
            {"method", "say", "next"},
        )
        method = _method(src)
        digits = int(src.number("digits", 4, 1, 12))
        if "digits" in src and method != "account":
            src.err(src.at("digits"), "digits: only for method account")
        return cls(
            src.id,
            src.line,
            method,
            src.prompt("say"),
            src.word("next"),
            src.text("failed"),
            int(src.number("attempts", 3, 1, 10)),
            digits,
            src.number("timeout", 6, 1, 60),
            src.prompt("invalid"),
        )

    def targets(self) -> list[Exit]:
        out = [Exit("next", self.next, "verified")]
        return out + ([Exit("failed", self.failed, "failed")] if self.failed else [])

    def describe(self, language: str) -> str:
        what = {
            "pin": "PIN",
            "birth_date": "date of birth (DDMMYYYY)",
            "account": f"last {self.digits} digits of the account number",
        }[self.method]
        return f"verify the caller by {what}, {self.attempts} attempts"

    def implicit_exits(self, agent_queue: str) -> list[tuple[str, str]]:
        return [] if self.failed else [("failed", f"agent ({agent_queue})")]

    @property
    def entry_digits(self) -> tuple[int, int]:
        """(fewest, most) digits a caller keys for this method."""
        if self.method == "pin":
            return PIN_DIGITS
        if self.method == "birth_date":
            return BIRTH_DATE_DIGITS
        return (self.digits, self.digits)

    async def run(self, session: Session, step: Step) -> str | None:
        customer = session.customer
        if customer is None:
            # Nobody to check against: a lookup must come first.
            step["result"] = "no_customer"
            return await self._fail(session, "no_customer", 0)
        if session.verified_as == customer.id:
            step["result"] = "already_verified"
            return self.next
        used = session.verify_tries.get(self.method, 0)
        left = self.attempts - used
        if left <= 0:
            step["result"] = "locked"
            return await self._fail(session, "locked", 0)
        paths = await session.paths(self.prompt)
        lo, hi = self.entry_digits
        tries: list[str] = []
        step["tries"] = tries
        directory = session.services.directory
        for attempt in range(left):
            value = await key_entry(
                session,
                paths,
                first=attempt == 0,
                timeout_s=self.timeout_s,
                max_digits=hi,
                min_more=1,
            )
            ok = (
                lo <= len(value) <= hi
                and value.isdigit()
                and await directory.verify(customer.id, self.method, value, self.digits)
            )
            # Masked like any sensitive input: all stars, never the digits.
            session.record_input(self.id, value, sensitive=True)
            if ok:
                session.verified_as = customer.id
                step["result"] = "verified"
                _record(session, self.method, "verified", attempt + 1)
                return self.next
            tries.append("empty" if not value else "invalid")
            if value:
                # A guess: counts against the call's tries of this method.  Silence
                # or a bare # only uses up this step's attempt.
                session.verify_tries[self.method] = session.verify_tries.get(self.method, 0) + 1
            if self.invalid:
                await session.play(self.invalid, "")
            else:
                await session.say_builtin("not_verified")
            if attempt + 1 < left and paths:
                await session.play(self.prompt, "")
        step["result"] = "failed"
        return await self._fail(session, "failed", left)

    async def _fail(self, session: Session, outcome: str, attempts: int) -> str:
        _record(session, self.method, outcome, attempts)
        if self.failed:
            return self.failed
        await session.say_builtin("to_agent")
        raise Handoff(session.agent_queue(None))


def _record(session: Session, method: str, outcome: str, attempts: int) -> None:
    """The outcome in the record (the agent's screen pop shows it); never what was keyed."""
    session.interaction.self_service.append(
        {"task": "verify", "outcome": outcome, "method": method, "attempts": attempts}
    )


def _method(src: NodeSource) -> VerifyMethod:
    method = src.word("method")
    for known in VERIFY_METHODS:
        if method == known:
            return known
    if "method" in src:
        src.err(src.at("method"), f"method: {method!r} is not one of {', '.join(VERIFY_METHODS)}")
    return "pin"
