"""``transfer``: hand the caller to a named queue, with a priority and a reason for the record.

The hand-off a menu's 0 or a failed step makes, as a node of its own: the
agent's queue, how urgent the caller is, and why they are sent there (kept
in the step, so ``hotline calls show`` says why the flow gave up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ivr.flow.node import Handoff, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.placeholders import Resolver

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Transfer(Node):
    queue: str
    priority: int = 0
    reason: str = ""  # may hold placeholders: "card declined for {customer.account}"

    shape: ClassVar[str] = "house"

    @classmethod
    def parse(cls, src: NodeSource) -> Transfer:
        src.take({"queue", "priority", "reason"}, {"queue"})
        queue = src.queue_name()
        priority = int(src.number("priority", 0, 0, 100))
        reason = src.word("reason")
        src.template(reason, src.at("reason"), "reason")
        return cls(src.id, src.line, queue, priority, reason)

    def describe(self, language: str) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"transfer to {self.queue} (priority {self.priority}){why}"

    async def run(self, session: Session, step: Step) -> str | None:
        reason = Resolver(session.scope()).format(self.reason)
        step["result"] = self.queue
        if reason:
            step["reason"] = reason
        raise Handoff(self.queue, self.priority, reason)
