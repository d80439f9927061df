"""``branch``: the first case whose condition holds, else ``else``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ivr.flow.condition import Condition
from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import TEMPLATE_ROOTS, NodeSource, YamlMap

if TYPE_CHECKING:
    from ivr.flow.session import Session

# What a condition may read: the placeholder roots, the flow's business hours
# and whether the caller proved who they are (a verify step).
CONDITION_ROOTS = TEMPLATE_ROOTS | {"open", "verified"}


@dataclass(frozen=True, slots=True)
class BranchCase:
    condition: Condition
    goto: str


@dataclass(frozen=True, slots=True)
class Branch(Node):
    cases: tuple[BranchCase, ...]
    otherwise: str

    shape: ClassVar[str] = "diamond"

    @classmethod
    def parse(cls, src: NodeSource) -> Branch:
        src.take({"when", "else"}, {"else"})
        cases = []
        raw_cases = src.get("when") or []
        # A mapping or text here is iterated like a list: each item is then reported.
        items = raw_cases if isinstance(raw_cases, list | dict | str) else [raw_cases]
        for w in items:
            if not isinstance(w, YamlMap) or "if" not in w or "goto" not in w:
                src.err(
                    getattr(w, "line", src.line), "when: each case is {if: CONDITION, goto: NODE}"
                )
                continue
            src.within(w).take({"if", "goto"}, {"if", "goto"})
            try:
                cond = Condition.parse(str(w["if"]))
            except ValueError as e:
                src.err(w.line, f"if: {e}")
                continue
            for root in cond.roots() - CONDITION_ROOTS:
                src.err(
                    w.line,
                    f"if: unknown name {root!r} (use {', '.join(sorted(CONDITION_ROOTS))})",
                )
            cases.append(BranchCase(cond, str(w["goto"])))
        return cls(src.id, src.line, tuple(cases), src.word("else"))

    def targets(self) -> list[Exit]:
        out = [
            Exit(f"when[{i}].goto", c.goto, c.condition.source) for i, c in enumerate(self.cases)
        ]
        return [*out, Exit("else", self.otherwise, "else")]

    def describe(self, language: str) -> str:
        return "branch"

    async def run(self, session: Session, step: Step) -> str | None:
        for case in self.cases:
            if session.holds(case.condition):
                step["result"] = case.condition.source
                return case.goto
        step["result"] = "else"
        return self.otherwise
