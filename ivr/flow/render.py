"""Flows for people: a readable outline, or a graph (Graphviz dot, Mermaid).

What a node says and where it leads come from its type (``describe``,
``targets``): nothing here knows one type from another.
"""

from __future__ import annotations

from ivr.flow import model as m


def _describe(node: m.Node, language: str) -> str:
    return node.describe(language)


def _edges(node: m.Node) -> list[tuple[str, str]]:
    """(label, target) for drawing."""
    return [(e.label, e.target) for e in node.targets()]


def outline(flow: m.Flow, language: str | None = None) -> str:
    lang = language or flow.default_language
    lines = [
        f"flow {flow.name} ({flow.file}) languages: {', '.join(flow.languages)}",
        f"  start: {flow.start}   agent queue (0 / errors): {flow.agent_queue}",
        "",
    ]
    for node in flow.nodes.values():
        lines.append(f"{node.id}  [line {node.line}]")
        lines.append(f"    {_describe(node, lang)}")
        for label, target in _edges(node) + node.implicit_exits(flow.agent_queue):
            arrow = f"{label} -> " if label else "-> "
            lines.append(f"      {arrow}{target}")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def dot(flow: m.Flow) -> str:
    out = [f'digraph "{_q(flow.name)}" {{', "  rankdir=TB;", "  node [shape=box, fontsize=10];"]
    for node in flow.nodes.values():
        label = f"{node.id}\\n{_q(_describe(node, flow.default_language)[:60])}"
        out.append(f'  "{node.id}" [label="{label}", shape={node.shape}];')
        for label_, target in _edges(node):
            out.append(f'  "{node.id}" -> "{target}" [label="{_q(label_)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def mermaid(flow: m.Flow) -> str:
    out = ["flowchart TD"]
    for node in flow.nodes.values():
        text = _describe(node, flow.default_language).replace('"', "'")[:60]
        out.append(f'  {node.id}["{node.id}: {text}"]')
        for label, target in _edges(node):
            lab = label.replace('"', "'").replace("|", "/")
            out.append(f"  {node.id} -->|{lab}| {target}" if lab else f"  {node.id} --> {target}")
    return "\n".join(out) + "\n"
