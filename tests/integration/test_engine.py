"""The call-flow engine against a scripted AGI peer, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn, cast

import pytest

from hotline.records.interactions import Interaction
from ivr.flow.engine import CallRouter, Services
from ivr.server import FastAgiServer
from ivr.speech import Recognition, SpeechRecognizer
from tests.support.fake_asterisk import FakeCall
from tests.support.records import finished_record

CARD = "4111111111111111"


@pytest.fixture
async def server(services: Services) -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


async def record(services: Services, call: FakeCall) -> Interaction:
    return await finished_record(services, call.linkedid)


async def test_the_call_id_comes_from_the_dialplan_argument_or_is_asked_for(
    server: FastAgiServer, services: Services
) -> None:
    asked = await FakeCall(keys=["1", "0"], linkedid="1700000000.7").run(server.port)
    assert asked.commands[0].startswith("GET FULL VARIABLE")
    given = await FakeCall(keys=["1", "0"], linkedid="1700000000.8", linkedid_argument=True).run(
        server.port
    )
    # One round trip less before the greeting: the first command plays it.
    assert given.commands[0].startswith("STREAM FILE")
    assert not any(c.startswith("GET FULL VARIABLE") for c in given.commands)
    for call in (asked, given):
        it = await record(services, call)
        assert it.call_id == call.linkedid and it.queue == "billing"


async def test_billing_then_agent_reaches_billing_queue(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(keys=["1", "0"]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    it = await record(services, call)
    assert it.outcome == "queued" and it.queue == "billing"
    assert it.path == ["identify", "greet_caller", "main_menu", "billing_menu"]
    assert it.intent == "billing"
    assert call.variables["HOTLINE_INTERACTION"] == it.id
    assert call.variables["HOTLINE_INTENT"] == "billing"


async def test_key_pressed_during_greeting_counts_for_the_menu(
    server: FastAgiServer, services: Services
) -> None:
    # "!2" = pressed while the welcome is still playing.
    call = await FakeCall(keys=["!2", "0"]).run(server.port)
    it = await record(services, call)
    assert it.path[:4] == ["identify", "greet_caller", "main_menu", "support_menu"]
    assert it.queue == "support"
    # The main menu prompt was never played: the key had already chosen.
    main_menu_plays = [p for p in call.played if p.endswith(".wav")]
    assert main_menu_plays == []
    assert (
        len([c for c in call.commands if c.startswith("STREAM FILE")]) == 2
    )  # greeting + support menu


async def test_zero_reaches_an_agent_from_the_main_menu(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(keys=["0"]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "support"


async def test_retries_exhausted_go_to_an_agent(server: FastAgiServer, services: Services) -> None:
    call = await FakeCall(keys=[None, "7", None]).run(server.port)
    it = await record(services, call)
    assert it.outcome == "queued" and it.queue == "support"
    menu_step = next(s for s in it.steps if s["node"] == "main_menu")
    assert menu_step["tries"] == ["no_input", "invalid:7", "no_input"]
    assert menu_step["result"] == "retries_exhausted"


async def test_known_caller_is_greeted_by_name_and_offered_the_bill(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(caller="5551234", keys=["2", "0"]).run(server.port)
    it = await record(services, call)
    assert it.customer_id is not None
    assert it.path[:4] == ["identify", "greet_customer", "bill_due", "pay_offer"]
    name_prompt = services.prompts.asterisk_path("Hello Alice, welcome back to Hotline.", "en")
    assert call.played[0] == name_prompt
    offer = services.prompts.asterisk_path(
        "You have a bill of 42 dollars due on November 30. To pay it now, press 1. "
        "For anything else, press 2.",
        "en",
    )
    assert offer in call.played


async def test_known_caller_pays_bill_card_digits_masked(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(caller="5551234", keys=["1", CARD + "#", "1230", "2"]).run(server.port)
    it = await record(services, call)
    assert it.outcome == "self_served"
    assert call.hung_up_by_server
    assert it.inputs["card"] == "************1111"
    assert it.inputs["expiry"] == "****"
    assert it.self_service == [
        {"task": "pay_bill", "outcome": "paid", "amount": 42.0, "card": "************1111"}
    ]
    customer = await services.directory.by_phone("5551234")
    assert customer is not None and customer.balance_cents == 0
    # The card number appears nowhere in what we stored.
    assert CARD not in str(it.to_json())


async def test_invalid_card_is_retried_then_agent(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(caller="5551234", keys=["1", "1234567812345678", "4111", "1111"]).run(
        server.port
    )
    it = await record(services, call)
    assert it.queue == "billing"
    step = next(s for s in it.steps if s["node"] == "card_number")
    assert step["result"] == "failed" and len(step["tries"]) == 3


async def test_unknown_caller_balance_by_account_number(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(keys=["1", "1", "100203", "2"]).run(server.port)
    it = await record(services, call)
    assert "say_balance" in it.path
    assert it.inputs["account"] == "100203"
    assert it.self_service == [{"task": "balance", "outcome": "done"}]
    assert services.prompts.asterisk_path("Your balance is 120.75 dollars.", "en") in call.played


async def test_korean_branch_switches_language_and_takes_keys(
    server: FastAgiServer, services: Services
) -> None:
    # No speech model in this test: the Korean menu works by DTMF alone.
    call = await FakeCall(keys=["9", "1"]).run(server.port)
    it = await record(services, call)
    assert it.language == "ko"
    assert it.path[-2:] == ["korean_menu", "billing_agent"]
    assert call.variables["HOTLINE_LANGUAGE"] == "ko"
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert services.prompts.asterisk_path("요금 상담원을 연결해 드리겠습니다.", "ko") in call.played


@pytest.mark.parametrize("after", range(1, 9))
async def test_hangup_at_any_step_is_abandoned_and_nothing_written_after(
    server: FastAgiServer, services: Services, after: int
) -> None:
    call = await FakeCall(keys=["1", "1", "100203", "2"], hangup_after=after).run(server.port)
    it = await record(services, call)
    assert it.outcome == "abandoned"
    assert it.ended_at is not None
    # The server wrote nothing after it saw HANGUP.
    assert len(call.commands) == after + 1


async def test_crash_inside_flow_sends_caller_to_agent(
    server: FastAgiServer, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("directory down")

    monkeypatch.setattr(services.directory, "by_phone", broken)
    call = await FakeCall().run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "support"
    it = await record(services, call)
    assert it.outcome == "error"
    assert "directory down" in (it.error or "")


async def test_missing_prompt_file_does_not_end_the_call(
    server: FastAgiServer, services: Services
) -> None:
    welcome = services.prompts.asterisk_path("Welcome to Hotline.", "en")
    call = await FakeCall(keys=["0"], missing_files={welcome}).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "support"


async def test_unknown_agi_path_sends_caller_to_fallback_queue(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(script="nosuchflow").run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "support"


SUBFLOW_MAIN = """\
flow: main
languages: [en]
agent_queue: support
start: set_topic
nodes:
  set_topic:
    type: set
    values: {topic: "billing for {caller.number}"}
    next: ask
  ask:
    type: subflow
    flow: confirm
    next: decide
  decide:
    type: branch
    when:
      - if: vars.confirmed == 'yes'
        goto: to_billing
    else: bye
  to_billing:
    type: queue
    queue: billing
    priority: 5
  bye:
    type: hangup
"""

SUBFLOW_CONFIRM = """\
flow: confirm
languages: [en]
start: question
nodes:
  question:
    type: menu
    say: {en: "Press 1 to confirm."}
    options:
      - key: "1"
        goto: yes_node
  yes_node:
    type: set
    values: {confirmed: "yes"}
    next: back
  back:
    type: return
"""


async def test_subflow_set_branch_and_priority(services: Services, tmp_path: Path) -> None:
    from ivr.flow.loader import load_flows

    (tmp_path / "main.yaml").write_text(SUBFLOW_MAIN)
    (tmp_path / "confirm.yaml").write_text(SUBFLOW_CONFIRM)
    services.flows = load_flows(tmp_path)
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    try:
        call = await FakeCall(script="main", keys=["1"]).run(srv.port)
    finally:
        await srv.stop()
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert call.variables["HOTLINE_PRIORITY"] == "5"
    it = await record(services, call)
    assert it.path == ["set_topic", "ask", "question", "yes_node", "back", "decide", "to_billing"]


class ScriptedRecognizer:
    """Stands in for Vosk in engine unit tests: hears what the test says, in order.

    Real decoding is proven in tests/live/test_speech_live.py through real Asterisk.
    """

    def __init__(self, heard: list[str]) -> None:
        self.heard = heard
        self.grammars: list[list[str] | None] = []

    def available(self, language: str) -> bool:
        return language == "ko"

    def warn_once(self, language: str, message: str) -> None:
        pass

    async def recognize_file(
        self, wav: Path, language: str, phrases: list[str] | None
    ) -> Recognition:
        self.grammars.append(phrases)
        return Recognition(self.heard.pop(0), 0.9, language)


def scripted(services: Services, heard: list[str]) -> None:
    """Let the ScriptedRecognizer stand in for Vosk: it has what the engine calls of one."""
    services.speech = cast(SpeechRecognizer, ScriptedRecognizer(heard))


def grammars(services: Services) -> list[list[str] | None]:
    """The grammars the ScriptedRecognizer installed by ``scripted`` was given."""
    return cast(ScriptedRecognizer, services.speech).grammars


async def _korean_call(
    server: FastAgiServer,
    services: Services,
    tmp_path: Path,
    heard: list[str],
    keys: list[str | None],
) -> tuple[FakeCall, Interaction]:
    scripted(services, heard)
    services.asr_host = tmp_path
    call = FakeCall(keys=["9", *keys], record_dir=tmp_path)
    await call.run(server.port)
    return call, await record(services, call)


async def test_speech_no_match_twice_then_dtmf_on_the_last_try(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    call, it = await _korean_call(server, services, tmp_path, ["안녕", "안녕"], ["1"])
    step = next(s for s in it.steps if s["node"] == "korean_menu")
    assert step["tries"] == ["no_match:안녕", "no_match:안녕"] and step["result"] == "1"
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert [t["option"] for t in it.transcripts] == [None, None]
    # The grammar is the menu's own phrases in the caller's language.
    assert grammars(services)[0] == ["요금 문의", "기술 지원", "상담원 연결"]
    assert list(tmp_path.glob("*.wav")) == []  # utterances deleted


async def test_speech_silence_reprompts_then_agent(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    call, it = await _korean_call(server, services, tmp_path, ["", ""], [None])
    step = next(s for s in it.steps if s["node"] == "korean_menu")
    assert step["tries"] == ["no_input", "no_input", "no_input"]
    assert step["result"] == "retries_exhausted"
    assert call.variables["HOTLINE_QUEUE"] == "support"


async def test_speech_choice_recorded_as_transcript(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    call, it = await _korean_call(server, services, tmp_path, ["상담원 연결"], [])
    assert call.variables["HOTLINE_QUEUE"] == "support"
    assert it.transcripts[0]["text"] == "상담원 연결" and it.transcripts[0]["option"] == "0"
    assert it.intent == "agent"


LISTEN_FLOW = """\
flow: survey
languages: [ko]
agent_queue: support
start: why
nodes:
  why:
    type: listen
    var: reason
    say: {ko: "전화하신 이유를 짧게 말씀해 주세요."}
    timeout: 5
    next: done
  done:
    type: queue
    queue: support
"""


async def test_free_form_listen_keeps_the_transcript_not_the_audio(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    from ivr.flow.loader import load_flows

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "survey.yaml").write_text(LISTEN_FLOW, encoding="utf-8")
    services.flows = {**services.flows, **load_flows(flows)}
    scripted(services, ["요금 문의 하려고요"])
    services.asr_host = tmp_path
    call = FakeCall(script="survey", record_dir=tmp_path, linkedid="1700000000.9")
    await call.run(server.port)
    it = await record(services, call)
    assert grammars(services) == [None]  # free-form: no grammar
    assert it.inputs["reason"] == "요금 문의 하려고요"
    assert [(t["node"], t["text"]) for t in it.transcripts] == [("why", "요금 문의 하려고요")]
    assert call.variables["HOTLINE_QUEUE"] == "support"
    assert list(tmp_path.glob("*.wav")) == []  # the caller's audio is deleted
