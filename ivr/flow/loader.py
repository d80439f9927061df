"""Read and validate flow files (``dialplans/*.yaml``).

Every problem is reported, not just the first, each as ``FILE:LINE: node
'ID': what is wrong``, so whoever edits a flow fixes it in one pass.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ivr.flow import model as m

NODE_TYPES = {
    "deflect",
    "say",
    "menu",
    "collect",
    "lookup",
    "branch",
    "set",
    "queue",
    "hangup",
    "goto",
    "subflow",
    "return",
    "action",
    "listen",
}
# Named in the design, built by later issues; a flow using them is told so.
PLANNED_TYPES = {"callback"}  # callbacks are offered by `deflect`
ACTIONS = {"say_balance", "pay_bill", "set_language"}
TEMPLATE_ROOTS = {"customer", "caller", "vars", "call", "queue"}
DIGIT_KEYS = set("0123456789*#")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True, slots=True)
class FlowProblem:
    file: str
    line: int
    node: str | None
    message: str

    def __str__(self) -> str:
        where = f"node '{self.node}': " if self.node else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class FlowError(Exception):
    """A flow file cannot be used.  ``problems`` lists every problem found."""

    def __init__(self, problems: list[FlowProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Map(dict[str, Any]):
    """A YAML mapping that remembers where it and each of its keys stand."""

    line: int = 0
    key_lines: dict[str, int]


class _Loader(yaml.SafeLoader):
    problems: list[tuple[int, str]]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        key = str(key)
        line = key_node.start_mark.line + 1
        if key in out:
            loader.problems.append(
                (line, f"duplicate key {key!r} (first on line {out.key_lines[key]})")
            )
        out[key] = loader.construct_object(value_node, deep=deep)
        out.key_lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[FlowProblem] = []
        self.languages: tuple[str, ...] = ("en",)

    def err(self, line: int, node: str | None, message: str) -> None:
        self.problems.append(FlowProblem(self.file, line, node, message))

    # -- prompts ---------------------------------------------------------------
    def prompt(self, raw: Any, line: int, node: str, field: str) -> m.Prompt:
        if raw is None:
            return m.Prompt()
        items = raw if isinstance(raw, list) else [raw]
        parts = []
        for item in items:
            part = self.prompt_part(item, line, node, field)
            if part is not None:
                parts.append(part)
        return m.Prompt(tuple(parts))

    def prompt_part(self, item: Any, line: int, node: str, field: str) -> m.PromptPart | None:
        if isinstance(item, str):
            if len(self.languages) > 1:
                self.err(
                    line,
                    node,
                    f"{field}: plain text is only allowed in a one-language flow; "
                    f"give text for {', '.join(self.languages)}",
                )
                return None
            item = {self.languages[0]: item}
        if not isinstance(item, dict):
            self.err(line, node, f"{field}: a prompt is text per language or a file")
            return None
        here = getattr(item, "line", line)
        speak_in = item.get("speak_in")
        file = item.get("file")
        files: dict[str, str] = {}
        if isinstance(file, str):
            files = {lang: file for lang in self.languages}
        elif isinstance(file, dict):
            files = {str(k): str(v) for k, v in file.items()}
        elif file is not None:
            self.err(here, node, f"{field}.file: expected a path or a path per language")
        for p in files.values():
            if ".." in Path(p).parts or p.startswith("/"):
                self.err(here, node, f"{field}.file: {p!r} must be a path inside prompts/")
        text = {str(k): v for k, v in item.items() if k not in ("file", "speak_in")}
        for lang, t in text.items():
            if lang not in self.languages:
                self.err(here, node, f"{field}: language {lang!r} is not declared in languages")
            elif not isinstance(t, str) or not t.strip():
                self.err(here, node, f"{field}.{lang}: expected text")
            else:
                self.template(t, here, node, f"{field}.{lang}")
        if speak_in is not None:
            if speak_in not in self.languages:
                self.err(here, node, f"{field}.speak_in: {speak_in!r} is not a declared language")
            elif speak_in not in text and speak_in not in files:
                self.err(here, node, f"{field}: no text in {speak_in!r} to speak")
        else:
            for lang in self.languages:
                if lang not in text and lang not in files:
                    self.err(here, node, f"{field}: prompt missing for language {lang!r}")
        return m.PromptPart(
            text={k: v for k, v in text.items() if isinstance(v, str)},
            file=files,
            speak_in=speak_in if isinstance(speak_in, str) else None,
        )

    def template(self, text: str, line: int, node: str, field: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as e:
            self.err(line, node, f"{field}: bad placeholder: {e}")
            return
        for f in fields:
            root = f.split(".")[0]
            if root not in TEMPLATE_ROOTS:
                self.err(
                    line,
                    node,
                    f"{field}: unknown placeholder {{{f}}} "
                    f"(use {', '.join(sorted(TEMPLATE_ROOTS))})",
                )


def _take(c: _Checker, raw: _Map, node: str | None, allowed: set[str], required: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            c.err(
                raw.key_lines.get(key, raw.line),
                node,
                f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})",
            )
    for key in sorted(required):
        if key not in raw:
            c.err(raw.line, node, f"missing field {key!r}")


def _str(c: _Checker, raw: _Map, key: str, node: str, default: str | None = None) -> str | None:
    v = raw.get(key, default)
    if v is None:
        return None
    if not isinstance(v, str | int) or isinstance(v, bool):
        c.err(raw.key_lines.get(key, raw.line), node, f"{key}: expected text")
        return default
    return str(v)


def _num(
    c: _Checker, raw: _Map, key: str, node: str, default: float, lo: float, hi: float
) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        c.err(
            raw.key_lines.get(key, raw.line),
            node,
            f"{key}: expected a number from {lo:g} to {hi:g}",
        )
        return default
    return float(v)


def _deflect(
    c: _Checker, raw: _Map, node_id: str, L: int, p: Callable[[str], m.Prompt]
) -> m.Deflect:
    common = {"type", "description"}
    _take(
        c,
        raw,
        node_id,
        common
        | {"queue", "next", "threshold", "say", "say_no_agents", "link", "callback", "timeout"},
        {"queue", "next", "say", "say_no_agents", "callback"},
    )
    q = _str(c, raw, "queue", node_id) or ""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", q):
        c.err(raw.key_lines.get("queue", L), node_id, f"queue: {q!r} is not a queue name")

    def sub(key: str, allowed: set[str], required: set[str]) -> _Map | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, _Map):
            c.err(raw.key_lines.get(key, L), node_id, f"{key}: expected a mapping")
            return None
        _take(c, value, node_id, allowed, required)
        return value

    def sub_prompt(m_: _Map | None, key: str, field: str) -> m.Prompt:
        if m_ is None:
            return m.Prompt()
        return c.prompt(m_.get(key), m_.key_lines.get(key, m_.line), node_id, f"{field}.{key}")

    link = sub("link", {"kind", "text", "sent", "failed"}, {"kind", "text", "sent", "failed"})
    callback = sub("callback", {"booked", "exists"}, {"booked", "exists"})
    link_text: dict[str, str] = {}
    if link is not None:
        text = link.get("text")
        line = link.key_lines.get("text", link.line)
        if not isinstance(text, dict):
            c.err(line, node_id, "link.text: expected the message per language")
        else:
            for lang in c.languages:
                if lang not in text:
                    c.err(line, node_id, f"link.text: message missing for language {lang!r}")
            for lang, t in text.items():
                c.template(str(t), line, node_id, f"link.text.{lang}")
                link_text[str(lang)] = str(t)
    return m.Deflect(
        node_id,
        L,
        q,
        _str(c, raw, "next", node_id) or "",
        _num(c, raw, "threshold", node_id, 120, 0, 7200),
        p("say"),
        p("say_no_agents"),
        _str(c, link, "kind", node_id) if link is not None else None,
        link_text,
        sub_prompt(link, "sent", "link"),
        sub_prompt(link, "failed", "link"),
        sub_prompt(callback, "booked", "callback"),
        sub_prompt(callback, "exists", "callback"),
        _num(c, raw, "timeout", node_id, 6, 2, 30),
    )


def _node(c: _Checker, node_id: str, raw: Any, line: int) -> m.AnyNode | None:
    if not isinstance(raw, _Map):
        c.err(line, node_id, "a node is a mapping with a 'type'")
        return None
    kind = raw.get("type")
    L = line  # where "node_id:" stands
    common = {"type", "description"}
    if kind in PLANNED_TYPES:
        c.err(L, node_id, f"node type {kind!r} is planned but not available in this version")
        return None
    if kind not in NODE_TYPES:
        c.err(
            raw.key_lines.get("type", L),
            node_id,
            f"unknown node type {kind!r} (known: {', '.join(sorted(NODE_TYPES))})",
        )
        return None

    def s(key: str, default: str | None = None) -> str:
        return _str(c, raw, key, node_id, default) or ""

    def p(key: str) -> m.Prompt:
        return c.prompt(raw.get(key), raw.key_lines.get(key, L), node_id, key)

    if kind == "say":
        # `next` is required: a say that leads nowhere would leave the caller
        # to the dialplan's fallback without the flow having decided anything.
        _take(c, raw, node_id, common | {"say", "next"}, {"say", "next"})
        return m.Say(node_id, L, p("say"), _str(c, raw, "next", node_id))
    if kind == "menu":
        _take(
            c,
            raw,
            node_id,
            common
            | {
                "say",
                "options",
                "timeout",
                "retries",
                "no_input",
                "invalid",
                "agent_queue",
                "intent",
                "speech",
            },
            {"say", "options"},
        )
        speech = raw.get("speech", False)
        if not isinstance(speech, bool):
            c.err(raw.key_lines.get("speech", L), node_id, "speech: expected true or false")
            speech = False
        options: list[m.MenuOption] = []
        raw_opts = raw.get("options") or []
        if not isinstance(raw_opts, list) or not raw_opts:
            c.err(L, node_id, "options: expected a list of {key, goto}")
            raw_opts = []
        seen: dict[str, int] = {}
        for o in raw_opts:
            if not isinstance(o, _Map):
                c.err(L, node_id, "options: each option is a mapping with key and goto")
                continue
            _take(
                c, o, node_id, {"key", "goto", "intent", "phrases", "description"}, {"key", "goto"}
            )
            key = str(o.get("key", ""))
            if key not in DIGIT_KEYS:
                c.err(o.line, node_id, f"option key {key!r}: one of 0-9, * or #")
            if key in seen:
                c.err(o.line, node_id, f"option key {key!r} used twice (first on line {seen[key]})")
            seen[key] = o.line
            phrases: dict[str, tuple[str, ...]] = {}
            for lang, ps in (o.get("phrases") or {}).items():
                if lang not in c.languages:
                    c.err(o.line, node_id, f"phrases: language {lang!r} is not declared")
                phrases[str(lang)] = tuple(str(x) for x in (ps if isinstance(ps, list) else [ps]))
            options.append(
                m.MenuOption(
                    key,
                    _str(c, o, "goto", node_id) or "",
                    _str(c, o, "intent", node_id),
                    phrases,
                    o.line,
                )
            )
        return m.Menu(
            node_id,
            L,
            p("say"),
            tuple(options),
            timeout_s=_num(c, raw, "timeout", node_id, 5, 1, 60),
            retries=int(_num(c, raw, "retries", node_id, 3, 1, 10)),
            no_input=p("no_input"),
            invalid=p("invalid"),
            agent_queue=_str(c, raw, "agent_queue", node_id),
            intent=_str(c, raw, "intent", node_id),
            speech=speech,
        )
    if kind == "collect":
        _take(
            c,
            raw,
            node_id,
            common
            | {
                "say",
                "var",
                "next",
                "min_digits",
                "max_digits",
                "validate",
                "sensitive",
                "timeout",
                "retries",
                "invalid",
                "on_fail",
            },
            {"say", "var", "next"},
        )
        validate = s("validate", "none")
        if validate not in ("none", "luhn", "expiry"):
            c.err(
                raw.key_lines.get("validate", L),
                node_id,
                f"validate: {validate!r} is not one of none, luhn, expiry",
            )
            validate = "none"
        var = s("var")
        if var and not re.fullmatch(r"[a-z_][a-z0-9_]*", var):
            c.err(raw.key_lines.get("var", L), node_id, f"var: {var!r} is not a simple name")
        lo = int(_num(c, raw, "min_digits", node_id, 1, 1, 64))
        hi = int(_num(c, raw, "max_digits", node_id, 20, 1, 64))
        if lo > hi:
            c.err(L, node_id, "min_digits is larger than max_digits")
        sensitive = raw.get("sensitive", validate == "luhn")
        return m.Collect(
            node_id,
            L,
            p("say"),
            var,
            s("next"),
            lo,
            hi,
            validate,  # type: ignore[arg-type]
            bool(sensitive),
            _num(c, raw, "timeout", node_id, 6, 1, 60),
            int(_num(c, raw, "retries", node_id, 3, 1, 10)),
            p("invalid"),
            _str(c, raw, "on_fail", node_id),
        )
    if kind == "lookup":
        _take(c, raw, node_id, common | {"by", "found", "not_found"}, {"by", "found", "not_found"})
        by = s("by")
        if by != "caller_id" and not re.fullmatch(r"var:[a-z_][a-z0-9_]*", by):
            c.err(raw.key_lines.get("by", L), node_id, f"by: {by!r} is not caller_id or var:NAME")
        return m.Lookup(node_id, L, by, s("found"), s("not_found"))
    if kind == "branch":
        _take(c, raw, node_id, common | {"when", "else"}, {"else"})
        cases = []
        for w in raw.get("when") or []:
            if not isinstance(w, _Map) or "if" not in w or "goto" not in w:
                c.err(
                    getattr(w, "line", L), node_id, "when: each case is {if: CONDITION, goto: NODE}"
                )
                continue
            _take(c, w, node_id, {"if", "goto"}, {"if", "goto"})
            try:
                cond = m.Condition.parse(str(w["if"]))
            except ValueError as e:
                c.err(w.line, node_id, f"if: {e}")
                continue
            for root in cond.roots() - (TEMPLATE_ROOTS | {"open"}):
                c.err(
                    w.line,
                    node_id,
                    f"if: unknown name {root!r} "
                    f"(use {', '.join(sorted(TEMPLATE_ROOTS | {'open'}))})",
                )
            cases.append(m.BranchCase(cond, str(w["goto"])))
        return m.Branch(node_id, L, tuple(cases), s("else"))
    if kind == "set":
        _take(c, raw, node_id, common | {"values", "next"}, {"values", "next"})
        values = raw.get("values")
        if not isinstance(values, dict):
            c.err(L, node_id, "values: expected a mapping of name: value")
            values = {}
        for k, v in values.items():
            c.template(str(v), L, node_id, f"values.{k}")
        return m.SetVars(node_id, L, {str(k): str(v) for k, v in values.items()}, s("next"))
    if kind == "queue":
        _take(c, raw, node_id, common | {"queue", "priority", "say", "intent"}, {"queue"})
        q = s("queue")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", q):
            c.err(raw.key_lines.get("queue", L), node_id, f"queue: {q!r} is not a queue name")
        return m.Queue(
            node_id,
            L,
            q,
            int(_num(c, raw, "priority", node_id, 0, 0, 100)),
            p("say"),
            _str(c, raw, "intent", node_id),
        )
    if kind == "deflect":
        return _deflect(c, raw, node_id, L, p)
    if kind == "hangup":
        _take(c, raw, node_id, common | {"say"}, set())
        return m.Hangup(node_id, L, p("say"))
    if kind == "goto":
        _take(c, raw, node_id, common | {"goto"}, {"goto"})
        return m.Goto(node_id, L, s("goto"))
    if kind == "listen":
        _take(c, raw, node_id, common | {"say", "var", "next", "timeout"}, {"say", "var", "next"})
        var = s("var")
        if var and not re.fullmatch(r"[a-z_][a-z0-9_]*", var):
            c.err(raw.key_lines.get("var", L), node_id, f"var: {var!r} is not a simple name")
        return m.Listen(
            node_id, L, p("say"), var, s("next"), _num(c, raw, "timeout", node_id, 10, 2, 60)
        )
    if kind == "subflow":
        _take(c, raw, node_id, common | {"flow", "next"}, {"flow", "next"})
        return m.SubFlow(node_id, L, s("flow"), s("next"))
    if kind == "return":
        _take(c, raw, node_id, common, set())
        return m.Return(node_id, L)
    # action
    _take(c, raw, node_id, common | {"do", "args", "next", "on_error", "say"}, {"do", "next"})
    do = s("do")
    if do not in ACTIONS:
        c.err(
            raw.key_lines.get("do", L),
            node_id,
            f"do: unknown action {do!r} (known: {', '.join(sorted(ACTIONS))})",
        )
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        c.err(raw.key_lines.get("args", L), node_id, "args: expected a mapping")
        args = {}
    if do == "set_language" and args.get("language") not in c.languages:
        c.err(
            raw.key_lines.get("args", L),
            node_id,
            f"args.language: {args.get('language')!r} is not one of the flow's languages",
        )
    return m.Action(
        node_id,
        L,
        do,
        {str(k): str(v) for k, v in args.items()},
        s("next"),
        _str(c, raw, "on_error", node_id),
        p("say"),
    )


def _hours(c: _Checker, raw: Any, line: int) -> m.BusinessHours | None:
    if raw is None:
        return None
    if not isinstance(raw, _Map):
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
    loader = _Loader(text)
    loader.problems = []
    c = _Checker(file)
    try:
        doc = loader.get_single_data()
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
    finally:
        loader.dispose()
    for line, msg in loader.problems:
        c.err(line, None, msg)
    if not isinstance(doc, _Map):
        c.err(1, None, "a flow file is a mapping with flow, languages, start and nodes")
        raise FlowError(c.problems)
    _take(
        c,
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
    nodes: dict[str, m.AnyNode] = {}
    if not isinstance(raw_nodes, _Map):
        c.err(
            doc.key_lines.get("nodes", doc.line), None, "nodes: expected a mapping of node id: node"
        )
        raw_nodes = _Map()
        raw_nodes.key_lines = {}
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
        for field, target in m.targets(n):
            if target not in raw_nodes:
                line = n.line
                if isinstance(n, m.Menu) and field.startswith("options["):
                    line = next(o.line for o in n.options if o.goto == target)
                c.err(line, n.id, f"{field}: no node {target!r}")
    seen: set[str] = set()
    todo = [start] if start in nodes else []
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in nodes:
            continue
        seen.add(cur)
        todo += [t for _, t in m.targets(nodes[cur])]
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
            if isinstance(n, m.SubFlow) and n.flow not in flows:
                problems.append(
                    FlowProblem(f.file, n.line, n.id, f"flow: no flow named {n.flow!r}")
                )
    if problems:
        raise FlowError(problems)
    return flows
