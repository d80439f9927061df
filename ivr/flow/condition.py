"""Conditions of ``branch`` nodes: ``clause and clause ...``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Op = Literal["==", "!=", "<", "<=", ">", ">=", "truthy"]
# A literal as the flow file writes it: number, quoted text, true/false or null.
Literal_ = str | int | float | bool | None
_CLAUSE = re.compile(
    r"^\s*(?P<neg>not\s+)?(?P<path>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\s*"
    r"(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<lit>-?\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\"|true|false|null))?\s*$"
)


@dataclass(frozen=True, slots=True)
class Clause:
    path: str
    op: Op
    literal: Literal_
    negate: bool


@dataclass(frozen=True, slots=True)
class Condition:
    """``clause and clause ...`` where clause is ``[not] path [op literal]``."""

    source: str
    clauses: tuple[Clause, ...]

    @staticmethod
    def parse(text: str) -> Condition:
        clauses = []
        for part in re.split(r"\s+and\s+", text.strip()):
            m = _CLAUSE.match(part)
            if m is None:
                raise ValueError(f"cannot read condition {part!r}")
            lit: Literal_ = None
            op: Op = "truthy"
            if m["op"]:
                op = m["op"]  # type: ignore[assignment]
                raw = m["lit"]
                if raw in ("true", "false"):
                    lit = raw == "true"
                elif raw == "null":
                    lit = None
                elif raw[0] in "'\"":
                    lit = raw[1:-1]
                else:
                    lit = float(raw) if "." in raw else int(raw)
            clauses.append(Clause(m["path"], op, lit, bool(m["neg"])))
        return Condition(text, tuple(clauses))

    def roots(self) -> set[str]:
        return {c.path.split(".")[0] for c in self.clauses}
