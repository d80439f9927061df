"""``set``: give ``vars`` values (placeholders resolved now)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.placeholders import Resolver

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class SetVars(Node):
    values: dict[str, str]
    next: str

    @classmethod
    def parse(cls, src: NodeSource) -> SetVars:
        src.take({"values", "next"}, {"values", "next"})
        values = src.get("values")
        if not isinstance(values, dict):
            src.err(src.line, "values: expected a mapping of name: value")
            values = {}
        for k, v in values.items():
            src.template(str(v), src.line, f"values.{k}")
        return cls(src.id, src.line, {str(k): str(v) for k, v in values.items()}, src.word("next"))

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next)]

    def describe(self, language: str) -> str:
        return "set " + ", ".join(f"{k}={v}" for k, v in self.values.items())

    async def run(self, session: Session, step: Step) -> str | None:
        scope = session.scope()
        for k, v in self.values.items():
            session.vars[k] = Resolver(scope).format(v)
        return self.next
