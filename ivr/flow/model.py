"""Call flows as data: nodes, prompts, conditions.  Built by :mod:`ivr.flow.loader`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

# ---------------------------------------------------------------------------
# Prompts


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One thing the caller hears: text per language, or a recorded file.

    ``file`` (relative to prompts/, no extension) overrides the text; ``speak_in``
    fixes the language (a language picker says "한국어는 9번" in Korean to
    everyone).
    """

    text: dict[str, str] = field(default_factory=dict)
    file: dict[str, str] = field(default_factory=dict)
    speak_in: str | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    parts: tuple[PromptPart, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.parts)


# ---------------------------------------------------------------------------
# Conditions (branch nodes)

Op = Literal["==", "!=", "<", "<=", ">", ">=", "truthy"]
_CLAUSE = re.compile(
    r"^\s*(?P<neg>not\s+)?(?P<path>[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*)\s*"
    r"(?:(?P<op>==|!=|<=|>=|<|>)\s*(?P<lit>-?\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\"|true|false|null))?\s*$"
)


@dataclass(frozen=True, slots=True)
class Clause:
    path: str
    op: Op
    literal: Any
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
            lit: Any = None
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


# ---------------------------------------------------------------------------
# Nodes


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    line: int


@dataclass(frozen=True, slots=True)
class Say(Node):
    prompt: Prompt
    next: str | None


@dataclass(frozen=True, slots=True)
class MenuOption:
    key: str
    goto: str
    intent: str | None = None
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class Menu(Node):
    prompt: Prompt
    options: tuple[MenuOption, ...]
    timeout_s: float = 5.0
    retries: int = 3
    no_input: Prompt = Prompt()
    invalid: Prompt = Prompt()
    agent_queue: str | None = None
    intent: str | None = None
    # Listen for the options' phrases too (where a speech model for the
    # caller's language exists); DTMF always works alongside.
    speech: bool = False

    def option(self, key: str) -> MenuOption | None:
        for o in self.options:
            if o.key == key:
                return o
        return None


Validation = Literal["none", "luhn", "expiry"]


@dataclass(frozen=True, slots=True)
class Collect(Node):
    prompt: Prompt
    var: str
    next: str
    min_digits: int = 1
    max_digits: int = 20
    validate: Validation = "none"
    sensitive: bool = False
    timeout_s: float = 6.0
    retries: int = 3
    invalid: Prompt = Prompt()
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class Lookup(Node):
    by: str  # "caller_id" or "var:NAME" (account number the caller entered)
    found: str
    not_found: str


@dataclass(frozen=True, slots=True)
class BranchCase:
    condition: Condition
    goto: str


@dataclass(frozen=True, slots=True)
class Branch(Node):
    cases: tuple[BranchCase, ...]
    otherwise: str


@dataclass(frozen=True, slots=True)
class SetVars(Node):
    values: dict[str, str]
    next: str


@dataclass(frozen=True, slots=True)
class Queue(Node):
    queue: str
    priority: int = 0
    prompt: Prompt = Prompt()
    intent: str | None = None


@dataclass(frozen=True, slots=True)
class Deflect(Node):
    """Before queueing: when the wait is long, offer a link, a callback, or waiting.

    Keys: 1 = link by text message (when ``link_kind`` is set), 2 = callback,
    3 = keep waiting (so does silence).  ``next`` is where waiting goes: the
    queue node.
    """

    queue: str
    next: str
    threshold_s: float
    offer: Prompt  # {queue.wait_minutes}
    offer_no_agents: Prompt
    link_kind: str | None = None
    link_text: dict[str, str] = field(default_factory=dict)
    link_sent: Prompt = Prompt()
    link_failed: Prompt = Prompt()
    callback_booked: Prompt = Prompt()
    callback_exists: Prompt = Prompt()
    timeout_s: float = 6.0
    retries: int = 2


@dataclass(frozen=True, slots=True)
class Hangup(Node):
    prompt: Prompt = Prompt()


@dataclass(frozen=True, slots=True)
class Goto(Node):
    target: str


@dataclass(frozen=True, slots=True)
class SubFlow(Node):
    flow: str
    next: str


@dataclass(frozen=True, slots=True)
class Return(Node):
    pass


@dataclass(frozen=True, slots=True)
class Listen(Node):
    """Free-form speech: "tell us briefly why you are calling" -> a transcript in ``var``."""

    prompt: Prompt
    var: str
    next: str
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Action(Node):
    """A built-in self-service task (``say_balance``, ``pay_bill``, ``set_language``)."""

    do: str
    args: dict[str, str]
    next: str
    on_error: str | None = None
    prompt: Prompt = Prompt()


AnyNode = (
    Say
    | Menu
    | Collect
    | Lookup
    | Branch
    | SetVars
    | Queue
    | Hangup
    | Goto
    | SubFlow
    | Return
    | Action
    | Listen
    | Deflect
)


def targets(node: AnyNode) -> list[tuple[str, str]]:
    """(field, node id) for every node this node can lead to."""
    out: list[tuple[str, str]] = []
    match node:
        case Say(next=n) if n:
            out.append(("next", n))
        case Menu(options=opts):
            out += [(f"options[{o.key}].goto", o.goto) for o in opts]
        case Collect(next=n, on_fail=f):
            out.append(("next", n))
            if f:
                out.append(("on_fail", f))
        case Lookup(found=a, not_found=b):
            out += [("found", a), ("not_found", b)]
        case Branch(cases=cases, otherwise=o):
            out += [(f"when[{i}].goto", c.goto) for i, c in enumerate(cases)]
            out.append(("else", o))
        case SetVars(next=n) | SubFlow(next=n) | Listen(next=n) | Deflect(next=n):
            out.append(("next", n))
        case Action(next=n, on_error=e):
            out.append(("next", n))
            if e:
                out.append(("on_error", e))
        case Goto(target=t):
            out.append(("goto", t))
    return out


@dataclass(frozen=True, slots=True)
class BusinessHours:
    # weekday (0=Monday) -> list of (start_minute, end_minute)
    spans: dict[int, tuple[tuple[int, int], ...]]
    timezone: str


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    file: str
    languages: tuple[str, ...]
    start: str
    nodes: dict[str, AnyNode]
    agent_queue: str
    description: str = ""
    hours: BusinessHours | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def looks_up_caller(self) -> bool:
        """Whether the flow asks the directory who is calling (by caller ID)."""
        return any(isinstance(n, Lookup) and n.by == "caller_id" for n in self.nodes.values())
