"""A flow: named nodes, where the call starts, its languages and opening hours.

Kept apart from :mod:`ivr.flow.model` (which re-exports it beside every node
type) so that the engine and the services can name a flow without depending
on any node module.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow.node import Node


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
