"""``return``: end a sub-flow; the calling flow goes on at its ``subflow`` node's ``next``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Node, Step
from ivr.flow.parsing import NodeSource

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Return(Node):
    @classmethod
    def parse(cls, src: NodeSource) -> Return:
        src.take(set(), set())
        return cls(src.id, src.line)

    def describe(self, language: str) -> str:
        return "return"

    async def run(self, session: Session, step: Step) -> str | None:
        return session.leave_subflow()
