"""Read and validate flow files (``dialplans/*.yaml``).

Every problem is reported, not just the first, each as ``FILE:LINE: node
'ID': what is wrong``, so whoever edits a flow fixes it in one pass.  What
each node type accepts is its own module's business (:mod:`ivr.flow.nodes`);
this module reads the file around the nodes and checks the graph.
"""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ivr.flow import model as m
from ivr.flow.nodes import NODES, PLANNED
from ivr.flow.parsing import (
    TEMPLATE_ROOTS,
    Checker,
    FlowProblem,
    NodeSource,
    Raw,
    YamlMap,
    read_yaml,
)

__all__ = [
    "PLANNED_TYPES",
    "TEMPLATE_ROOTS",
    "FlowError",
    "FlowProblem",
    "load_flow",
    "load_flows",
    "parse_flow",
]

PLANNED_TYPES = PLANNED
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class FlowError(Exception):
    """A flow file cannot be used.  ``problems`` lists every problem found."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _node(c: Checker, node_id: str, raw: Raw, line: int) -> m.Node | None:
    """The node's type, from the registry, reads the rest."""
    if not isinstance(raw, YamlMap):
        c.err(line, node_id, "a node is a mapping with a 'type'")
        return None
    kind = raw.get("type")
    if isinstance(kind, str) and kind in PLANNED:
        c.err(line, node_id, f"node type {kind!r} is planned but not available in this version")
        return None
    node_type = NODES.get(kind) if isinstance(kind, str) else None
    if node_type is None:
        c.err(
            raw.key_lines.get("type", line),
            node_id,
            f"unknown node type {kind!r} (known: {', '.join(sorted(NODES))})",
        )
        return None
    return node_type.parse(NodeSource(c, raw, node_id, line))


def _hours(c: Checker, raw: Raw, line: int) -> m.BusinessHours | None:
    if raw is None:
        return None
    if not isinstance(raw, YamlMap):
        c.err(line, None, "hours: expected {timezone: ..., mon-fri: '08:00-20:00', ...}")
        return None
    tz = str(raw.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        c.err(raw.line, None, f"hours.timezone: unknown time zone {tz!r}")
    spans: dict[int, list[tuple[int, int]]] = {}
    for key, value in raw.items():
        if key == "timezone":
            continue
        days = _days(key)
        mt = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", str(value))
        if days is None or mt is None:
            c.err(
                raw.key_lines.get(key, raw.line),
                None,
                f"hours: {key}: {value!r} (write e.g. mon-fri: '08:00-20:00')",
            )
            continue
        a, b = int(mt[1]) * 60 + int(mt[2]), int(mt[3]) * 60 + int(mt[4])
        for d in days:
            spans.setdefault(d, []).append((a, b))
    return m.BusinessHours({d: tuple(v) for d, v in spans.items()}, tz)


def _days(key: str) -> list[int] | None:
    if key in WEEKDAYS:
        return [WEEKDAYS.index(key)]
    a, sep, b = key.partition("-")
    if sep and a in WEEKDAYS and b in WEEKDAYS:
        return list(range(WEEKDAYS.index(a), WEEKDAYS.index(b) + 1))
    return None


def parse_flow(text: str, file: str) -> m.Flow:
    """Build and validate a flow from YAML text.  Raises FlowError."""
    c = Checker(file)
    try:
        doc, duplicates = read_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FlowError(
            [
                FlowProblem(
                    file,
                    (mark.line + 1) if mark else 1,
                    None,
                    f"not valid YAML: {getattr(e, 'problem', e)}",
                )
            ]
        ) from None
    for line, msg in duplicates:
        c.err(line, None, msg)
    if not isinstance(doc, YamlMap):
        c.err(1, None, "a flow file is a mapping with flow, languages, start and nodes")
        raise FlowError(c.problems)
    c.take(
        doc,
        None,
        {"flow", "description", "languages", "start", "agent_queue", "nodes", "hours"},
        {"flow", "start", "nodes"},
    )
    langs = doc.get("languages", ["en"])
    if not isinstance(langs, list) or not langs or not all(isinstance(x, str) for x in langs):
        c.err(
            doc.key_lines.get("languages", doc.line),
            None,
            "languages: expected a list like [en, ko]",
        )
        langs = ["en"]
    c.languages = tuple(langs)
    hours = _hours(c, doc.get("hours"), doc.key_lines.get("hours", 1))
    raw_nodes = doc.get("nodes")
    nodes: dict[str, m.Node] = {}
    if not isinstance(raw_nodes, YamlMap):
        c.err(
            doc.key_lines.get("nodes", doc.line), None, "nodes: expected a mapping of node id: node"
        )
        raw_nodes = YamlMap.empty()
    for node_id, raw in raw_nodes.items():
        line = raw_nodes.key_lines.get(node_id, raw_nodes.line)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", node_id):
            c.err(line, node_id, "node ids are lower-case words (a-z, 0-9, _)")
        n = _node(c, node_id, raw, line)
        if n is not None:
            nodes[node_id] = n
    start = str(doc.get("start", ""))
    if raw_nodes and start not in raw_nodes:
        c.err(doc.key_lines.get("start", doc.line), None, f"start: no node {start!r}")
    # Every target exists; every node is reachable from start.
    for n in nodes.values():
        for exit_ in n.targets():
            if exit_.target not in raw_nodes:
                c.err(exit_.line or n.line, n.id, f"{exit_.field}: no node {exit_.target!r}")
    seen: set[str] = set()
    todo = [start] if start in nodes else []
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in nodes:
            continue
        seen.add(cur)
        todo += [e.target for e in nodes[cur].targets()]
    if start in nodes:
        for n in nodes.values():
            if n.id not in seen:
                c.err(n.line, n.id, f"unreachable: no path from start node {start!r} leads here")
    if c.problems:
        raise FlowError(sorted(c.problems, key=lambda p: p.line))
    return m.Flow(
        name=str(doc["flow"]),
        file=file,
        languages=c.languages,
        start=start,
        nodes=nodes,
        agent_queue=str(doc.get("agent_queue", "support")),
        description=str(doc.get("description", "")),
        hours=hours,
    )


def load_flow(path: Path) -> m.Flow:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FlowError([FlowProblem(str(path), 1, None, f"cannot read: {e.strerror}")]) from None
    except UnicodeDecodeError:
        raise FlowError([FlowProblem(str(path), 1, None, "not UTF-8 text")]) from None
    return parse_flow(text, str(path))


def load_flows(folder: Path) -> dict[str, m.Flow]:
    """Every ``*.yaml`` in the folder, validated, with sub-flow references checked."""
    flows: dict[str, m.Flow] = {}
    problems: list[FlowProblem] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            f = load_flow(path)
        except FlowError as e:
            problems += e.problems
            continue
        if f.name in flows:
            problems.append(
                FlowProblem(
                    str(path), 1, None, f"flow name {f.name!r} also used by {flows[f.name].file}"
                )
            )
        flows[f.name] = f
    for f in flows.values():
        for n in f.nodes.values():
            for field, name in n.flows_used():
                if name not in flows:
                    problems.append(
                        FlowProblem(f.file, n.line, n.id, f"{field}: no flow named {name!r}")
                    )
    if problems:
        raise FlowError(problems)
    return flows
