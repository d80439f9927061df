"""The names Python shares with Asterisk's configuration are spelled alike on both sides."""

from __future__ import annotations

import re
from pathlib import Path

from hotline.contracts import AMI_CHANNEL_VARS, NUMBER_PATTERN, ChannelVar, UserEvent

CONFIG = Path(__file__).resolve().parents[2] / "asterisk-config"


def _dialplan() -> str:
    return (CONFIG / "extensions.conf").read_text()


def test_the_dialplan_reads_and_sets_only_known_hotline_variables() -> None:
    """A variable the dialplan uses that Python does not name (or the reverse) is a typo."""
    used = set(re.findall(r"\$\{(HOTLINE_[A-Z_]+)\}|Set\((HOTLINE_[A-Z_]+)=", _dialplan()))
    names = {a or b for a, b in used}
    # The dialplan's own settings (globals), not part of the contract with Python.
    own = set(re.findall(r"^(HOTLINE_[A-Z_]+)\s*=", _dialplan(), re.M))
    assert names - own <= {v.value for v in ChannelVar}
    # What the hand-off and the callback originate set, the dialplan reads.
    for var in (ChannelVar.QUEUE, ChannelVar.PRIORITY, ChannelVar.CALLBACK_ID):
        assert var.value in names, f"extensions.conf never reads {var}"


def test_manager_conf_exports_every_variable_the_cti_reads() -> None:
    text = (CONFIG / "manager.conf").read_text()
    line = re.search(r"^channelvars\s*=\s*(.+)$", text, re.M)
    assert line is not None, "manager.conf has no channelvars line"
    exported = {v.strip() for v in line.group(1).split(",")}
    assert {v.value for v in AMI_CHANNEL_VARS} <= exported


def test_the_dialplan_raises_the_user_event_the_dispatcher_waits_for() -> None:
    raised = set(re.findall(r"UserEvent\((\w+)", _dialplan()))
    assert raised == {e.value for e in UserEvent}


def test_the_dialplan_checks_callback_numbers_like_python() -> None:
    """The dialplan's REGEX accepts the digits Python dials (the + is stripped first)."""
    found = re.search(r'REGEX\("\^(.+?)\$"', _dialplan())
    assert found is not None
    assert found.group(1) == NUMBER_PATTERN.removeprefix(r"\+?")
