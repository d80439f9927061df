"""What every node type is: the base class a module under ``ivr/flow/nodes/`` subclasses.

A node type is one frozen dataclass that knows how to read itself from a
flow file (``parse``), where it can lead (``targets``), how it reads in an
outline (``describe``) and what it does during a call (``run``).  The
loader, the renderers and the engine only ever call these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from hotline.records import interactions

if TYPE_CHECKING:
    from ivr.flow.parsing import NodeSource
    from ivr.flow.session import Session

# One entry of the interaction record's ``steps`` (which keys depend on the node type).
Step = interactions.Step


class Exit(NamedTuple):
    """A node this node can lead to."""

    field: str  # where the file names it, for validation messages: "options[1].goto"
    target: str
    label: str = ""  # the edge's label in outlines and graphs
    line: int = 0  # where the file names it, when not on the node's own line


class Handoff(Exception):
    """Leave the flow for a queue (raised by a node's run step, handled by the session)."""

    def __init__(self, queue: str, priority: int = 0, reason: str = "") -> None:
        super().__init__(queue)
        self.queue, self.priority, self.reason = queue, priority, reason


@dataclass(frozen=True, slots=True)
class Node(ABC):
    id: str
    line: int

    # The Graphviz shape of this node type in ``hotline flow show --format dot``.
    shape: ClassVar[str] = "box"

    @classmethod
    @abstractmethod
    def parse(cls, src: NodeSource) -> Node | None:
        """Read the node from its mapping, reporting every problem through ``src``."""

    @abstractmethod
    async def run(self, session: Session, step: Step) -> str | None:
        """Do the node's work; return the next node id (None: the call is over).

        Raise :class:`Handoff` to send the caller to a queue.
        """

    def targets(self) -> list[Exit]:
        return []

    def describe(self, language: str) -> str:
        """One line for outlines and graphs."""
        return type(self).__name__

    def implicit_exits(self, agent_queue: str) -> list[tuple[str, str]]:
        """(label, where) the engine adds that the file does not spell out (outline only)."""
        return []

    def flows_used(self) -> list[tuple[str, str]]:
        """(field, flow name) of other flows this node runs: checked across the folder."""
        return []

    @property
    def looks_up_caller(self) -> bool:
        """Whether the node asks the directory who is calling (the router asks early)."""
        return False
