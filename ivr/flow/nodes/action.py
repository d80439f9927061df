"""``action``: run a site action (``do: pay_bill``); the actions are in ivr/flow/actions.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ivr.flow.actions import ACTIONS
from ivr.flow.node import Exit, Handoff, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Action(Node):
    """A built-in self-service task (``say_balance``, ``pay_bill``, ``set_language``)."""

    do: str
    args: dict[str, str]
    next: str
    on_error: str | None = None
    prompt: Prompt = field(default_factory=Prompt)

    @classmethod
    def parse(cls, src: NodeSource) -> Action:
        src.take({"do", "args", "next", "on_error", "say"}, {"do", "next"})
        do = src.word("do")
        action = ACTIONS.get(do)
        if action is None:
            src.err(
                src.at("do"),
                f"do: unknown action {do!r} (known: {', '.join(sorted(ACTIONS))})",
            )
        args = src.get("args") or {}
        if not isinstance(args, dict):
            src.err(src.at("args"), "args: expected a mapping")
            args = {}
        problem = action.check(args, src.languages) if action and action.check else None
        if problem is not None:
            src.err(src.at("args"), problem)
        return cls(
            src.id,
            src.line,
            do,
            {str(k): str(v) for k, v in args.items()},
            src.word("next"),
            src.text("on_error"),
            src.prompt("say"),
        )

    def targets(self) -> list[Exit]:
        out = [Exit("next", self.next)]
        return out + ([Exit("on_error", self.on_error, "error")] if self.on_error else [])

    def describe(self, language: str) -> str:
        return self.do

    def failed(self, session: Session) -> str:
        """Where a failed action goes: ``on_error``, else an agent."""
        if self.on_error:
            return self.on_error
        raise Handoff(session.agent_queue(None))

    async def run(self, session: Session, step: Step) -> str | None:
        action = ACTIONS[self.do]
        if action.needs_customer and session.customer is None:
            step["result"] = "no_customer"
            return self.failed(session)
        return await action.run(session, self, step)
