"""``say``: play a prompt; a key pressed during it counts for the next menu."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Say(Node):
    prompt: Prompt
    next: str | None

    @classmethod
    def parse(cls, src: NodeSource) -> Say:
        # `next` is required: a say that leads nowhere would leave the caller
        # to the dialplan's fallback without the flow having decided anything.
        src.take({"say", "next"}, {"say", "next"})
        return cls(src.id, src.line, src.prompt("say"), src.text("next"))

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next)] if self.next else []

    def describe(self, language: str) -> str:
        return f'say "{self.prompt.first_text(language)}"'

    async def run(self, session: Session, step: Step) -> str | None:
        await session.play_interruptible(self.prompt)
        return self.next
