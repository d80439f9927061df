"""``lookup``: find the customer by caller ID or by a number the caller entered."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Lookup(Node):
    by: str  # "caller_id" or "var:NAME" (account number the caller entered)
    found: str
    not_found: str

    @classmethod
    def parse(cls, src: NodeSource) -> Lookup:
        src.take({"by", "found", "not_found"}, {"by", "found", "not_found"})
        by = src.word("by")
        if by != "caller_id" and not re.fullmatch(r"var:[a-z_][a-z0-9_]*", by):
            src.err(src.at("by"), f"by: {by!r} is not caller_id or var:NAME")
        return cls(src.id, src.line, by, src.word("found"), src.word("not_found"))

    def targets(self) -> list[Exit]:
        return [
            Exit("found", self.found, "found"),
            Exit("not_found", self.not_found, "not found"),
        ]

    def describe(self, language: str) -> str:
        return f"look up customer by {self.by}"

    @property
    def looks_up_caller(self) -> bool:
        return self.by == "caller_id"

    async def run(self, session: Session, step: Step) -> str | None:
        if self.by == "caller_id":
            customer = await session.caller_customer()
        else:
            customer = await session.services.directory.by_account(
                session.vars.get(self.by[4:], "")
            )
        step["result"] = "found" if customer else "not_found"
        if customer is None:
            return self.not_found
        session.customer = customer
        session.interaction.customer_id = customer.id
        if customer.language in session.flow.languages:
            session.set_language(customer.language)
        return self.found
