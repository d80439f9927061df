"""The demo site's flow (``dialplans/hotline.yaml``, customers ``dialplans/data/customers.csv``).

These tests check the DEMO SITE, not the engine: that the journeys the demo
offers (and docs/flows.md shows) still work.  Whoever edits the demo flow
edits them with it.  The engine's behaviours are checked on flows of their
own in test_engine.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import pytest

from hotline.records.interactions import Interaction
from ivr.flow.engine import CallRouter, Services
from ivr.server import FastAgiServer
from tests.support.fake_asterisk import FakeCall
from tests.support.records import finished_record

CARD = "4111111111111111"
EXPIRY = f"12{(date.today().year + 3) % 100:02d}"
ALICE = "5551234"  # the demo's known caller with a bill of 42 dollars due
ALICE_PIN = "2468"  # dialplans/data/customers.csv (docs/flows.md, the demo flow)
DANA_BIRTH_DATE = "30011968"  # DDMMYYYY


@pytest.fixture
async def server(services: Services) -> AsyncIterator[FastAgiServer]:
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


async def record(services: Services, call: FakeCall) -> Interaction:
    return await finished_record(services, call.linkedid)


def played(services: Services, call: FakeCall, text: str, language: str = "en") -> bool:
    return services.prompts.asterisk_path(text, language) in call.played


async def test_demo_known_caller_keys_the_pin_then_is_greeted_by_name_and_offered_the_bill(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(
        caller=ALICE, keys=[ALICE_PIN + "#", "2", "0"], linkedid_argument=True
    ).run(server.port)
    it = await record(services, call)
    assert it.customer_id is not None
    assert it.path == [
        "identify",
        "welcome_known",
        "verify_caller",
        "greet_customer",
        "bill_due",
        "pay_offer",
        "main_menu",
    ]
    # The caller ID alone gets the greeting anyone gets; the name only after the PIN.
    assert call.played[0] == services.prompts.asterisk_path("Welcome to Hotline.", "en")
    pin_asked = call.played.index(
        services.prompts.asterisk_path(
            "For your account, please enter your four digit PIN, then press hash.", "en"
        )
    )
    assert call.played.index(services.prompts.asterisk_path("Thank you, Alice.", "en")) > pin_asked
    assert played(
        services,
        call,
        "You have a bill of 42 dollars due on November 30. To pay it now, press 1. "
        "For anything else, press 2.",
    )
    assert it.inputs["verify_caller"] == "****"
    assert it.self_service[0] == {
        "task": "verify",
        "outcome": "verified",
        "method": "pin",
        "attempts": 1,
    }
    assert call.variables["HOTLINE_QUEUE"] == "support"


async def test_demo_known_caller_pays_the_bill_then_ends_the_call(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(caller=ALICE, keys=[ALICE_PIN + "#", "1", CARD + "#", EXPIRY, "2"]).run(
        server.port
    )
    it = await record(services, call)
    assert it.outcome == "self_served" and call.hung_up_by_server
    assert it.path == [
        "identify",
        "welcome_known",
        "verify_caller",
        "greet_customer",
        "bill_due",
        "pay_offer",
        "card_number",
        "card_expiry",
        "take_payment",
        "anything_else",
        "goodbye",
    ]
    assert it.inputs == {
        "verify_caller": "****",
        "pay_offer": "1",
        "card": "************1111",
        "expiry": "****",
        "anything_else": "2",
    }
    assert it.self_service == [
        {"task": "verify", "outcome": "verified", "method": "pin", "attempts": 1},
        {"task": "pay_bill", "outcome": "paid", "amount": 42.0, "card": "************1111"},
    ]


async def test_demo_unknown_caller_gets_the_balance_by_account_number_and_birth_date(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(keys=["1", "1", "100203", DANA_BIRTH_DATE, "2"]).run(server.port)
    it = await record(services, call)
    assert it.path == [
        "identify",
        "greet_caller",
        "main_menu",
        "billing_menu",
        "known_for_balance",
        "account_number",
        "find_account",
        "verify_birth_date",
        "say_balance",
        "anything_else",
        "goodbye",
    ]
    assert it.self_service == [
        {"task": "verify", "outcome": "verified", "method": "birth_date", "attempts": 1},
        {"task": "balance", "outcome": "done"},
    ]
    assert it.inputs["verify_birth_date"] == "********"
    assert played(services, call, "Your balance is 120.75 dollars.")


async def test_demo_unknown_caller_choosing_support_during_the_greeting(
    server: FastAgiServer, services: Services
) -> None:
    # docs/flows.md's second record: 2 during the welcome, then in the support
    # menu a timeout, 5, and a timeout.
    call = await FakeCall(keys=["!2", None, "5", None]).run(server.port)
    it = await record(services, call)
    assert it.path == ["identify", "greet_caller", "main_menu", "support_menu"]
    assert it.inputs == {"main_menu": "2"}
    assert it.outcome == "queued" and it.queue == "support" and it.intent == "support"
    support = next(s for s in it.steps if s["node"] == "support_menu")
    assert support["tries"] == ["no_input", "invalid:5", "no_input"]


async def test_demo_nine_leads_to_the_korean_menu_and_a_korean_billing_agent(
    server: FastAgiServer, services: Services
) -> None:
    call = await FakeCall(keys=["9", "1"]).run(server.port)
    it = await record(services, call)
    assert it.language == "ko"
    assert it.path[-3:] == ["korean", "korean_menu", "billing_agent"]
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert call.variables["HOTLINE_LANGUAGE"] == "ko"
    assert played(services, call, "요금 상담원을 연결해 드리겠습니다.", "ko")
