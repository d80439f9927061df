"""The call-flow engine against a scripted AGI peer, on SQLite and PostgreSQL.

Each behaviour runs on a small flow written here, with only the nodes it
needs, and on customers written here: nothing comes from ``dialplans/``, so
editing the demo site does not break these tests.  The demo site's own
journeys are checked in test_demo_site.py.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import NoReturn, cast

import pytest

from hotline.records.interactions import Interaction
from ivr.flow.engine import Services
from ivr.speech import Recognition, SpeechRecognizer
from tests.support.fake_asterisk import FakeCall
from tests.support.flows import ServicesFor, dial
from tests.support.records import finished_record

CARD = "4111111111111111"
# A valid expiry (MMYY) for years to come: December, three years from now.
EXPIRY = f"12{(date.today().year + 3) % 100:02d}"

# name,phone,account,language,balance,last_bill_date,last_bill_amount,bill_due_date,open_ticket
CUSTOMERS = """\
Erin Park,5550100,900100,en,42.00,2026-11-01,42.00,2026-11-30,
Omar Reyes,5550101,900101,en,120.75,2026-11-10,120.75,,
"""
ERIN = "5550100"  # has a bill of 42 dollars due on November 30
OMAR_ACCOUNT = "900101"  # balance 120.75, no bill due


async def record(services: Services, call: FakeCall) -> Interaction:
    return await finished_record(services, call.linkedid)


def played(services: Services, call: FakeCall, text: str, language: str = "en") -> bool:
    """Whether the caller was played the prompt with that text."""
    return services.prompts.asterisk_path(text, language) in call.played


def stream_files(call: FakeCall) -> list[str]:
    return [c for c in call.commands if c.startswith("STREAM FILE")]


# -- Call id -----------------------------------------------------------------------------

SAY_THEN_QUEUE = """\
flow: say_then_queue
start: hello
nodes:
  hello:
    type: say
    say: "Welcome."
    next: to_billing
  to_billing:
    type: queue
    queue: billing
"""


async def test_the_call_id_comes_from_the_dialplan_argument_or_is_asked_for(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(SAY_THEN_QUEUE)
    asked = await dial(services, FakeCall(script="say_then_queue", linkedid="1700000000.7"))
    assert asked.commands[0].startswith("GET FULL VARIABLE")
    given = await dial(
        services,
        FakeCall(script="say_then_queue", linkedid="1700000000.8", linkedid_argument=True),
    )
    # No look-up: only the liveness probe (NOOP, answered within reply_timeout)
    # comes before the greeting.
    assert given.commands[0] == "NOOP" and given.commands[1].startswith("STREAM FILE")
    assert not any(c.startswith("GET FULL VARIABLE") for c in given.commands)
    for call in (asked, given):
        it = await record(services, call)
        assert it.call_id == call.linkedid and it.queue == "billing"


# -- Menus -------------------------------------------------------------------------------

# One menu; 0 and exhausted retries go to the flow's agent queue (not the fallback).
ONE_MENU = """\
flow: one_menu
agent_queue: front_desk
start: main_menu
nodes:
  main_menu:
    type: menu
    say: "For billing, press 1."
    options:
      - key: "1"
        goto: to_billing
  to_billing:
    type: queue
    queue: billing
"""

# A menu leading to a sub-menu with an agent queue of its own.
SUBMENU = """\
flow: submenu
agent_queue: front_desk
start: main_menu
nodes:
  main_menu:
    type: menu
    say: "For billing, press 1."
    options:
      - key: "1"
        intent: billing
        goto: billing_menu
  billing_menu:
    type: menu
    say: "For your balance, press 1."
    options:
      - key: "1"
        goto: main_menu
    agent_queue: billing
"""

# A greeting before a menu, whose options lead to another menu.
GREETING = """\
flow: greeting
agent_queue: front_desk
start: greeting
nodes:
  greeting:
    type: say
    say: "Welcome."
    next: main_menu
  main_menu:
    type: menu
    say: "For billing, press 1. For support, press 2."
    options:
      - key: "1"
        intent: billing
        goto: to_billing
      - key: "2"
        intent: support
        goto: support_menu
  support_menu:
    type: menu
    say: "If your internet is down, press 1."
    options:
      - key: "1"
        goto: main_menu
    agent_queue: support
  to_billing:
    type: queue
    queue: billing
"""


async def test_zero_in_a_submenu_reaches_its_agent_queue_with_the_intent(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(SUBMENU)
    call = await dial(services, FakeCall(script="submenu", keys=["1", "0"]))
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    it = await record(services, call)
    assert it.outcome == "queued" and it.queue == "billing"
    assert it.path == ["main_menu", "billing_menu"]
    assert it.intent == "billing"
    assert call.variables["HOTLINE_INTERACTION"] == it.id
    assert call.variables["HOTLINE_INTENT"] == "billing"


async def test_key_pressed_during_greeting_counts_for_the_menu(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(GREETING)
    # "!2" = pressed while the welcome is still playing.
    call = await dial(services, FakeCall(script="greeting", keys=["!2", "0"]))
    it = await record(services, call)
    assert it.path == ["greeting", "main_menu", "support_menu"]
    assert it.inputs["main_menu"] == "2"
    assert it.queue == "support"
    # The main menu prompt was never played: the key had already chosen.
    assert not played(services, call, "For billing, press 1. For support, press 2.")
    assert len(stream_files(call)) == 2  # greeting + support menu
    assert played(services, call, "If your internet is down, press 1.")


async def test_zero_reaches_the_flows_agent_queue_from_a_menu_without_a_zero_option(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(ONE_MENU)
    call = await dial(services, FakeCall(script="one_menu", keys=["0"]))
    assert call.variables["HOTLINE_QUEUE"] == "front_desk"
    it = await record(services, call)
    assert it.outcome == "queued"
    menu_step = next(s for s in it.steps if s["node"] == "main_menu")
    assert menu_step["result"] == "agent"


async def test_retries_exhausted_go_to_an_agent(flow_services: ServicesFor) -> None:
    services = await flow_services(ONE_MENU)
    call = await dial(services, FakeCall(script="one_menu", keys=[None, "7", None]))
    it = await record(services, call)
    assert it.outcome == "queued" and it.queue == "front_desk"
    menu_step = next(s for s in it.steps if s["node"] == "main_menu")
    assert menu_step["tries"] == ["no_input", "invalid:7", "no_input"]
    assert menu_step["result"] == "retries_exhausted"
    assert played(services, call, "Please hold, an agent will be with you shortly.")


# -- Customers: placeholders, collect, payment, balance ---------------------------------------

PERSONAL = """\
flow: personal
agent_queue: front_desk
start: identify
nodes:
  identify:
    type: lookup
    by: caller_id
    found: greet_customer
    not_found: to_agent
  greet_customer:
    type: say
    say: "Hello {customer.first_name}, welcome back."
    next: bill_due
  bill_due:
    type: branch
    when:
      - if: customer.has_bill_due
        goto: pay_offer
    else: to_agent
  pay_offer:
    type: menu
    say: "You have a bill of {customer.balance_spoken} dollars
      due on {customer.bill_due_spoken}. To pay it now, press 1."
    options:
      - key: "1"
        goto: to_agent
  to_agent:
    type: queue
    queue: front_desk
"""


async def test_known_caller_hears_their_own_details_through_placeholders(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(PERSONAL, customers=CUSTOMERS)
    call = await dial(services, FakeCall(script="personal", caller=ERIN, keys=["0"]))
    it = await record(services, call)
    assert it.customer_id is not None
    assert call.variables["HOTLINE_CUSTOMER"] == str(it.customer_id)
    assert it.path == ["identify", "greet_customer", "bill_due", "pay_offer"]
    name_prompt = services.prompts.asterisk_path("Hello Erin, welcome back.", "en")
    assert call.played[0] == name_prompt
    assert played(
        services,
        call,
        "You have a bill of 42 dollars due on November 30. To pay it now, press 1.",
    )


PAYMENT = """\
flow: payment
start: identify
nodes:
  identify:
    type: lookup
    by: caller_id
    found: card_number
    not_found: billing_agent
  card_number:
    type: collect
    say: "Please enter your card number, then press hash."
    var: card
    min_digits: 13
    max_digits: 19
    validate: luhn
    sensitive: true
    next: card_expiry
    on_fail: billing_agent
  card_expiry:
    type: collect
    say: "Please enter the expiry date."
    var: expiry
    min_digits: 4
    max_digits: 4
    validate: expiry
    sensitive: true
    next: take_payment
    on_fail: billing_agent
  take_payment:
    type: action
    do: pay_bill
    args: {card: card, expiry: expiry}
    say: "Thank you. Your payment of {vars.paid_amount} dollars has been received."
    next: goodbye
    on_error: billing_agent
  goodbye:
    type: hangup
    say: "Goodbye."
  billing_agent:
    type: queue
    queue: billing
"""


async def test_known_caller_pays_bill_card_digits_masked(flow_services: ServicesFor) -> None:
    services = await flow_services(PAYMENT, customers=CUSTOMERS)
    call = await dial(services, FakeCall(script="payment", caller=ERIN, keys=[CARD + "#", EXPIRY]))
    it = await record(services, call)
    assert it.outcome == "self_served"
    assert call.hung_up_by_server
    assert it.inputs["card"] == "************1111"
    assert it.inputs["expiry"] == "****"
    assert it.self_service == [
        {"task": "pay_bill", "outcome": "paid", "amount": 42.0, "card": "************1111"}
    ]
    assert played(services, call, "Thank you. Your payment of 42 dollars has been received.")
    customer = await services.directory.by_phone(ERIN)
    assert customer is not None and customer.balance_cents == 0
    # The card number appears nowhere in what we stored.
    assert CARD not in str(it.to_json())


async def test_invalid_card_is_retried_then_agent(flow_services: ServicesFor) -> None:
    services = await flow_services(PAYMENT, customers=CUSTOMERS)
    call = await dial(
        services,
        FakeCall(script="payment", caller=ERIN, keys=["1234567812345678", "4111", "1111"]),
    )
    it = await record(services, call)
    assert it.queue == "billing"
    step = next(s for s in it.steps if s["node"] == "card_number")
    assert step["result"] == "failed" and len(step["tries"]) == 3
    assert "card_expiry" not in it.path


BALANCE = """\
flow: balance
start: account_number
nodes:
  account_number:
    type: collect
    say: "Please enter your six digit account number, then press hash."
    var: account
    min_digits: 6
    max_digits: 6
    next: find_account
    on_fail: billing_agent
  find_account:
    type: lookup
    by: var:account
    found: say_balance
    not_found: billing_agent
  say_balance:
    type: action
    do: say_balance
    say: "Your balance is {customer.balance_spoken} dollars."
    next: goodbye
    on_error: billing_agent
  goodbye:
    type: hangup
  billing_agent:
    type: queue
    queue: billing
"""


async def test_unknown_caller_balance_by_account_number(flow_services: ServicesFor) -> None:
    services = await flow_services(BALANCE, customers=CUSTOMERS)
    call = await dial(services, FakeCall(script="balance", keys=[OMAR_ACCOUNT]))
    it = await record(services, call)
    assert "say_balance" in it.path
    assert it.inputs["account"] == OMAR_ACCOUNT
    assert it.self_service == [{"task": "balance", "outcome": "done"}]
    assert played(services, call, "Your balance is 120.75 dollars.")


# -- Language --------------------------------------------------------------------------------

BILINGUAL = """\
flow: bilingual
languages: [en, ko]
start: main_menu
nodes:
  main_menu:
    type: menu
    say:
      en: "For Korean, press 9."
      ko: "한국어 서비스는 9번을 누르세요."
    options:
      - key: "9"
        goto: korean
  korean:
    type: action
    do: set_language
    args: {language: ko}
    next: korean_menu
  korean_menu:
    type: menu
    say:
      en: "For billing, press 1."
      ko: "요금 문의는 1번을 누르세요."
    options:
      - key: "1"
        intent: billing
        goto: billing_agent
  billing_agent:
    type: queue
    queue: billing
    say:
      en: "Connecting you to a billing agent."
      ko: "요금 상담원을 연결해 드리겠습니다."
"""


async def test_set_language_switches_prompts_record_and_handoff(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(BILINGUAL)
    # No speech model in this test: the Korean menu works by DTMF alone.
    call = await dial(services, FakeCall(script="bilingual", keys=["9", "1"]))
    it = await record(services, call)
    assert it.language == "ko"
    assert it.path[-2:] == ["korean_menu", "billing_agent"]
    assert call.variables["HOTLINE_LANGUAGE"] == "ko"
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert played(services, call, "For Korean, press 9.")
    assert played(services, call, "요금 문의는 1번을 누르세요.", "ko")
    assert played(services, call, "요금 상담원을 연결해 드리겠습니다.", "ko")
    assert not played(services, call, "Connecting you to a billing agent.")


# -- Hangups and failures ------------------------------------------------------------------------

# A call with prompts, menu keys, digits, a lookup and an action: ten AGI
# commands when nobody hangs up (the call id asked for, then the steps).
ERRANDS = """\
flow: errands
start: greeting
nodes:
  greeting:
    type: say
    say: "Welcome."
    next: main_menu
  main_menu:
    type: menu
    say: "For your balance, press 1."
    options:
      - key: "1"
        goto: account_number
  account_number:
    type: collect
    say: "Please enter your six digit account number, then press hash."
    var: account
    min_digits: 6
    max_digits: 6
    next: find_account
  find_account:
    type: lookup
    by: var:account
    found: say_balance
    not_found: goodbye
  say_balance:
    type: action
    do: say_balance
    say: "Your balance is {customer.balance_spoken} dollars."
    next: anything_else
  anything_else:
    type: menu
    say: "For the main menu, press 1. To end the call, press 2."
    options:
      - key: "1"
        goto: main_menu
      - key: "2"
        goto: goodbye
  goodbye:
    type: hangup
    say: "Goodbye."
"""


@pytest.mark.parametrize("after", range(1, 9))
async def test_hangup_at_any_step_is_abandoned_and_nothing_written_after(
    flow_services: ServicesFor, after: int
) -> None:
    services = await flow_services(ERRANDS, customers=CUSTOMERS)
    call = await dial(
        services, FakeCall(script="errands", keys=["1", OMAR_ACCOUNT, "2"], hangup_after=after)
    )
    it = await record(services, call)
    assert it.outcome == "abandoned"
    assert it.ended_at is not None
    # The server wrote nothing after it saw HANGUP.
    assert len(call.commands) == after + 1


CRASH = """\
flow: crash
agent_queue: front_desk
start: identify
nodes:
  identify:
    type: lookup
    by: caller_id
    found: to_billing
    not_found: to_billing
  to_billing:
    type: queue
    queue: billing
"""


async def test_crash_inside_flow_sends_caller_to_agent(
    flow_services: ServicesFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = await flow_services(CRASH)

    async def broken(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("directory down")

    monkeypatch.setattr(services.directory, "by_phone", broken)
    call = await dial(services, FakeCall(script="crash"))
    assert call.variables["HOTLINE_QUEUE"] == "front_desk"
    it = await record(services, call)
    assert it.outcome == "error"
    assert "directory down" in (it.error or "")


async def test_missing_prompt_file_does_not_end_the_call(flow_services: ServicesFor) -> None:
    services = await flow_services(GREETING)
    welcome = services.prompts.asterisk_path("Welcome.", "en")
    call = await dial(services, FakeCall(script="greeting", keys=["0"], missing_files={welcome}))
    assert call.played[0] == welcome
    assert played(services, call, "For billing, press 1. For support, press 2.")
    assert call.variables["HOTLINE_QUEUE"] == "front_desk"


async def test_unknown_agi_path_sends_caller_to_fallback_queue(
    flow_services: ServicesFor,
) -> None:
    services = await flow_services(ONE_MENU)
    call = await dial(services, FakeCall(script="nosuchflow"))
    assert call.variables["HOTLINE_QUEUE"] == services.fallback_queue == "support"


# -- Sub-flows ------------------------------------------------------------------------------------

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


async def test_subflow_set_branch_and_priority(flow_services: ServicesFor) -> None:
    services = await flow_services(SUBFLOW_MAIN, SUBFLOW_CONFIRM)
    call = await dial(services, FakeCall(script="main", keys=["1"]))
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert call.variables["HOTLINE_PRIORITY"] == "5"
    it = await record(services, call)
    assert it.path == ["set_topic", "ask", "question", "yes_node", "back", "decide", "to_billing"]


# -- Speech ---------------------------------------------------------------------------------------


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


# A Korean speech menu (Korean only: the call starts in Korean, where the
# ScriptedRecognizer has a "model").
SPEECH_MENU = """\
flow: speech_menu
languages: [ko]
agent_queue: front_desk
start: korean_menu
nodes:
  korean_menu:
    type: menu
    speech: true
    say: "요금 문의, 기술 지원, 상담원 연결 중에서 말씀하시거나 1번, 2번, 0번을 누르세요."
    options:
      - key: "1"
        intent: billing
        phrases: {ko: ["요금 문의"]}
        goto: billing_agent
      - key: "2"
        intent: support
        phrases: {ko: ["기술 지원"]}
        goto: support_agent
      - key: "0"
        intent: agent
        phrases: {ko: ["상담원 연결"]}
        goto: support_agent
  billing_agent:
    type: queue
    queue: billing
  support_agent:
    type: queue
    queue: support
"""


async def _speech_call(
    flow_services: ServicesFor, tmp_path: Path, heard: list[str], keys: list[str | None]
) -> tuple[Services, FakeCall, Interaction]:
    services = await flow_services(SPEECH_MENU)
    scripted(services, heard)
    services.asr_host = tmp_path
    call = await dial(services, FakeCall(script="speech_menu", keys=keys, record_dir=tmp_path))
    return services, call, await record(services, call)


async def test_speech_no_match_twice_then_dtmf_on_the_last_try(
    flow_services: ServicesFor, tmp_path: Path
) -> None:
    services, call, it = await _speech_call(flow_services, tmp_path, ["안녕", "안녕"], ["1"])
    step = next(s for s in it.steps if s["node"] == "korean_menu")
    assert step["tries"] == ["no_match:안녕", "no_match:안녕"] and step["result"] == "1"
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert [t["option"] for t in it.transcripts] == [None, None]
    # The grammar is the menu's own phrases in the caller's language.
    assert grammars(services)[0] == ["요금 문의", "기술 지원", "상담원 연결"]
    assert list(tmp_path.glob("*.wav")) == []  # utterances deleted


async def test_speech_silence_reprompts_then_agent(
    flow_services: ServicesFor, tmp_path: Path
) -> None:
    _, call, it = await _speech_call(flow_services, tmp_path, ["", ""], [None])
    step = next(s for s in it.steps if s["node"] == "korean_menu")
    assert step["tries"] == ["no_input", "no_input", "no_input"]
    assert step["result"] == "retries_exhausted"
    assert call.variables["HOTLINE_QUEUE"] == "front_desk"


async def test_speech_choice_recorded_as_transcript(
    flow_services: ServicesFor, tmp_path: Path
) -> None:
    _, call, it = await _speech_call(flow_services, tmp_path, ["상담원 연결"], [])
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
    flow_services: ServicesFor, tmp_path: Path
) -> None:
    services = await flow_services(LISTEN_FLOW)
    scripted(services, ["요금 문의 하려고요"])
    services.asr_host = tmp_path
    call = await dial(
        services, FakeCall(script="survey", record_dir=tmp_path, linkedid="1700000000.9")
    )
    it = await record(services, call)
    assert grammars(services) == [None]  # free-form: no grammar
    assert it.inputs["reason"] == "요금 문의 하려고요"
    assert [(t["node"], t["text"]) for t in it.transcripts] == [("why", "요금 문의 하려고요")]
    assert call.variables["HOTLINE_QUEUE"] == "support"
    assert list(tmp_path.glob("*.wav")) == []  # the caller's audio is deleted
