"""``queue``: hand the caller to an agent queue (the flow ends here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ivr.flow.node import Handoff, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Queue(Node):
    queue: str
    priority: int = 0
    prompt: Prompt = field(default_factory=Prompt)
    intent: str | None = None

    shape: ClassVar[str] = "house"

    @classmethod
    def parse(cls, src: NodeSource) -> Queue:
        src.take({"queue", "priority", "say", "intent"}, {"queue"})
        return cls(
            src.id,
            src.line,
            src.queue_name(),
            int(src.number("priority", 0, 0, 100)),
            src.prompt("say"),
            src.text("intent"),
        )

    def describe(self, language: str) -> str:
        return f"queue {self.queue} (priority {self.priority})"

    async def run(self, session: Session, step: Step) -> str | None:
        if self.intent:
            session.interaction.intent = self.intent
        await session.play(self.prompt, "")
        raise Handoff(self.queue, self.priority)
