"""``hangup``: an optional goodbye, then the call ends as self-served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ivr.flow.node import Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Hangup(Node):
    prompt: Prompt = field(default_factory=Prompt)

    shape: ClassVar[str] = "doubleoctagon"

    @classmethod
    def parse(cls, src: NodeSource) -> Hangup:
        src.take({"say"}, set())
        return cls(src.id, src.line, src.prompt("say"))

    def describe(self, language: str) -> str:
        return f'hang up "{self.prompt.first_text(language)}"'

    async def run(self, session: Session, step: Step) -> str | None:
        await session.play(self.prompt, "")
        session.interaction.outcome = "self_served"
        await session.channel.hangup()
        return None
