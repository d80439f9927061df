"""Call flows as data: a flow is named nodes.  Built by :mod:`ivr.flow.loader`.

Each node type is defined in its own module under :mod:`ivr.flow.nodes`;
they are re-exported here, where the rest of Hotline has always found them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow.condition import Clause, Condition, Op
from ivr.flow.node import Exit, Node
from ivr.flow.nodes.action import Action
from ivr.flow.nodes.branch import Branch, BranchCase
from ivr.flow.nodes.collect import Collect, Validation
from ivr.flow.nodes.deflect import Deflect
from ivr.flow.nodes.goto import Goto
from ivr.flow.nodes.hangup import Hangup
from ivr.flow.nodes.listen import Listen
from ivr.flow.nodes.lookup import Lookup
from ivr.flow.nodes.menu import Menu, MenuOption
from ivr.flow.nodes.queue import Queue
from ivr.flow.nodes.return_ import Return
from ivr.flow.nodes.say import Say
from ivr.flow.nodes.set_vars import SetVars
from ivr.flow.nodes.subflow import SubFlow
from ivr.flow.nodes.transfer import Transfer
from ivr.flow.prompt import Prompt, PromptPart

__all__ = [
    "Action",
    "AnyNode",
    "Branch",
    "BranchCase",
    "BusinessHours",
    "Clause",
    "Collect",
    "Condition",
    "Deflect",
    "Exit",
    "Flow",
    "Goto",
    "Hangup",
    "Listen",
    "Lookup",
    "Menu",
    "MenuOption",
    "Node",
    "Op",
    "Prompt",
    "PromptPart",
    "Queue",
    "Return",
    "Say",
    "SetVars",
    "SubFlow",
    "Transfer",
    "Validation",
    "targets",
]

# Any node of any registered type (ivr.flow.nodes.NODES).
AnyNode = Node


def targets(node: Node) -> list[tuple[str, str]]:
    """(field, node id) for every node this node can lead to."""
    return [(e.field, e.target) for e in node.targets()]


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
    nodes: dict[str, Node]
    agent_queue: str
    description: str = ""
    hours: BusinessHours | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @property
    def looks_up_caller(self) -> bool:
        """Whether the flow asks the directory who is calling (by caller ID)."""
        return any(n.looks_up_caller for n in self.nodes.values())
