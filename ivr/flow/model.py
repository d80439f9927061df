"""Call flows as data: a flow is named nodes.  Built by :mod:`ivr.flow.loader`.

Each node type is defined in its own module under :mod:`ivr.flow.nodes`, and
``Flow`` in :mod:`ivr.flow.flow`; they are re-exported here, where the rest of
Hotline has always found them.  The engine and the services name
:mod:`ivr.flow.flow` instead: they must not depend on the node modules.
"""

from __future__ import annotations

from ivr.flow.condition import Clause, Condition, Op
from ivr.flow.flow import BusinessHours, Flow
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
from ivr.flow.nodes.verify import Verify
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
    "Verify",
    "targets",
]

# Any node of any registered type (ivr.flow.nodes.NODES).
AnyNode = Node


def targets(node: Node) -> list[tuple[str, str]]:
    """(field, node id) for every node this node can lead to."""
    return [(e.field, e.target) for e in node.targets()]
