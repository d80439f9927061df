"""What every node's parse step uses: the YAML mapping with its lines, and the checks.

A node module's ``parse`` gets a :class:`NodeSource` (its mapping, id and
line) and reports problems through it; it never raises, so one pass over a
file finds every problem.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Set
from dataclasses import dataclass
from pathlib import Path

import yaml

from ivr.flow.prompt import Prompt, PromptPart

# A value read from YAML: whatever the file holds, checked before it is used.
Raw = object
TEMPLATE_ROOTS = {"customer", "caller", "vars", "call", "queue", "link"}
# Every node may carry these besides its own fields.
COMMON_FIELDS = frozenset({"type", "description"})
QUEUE_NAME = re.compile(r"[a-z][a-z0-9_-]*")
VAR_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class FlowProblem:
    file: str
    line: int
    node: str | None
    message: str

    def __str__(self) -> str:
        where = f"node '{self.node}': " if self.node else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class YamlMap(dict[str, Raw]):
    """A YAML mapping that remembers where it and each of its keys stand."""

    line: int = 0
    key_lines: dict[str, int]

    @staticmethod
    def empty() -> YamlMap:
        out = YamlMap()
        out.key_lines = {}
        return out


class _Loader(yaml.SafeLoader):
    problems: list[tuple[int, str]]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> YamlMap:
    loader.flatten_mapping(node)
    out = YamlMap.empty()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = str(loader.construct_object(key_node, deep=deep))
        line = key_node.start_mark.line + 1
        if key in out:
            loader.problems.append(
                (line, f"duplicate key {key!r} (first on line {out.key_lines[key]})")
            )
        out[key] = loader.construct_object(value_node, deep=deep)
        out.key_lines[key] = line
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str) -> tuple[Raw, list[tuple[int, str]]]:
    """The document and the (line, message) of each duplicate key.  Raises yaml.YAMLError."""
    loader = _Loader(text)
    loader.problems = []
    try:
        return loader.get_single_data(), loader.problems
    finally:
        loader.dispose()


class Checker:
    """Collects the problems of one file; checks prompts and placeholders."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[FlowProblem] = []
        self.languages: tuple[str, ...] = ("en",)

    def err(self, line: int, node: str | None, message: str) -> None:
        self.problems.append(FlowProblem(self.file, line, node, message))

    def take(self, raw: YamlMap, node: str | None, allowed: Set[str], required: Set[str]) -> None:
        """Unknown fields and missing required fields of one mapping."""
        for key in raw:
            if key not in allowed:
                self.err(
                    raw.key_lines.get(key, raw.line),
                    node,
                    f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})",
                )
        for key in sorted(required):
            if key not in raw:
                self.err(raw.line, node, f"missing field {key!r}")

    # -- prompts ---------------------------------------------------------------
    def prompt(self, raw: Raw, line: int, node: str, field: str) -> Prompt:
        if raw is None:
            return Prompt()
        items = raw if isinstance(raw, list) else [raw]
        parts = []
        for item in items:
            part = self.prompt_part(item, line, node, field)
            if part is not None:
                parts.append(part)
        return Prompt(tuple(parts))

    def prompt_part(self, item: Raw, line: int, node: str, field: str) -> PromptPart | None:
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
        return PromptPart(
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


class NodeSource:
    """One node's mapping in a flow file (or a mapping inside it), for its parse step.

    ``line`` is where problems without a key of their own are reported: the
    ``node_id:`` line for the node itself, the mapping's first line inside it.
    """

    def __init__(
        self,
        checker: Checker,
        raw: YamlMap,
        node_id: str,
        line: int,
        *,
        common: frozenset[str] = COMMON_FIELDS,
        field_prefix: str = "",
    ) -> None:
        self.checker = checker
        self.raw = raw
        self.id = node_id
        self.line = line
        self._common = common
        self._prefix = field_prefix

    @property
    def languages(self) -> tuple[str, ...]:
        return self.checker.languages

    def within(self, raw: YamlMap, field: str = "") -> NodeSource:
        """A mapping inside this node (a menu option, a deflect's ``link``)."""
        return NodeSource(
            self.checker, raw, self.id, raw.line, common=frozenset(), field_prefix=field
        )

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def get(self, key: str) -> Raw:
        return self.raw.get(key)

    def at(self, key: str) -> int:
        """The line of ``key``, or of this node when the key is absent."""
        return self.raw.key_lines.get(key, self.line)

    def err(self, line: int, message: str) -> None:
        self.checker.err(line, self.id, message)

    def take(self, allowed: set[str], required: set[str]) -> None:
        """Report unknown and missing fields (``type`` and ``description`` are always allowed)."""
        self.checker.take(self.raw, self.id, self._common | allowed, required)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A text field (numbers are read as text); a wrong type is reported."""
        v = self.raw.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str | int) or isinstance(v, bool):
            self.err(self.raw.key_lines.get(key, self.raw.line), f"{key}: expected text")
            return default
        return str(v)

    def word(self, key: str, default: str | None = None) -> str:
        """A text field that is "" when absent (a missing field is reported by ``take``)."""
        return self.text(key, default) or ""

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            self.err(
                self.raw.key_lines.get(key, self.raw.line),
                f"{key}: expected a number from {lo:g} to {hi:g}",
            )
            return default
        return float(v)

    def prompt(self, key: str) -> Prompt:
        field = f"{self._prefix}.{key}" if self._prefix else key
        return self.checker.prompt(self.raw.get(key), self.at(key), self.id, field)

    def template(self, text: str, line: int, field: str) -> None:
        self.checker.template(text, line, self.id, field)

    def queue_name(self, key: str = "queue") -> str:
        """A queue field: reported unless it is a name Asterisk's queues.conf can hold."""
        q = self.word(key)
        if not QUEUE_NAME.fullmatch(q):
            self.err(self.at(key), f"{key}: {q!r} is not a queue name")
        return q

    def var_name(self, key: str = "var") -> str:
        var = self.word(key)
        if var and not VAR_NAME.fullmatch(var):
            self.err(self.at(key), f"{key}: {var!r} is not a simple name")
        return var
