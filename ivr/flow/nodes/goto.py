"""``goto``: continue at another node."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Goto(Node):
    target: str

    @classmethod
    def parse(cls, src: NodeSource) -> Goto:
        src.take({"goto"}, {"goto"})
        return cls(src.id, src.line, src.word("goto"))

    def targets(self) -> list[Exit]:
        return [Exit("goto", self.target)]

    def describe(self, language: str) -> str:
        return "go to"

    async def run(self, session: Session, step: Step) -> str | None:
        return self.target
