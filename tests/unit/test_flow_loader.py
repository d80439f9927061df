"""Flow files: the demo flow loads; every kind of mistake is named with file, line and node."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ivr.flow import render
from ivr.flow.loader import FlowError, load_flows, parse_flow

GOOD = """\
flow: t
languages: [en, ko]
start: menu
nodes:
  menu:
    type: menu
    say: {en: "Press 1.", ko: "1번."}
    options:
      - key: "1"
        goto: bye
  bye:
    type: hangup
    say: {en: "Bye.", ko: "안녕."}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as e:
        parse_flow(text, "dialplans/t.yaml")
    return [str(p) for p in e.value.problems]


def test_demo_flow_loads(repo: Path) -> None:
    flows = load_flows(repo / "dialplans")
    f = flows["hotline"]
    assert f.languages == ("en", "ko")
    assert f.start == "identify"


def test_good_flow_parses() -> None:
    f = parse_flow(GOOD, "t.yaml")
    assert set(f.nodes) == {"menu", "bye"}


def test_unknown_node_type_names_file_line_node() -> None:
    text = GOOD.replace("type: hangup", "type: hangpu")
    assert problems(text) == [
        "dialplans/t.yaml:12: node 'bye': unknown node type 'hangpu' (known: action, branch, "
        "collect, deflect, goto, hangup, listen, lookup, menu, queue, return, say, set, subflow, "
        "transfer, verify)"
    ]


def test_missing_target() -> None:
    text = GOOD.replace("goto: bye", "goto: byee")
    out = problems(text)
    assert "dialplans/t.yaml:9: node 'menu': options[1].goto: no node 'byee'" in out
    assert any("node 'bye': unreachable" in p for p in out)


def test_duplicate_keys_and_option_keys() -> None:
    text = GOOD.replace(
        '      - key: "1"\n        goto: bye\n',
        '      - key: "1"\n        goto: bye\n      - key: "1"\n        goto: bye\n',
    )
    assert any("option key '1' used twice (first on line 9)" in p for p in problems(text))
    dup_node = GOOD + "  bye:\n    type: hangup\n"
    assert any("duplicate key 'bye' (first on line 11)" in p for p in problems(dup_node))


def test_prompt_missing_for_declared_language() -> None:
    text = GOOD.replace('say: {en: "Bye.", ko: "안녕."}', 'say: {en: "Bye."}')
    assert problems(text) == [
        "dialplans/t.yaml:13: node 'bye': say: prompt missing for language 'ko'"
    ]


def test_unknown_field_and_bad_placeholder() -> None:
    text = GOOD.replace(
        'say: {en: "Bye.", ko: "안녕."}',
        'say: {en: "Bye {custmer.name}.", ko: "안녕."}\n    colour: red',
    )
    out = problems(text)
    assert any("node 'bye': unknown field 'colour'" in p for p in out)
    assert any("unknown placeholder {custmer.name}" in p for p in out)


def test_bad_condition_and_planned_types() -> None:
    text = GOOD + "  later:\n    type: callback\n"
    assert any("node 'later': node type 'callback' is planned" in p for p in problems(text))
    text = GOOD.replace("goto: bye", "goto: check") + (
        "  check:\n    type: branch\n    when:\n"
        "      - if: customer.balance >> 3\n        goto: bye\n"
        "    else: bye\n"
    )
    assert any("node 'check': if: cannot read condition" in p for p in problems(text))


def test_invalid_yaml_names_line() -> None:
    assert problems("flow: t\nnodes: [\n")[0].startswith("dialplans/t.yaml:3: not valid YAML")


def test_renderers_cover_every_node(repo: Path) -> None:
    f = load_flows(repo / "dialplans")["hotline"]
    text = render.outline(f)
    for node_id in f.nodes:
        assert node_id in text
    assert "0 -> agent (support)" in text
    assert render.dot(f).startswith('digraph "hotline"')
    assert "main_menu -->|1| billing_menu" in render.mermaid(f)


def test_check_config_rejects_broken_flow(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "dialplans").mkdir()
    (tmp_path / "dialplans" / "hotline.yaml").write_text(GOOD.replace("goto: bye", "goto: nowhere"))
    (tmp_path / "hotline.toml").write_text(
        '[paths]\ndialplans = "dialplans"\n[ami]\nenabled = false\n[ivr]\ndefault_flow = "t"\n'
    )
    r = subprocess.run(
        [str(repo / ".venv/bin/hotline"), "-c", str(tmp_path / "hotline.toml"), "check-config"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "hotline.yaml:9: node 'menu': options[1].goto: no node 'nowhere'" in r.stderr
