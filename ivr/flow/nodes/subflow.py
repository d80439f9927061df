"""``subflow``: run another flow; its ``return`` comes back to ``next``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class SubFlow(Node):
    flow: str
    next: str

    @classmethod
    def parse(cls, src: NodeSource) -> SubFlow:
        src.take({"flow", "next"}, {"flow", "next"})
        return cls(src.id, src.line, src.word("flow"), src.word("next"))

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next)]

    def flows_used(self) -> list[tuple[str, str]]:
        return [("flow", self.flow)]

    def describe(self, language: str) -> str:
        return f"sub-flow {self.flow}"

    async def run(self, session: Session, step: Step) -> str | None:
        return session.enter_subflow(self.flow, self.next)
