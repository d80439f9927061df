"""``{customer.first_name}`` in prompts, ``set`` values and conditions, over plain dicts."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

# The scope a placeholder is read from: nested JSON-like dicts ("customer",
# "vars", "call", ...), whose leaves are whatever the records hold.
Scope = Mapping[str, Any]


class Resolver(string.Formatter):
    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def get_field(
        self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[Any, str]:
        return self.lookup(field_name), field_name

    def lookup(self, path: str) -> Any:
        cur: Any = self.scope
        for part in path.split("."):
            if isinstance(cur, Mapping):
                cur = cur.get(part)
            else:
                return None
            if cur is None:
                return None
        return cur


def spoken_amount(cents: int) -> str:
    return f"{cents // 100}" if cents % 100 == 0 else f"{cents // 100}.{cents % 100:02d}"


def spoken_date(d: date | None, language: str) -> str:
    if d is None:
        return ""
    if language == "ko":
        return f"{d.month}월 {d.day}일"
    return f"{d.strftime('%B')} {d.day}"
