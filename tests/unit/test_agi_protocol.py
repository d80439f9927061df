"""The AGI wire format: replies, environments, quoting (pure functions)."""

from __future__ import annotations

import pytest

from ivr.agi import AgiHangup, AgiProtocolError, parse_environment, parse_reply, quote


@pytest.mark.parametrize(
    ("line", "result", "data", "extras"),
    [
        ("200 result=0", "0", None, {}),
        ("200 result=49 endpos=12345", "49", None, {"endpos": "12345"}),
        ("200 result= (timeout)", "", "timeout", {}),
        ("200 result=1 (Alice Martin)", "1", "Alice Martin", {}),
        ("200 result=1 (a (nested) value)", "1", "a (nested) value", {}),
        ("200 result=-1 endpos=0", "-1", None, {"endpos": "0"}),
        ("200 result=0 (dtmf) endpos=4000", "0", "dtmf", {"endpos": "4000"}),
    ],
)
def test_parse_200_replies(
    line: str, result: str, data: str | None, extras: dict[str, str]
) -> None:
    r = parse_reply(line)
    assert (r.code, r.result, r.data, r.extras) == (200, result, data, extras)


def test_error_codes_and_hangup() -> None:
    assert parse_reply("510 Invalid or unknown command").code == 510
    assert parse_reply("511 Command Not Permitted on a dead channel").code == 511
    assert parse_reply("520-Invalid command syntax.  Proper usage follows:").code == 520
    with pytest.raises(AgiHangup):
        parse_reply("HANGUP")


@pytest.mark.parametrize("line", ["", "hello", "2000 result=1", "200 result", "200 foo=bar"])
def test_garbage_replies_are_protocol_errors(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


def test_environment() -> None:
    env = parse_environment(
        [
            "agi_network: yes",
            "agi_network_script: hotline",
            "agi_calleridname: Alice: Martin",
            "agi_channel: PJSIP/x-1",
        ]
    )
    assert env["agi_network_script"] == "hotline"
    assert env["agi_calleridname"] == "Alice: Martin"


@pytest.mark.parametrize(
    "lines",
    [["GET / HTTP/1.1"], ["agi_network: yes"], ["no colon here", "agi_channel: x"], ["x_y: 1"]],
)
def test_bad_environments_are_rejected(lines: list[str]) -> None:
    with pytest.raises(AgiProtocolError):
        parse_environment(lines)


def test_quote_escapes_and_refuses_line_breaks() -> None:
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("a\\b") == '"a\\\\b"'
    with pytest.raises(ValueError):
        quote("x\nHANGUP")
