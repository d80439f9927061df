"""Flows for people: a readable outline, or a graph (Graphviz dot, Mermaid)."""

from __future__ import annotations

from ivr.flow import model as m


def _first_text(prompt: m.Prompt, language: str) -> str:
    for part in prompt.parts:
        lang = part.speak_in or language
        if lang in part.text:
            return part.text[lang]
        if lang in part.file:
            return f"[file {part.file[lang]}]"
    return ""


def _describe(node: m.AnyNode, language: str) -> str:
    match node:
        case m.Say():
            return f'say "{_first_text(node.prompt, language)}"'
        case m.Menu():
            return f'menu "{_first_text(node.prompt, language)}"'
        case m.Collect():
            extra = f", {node.validate}" if node.validate != "none" else ""
            secret = ", sensitive" if node.sensitive else ""
            return (
                f"collect {node.min_digits}-{node.max_digits} digits into {node.var}{extra}{secret}"
            )
        case m.Lookup():
            return f"look up customer by {node.by}"
        case m.Branch():
            return "branch"
        case m.SetVars():
            return "set " + ", ".join(f"{k}={v}" for k, v in node.values.items())
        case m.Queue():
            return f"queue {node.queue} (priority {node.priority})"
        case m.Deflect():
            offers = ([f"1 link ({node.link_kind})"] if node.link_kind else []) + [
                "2 callback",
                "3 keep waiting",
            ]
            return (
                f"deflect from queue {node.queue} when the wait is over "
                f"{node.threshold_s:g} s or closed: " + ", ".join(offers)
            )
        case m.Hangup():
            return f'hang up "{_first_text(node.prompt, language)}"'
        case m.Goto():
            return "go to"
        case m.SubFlow():
            return f"sub-flow {node.flow}"
        case m.Return():
            return "return"
        case m.Action():
            return f"{node.do}"
        case m.Listen():
            return f'listen (free form) into {node.var}: "{_first_text(node.prompt, language)}"'
    return type(node).__name__


def _edges(node: m.AnyNode) -> list[tuple[str, str]]:
    """(label, target) for drawing."""
    match node:
        case m.Menu():
            out = [(f"{o.key}", o.goto) for o in node.options]
            return out
        case m.Branch():
            return [(c.condition.source, c.goto) for c in node.cases] + [("else", node.otherwise)]
        case m.Lookup():
            return [("found", node.found), ("not found", node.not_found)]
        case m.Collect():
            out = [("ok", node.next)]
            return out + ([("fail", node.on_fail)] if node.on_fail else [])
        case m.Action():
            out = [("", node.next)]
            return out + ([("error", node.on_error)] if node.on_error else [])
    return [("", t) for _, t in m.targets(node)]


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
        for label, target in _edges(node):
            arrow = f"{label} -> " if label else "-> "
            lines.append(f"      {arrow}{target}")
        if isinstance(node, m.Menu) and node.option("0") is None:
            lines.append(f"      0 -> agent ({node.agent_queue or flow.agent_queue})")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def dot(flow: m.Flow) -> str:
    out = [f'digraph "{_q(flow.name)}" {{', "  rankdir=TB;", "  node [shape=box, fontsize=10];"]
    for node in flow.nodes.values():
        label = f"{node.id}\\n{_q(_describe(node, flow.default_language)[:60])}"
        shape = {
            "Queue": "house",
            "Hangup": "doubleoctagon",
            "Menu": "box3d",
            "Branch": "diamond",
        }.get(type(node).__name__, "box")
        out.append(f'  "{node.id}" [label="{label}", shape={shape}];')
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
