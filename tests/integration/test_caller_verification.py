"""Caller ID is not identity (issue 14), on the demo site, on SQLite and PostgreSQL.

- A known number hears a neutral greeting and nothing about the account (name,
  balance, due date, payment) until the customer's PIN is keyed; the agent's
  screen pop shows how verification went.
- Links by text message and callbacks go to the caller ID: at most
  ``[deflection] max_links_per_number`` / ``max_callbacks_per_number`` per
  ``window_s``, counted in the database (across restarts and processes); a
  refused request is told why and queued.
- A link carries an unguessable token stored with the call, not the call id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from cti.payloads import ivr_part
from hotline.config import load_config
from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.limits import DeflectionLimits
from hotline.deflection.notify import FileNotifier
from hotline.erlang_c import WaitEstimate
from hotline.records.interactions import Interaction, InteractionStore, utcnow
from ivr.flow.engine import CallRouter, Services
from ivr.server import FastAgiServer
from tests.support.fake_asterisk import FakeCall
from tests.support.flows import ServicesFor, dial
from tests.support.records import finished_record

ALICE = "5551234"  # dialplans/data/customers.csv: PIN 2468, a bill of 42 dollars due
ALICE_PIN = "2468"
STRANGER = "5559999"  # no customer
TO_BILLING_AGENT = ["1", "3"]  # main menu: billing; billing menu: a billing agent

BILL = (
    "You have a bill of 42 dollars due on November 30. To pay it now, press 1. "
    "For anything else, press 2."
)
LINK_LIMIT = "Sorry, we cannot send more links to this number for now. Please hold for an agent."
CALLBACK_LIMIT = (
    "Sorry, we cannot book more callbacks for this number for now. Please hold for an agent."
)


@pytest.fixture
async def server(services: Services, tmp_path: Path) -> AsyncIterator[FastAgiServer]:
    """The demo flow with deflection: nobody staffed, so every billing caller is offered."""
    services.callbacks = CallbackStore(services.interactions._db)
    services.notifier = FileNotifier(tmp_path / "outbox.jsonl")
    services.wait_estimate = lambda queue: WaitEstimate(math.inf, "no_agents", "none staffed")
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


def played(services: Services, call: FakeCall, text: str) -> bool:
    return services.prompts.asterisk_path(text, "en") in call.played


def sent(tmp_path: Path) -> list[dict[str, str]]:
    outbox = tmp_path / "outbox.jsonl"
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text().splitlines()]


async def record(services: Services, call: FakeCall) -> Interaction:
    return await finished_record(services, call.linkedid)


# -- verification ------------------------------------------------------------------------------


async def test_a_spoofed_caller_id_hears_nothing_about_the_account(
    server: FastAgiServer, services: Services
) -> None:
    # Alice's number, three wrong PINs, then billing -> balance.
    call = await FakeCall(
        caller=ALICE, keys=["1111#", "2222#", "3333#", "1", "1"], linkedid="1700000300.1"
    ).run(server.port)
    it = await record(services, call)
    assert call.played[0] == services.prompts.asterisk_path("Welcome to Hotline.", "en")
    assert not played(services, call, "Thank you, Alice.")
    assert not played(services, call, BILL)
    assert not played(services, call, "Your balance is 42 dollars.")
    assert it.path == [
        "identify",
        "welcome_known",
        "verify_caller",
        "main_menu",
        "billing_menu",
        "known_for_balance",
        "verify_for_balance",
        "billing_agent",
    ]
    # The PIN is not asked again this call; the agent gets the caller.
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    # What the agent's screen pop shows: how verification went, never the keys.
    pop = ivr_part(it)
    assert pop["self_service"] == [
        {"task": "verify", "outcome": "failed", "method": "pin", "attempts": 3},
        {"task": "verify", "outcome": "locked", "method": "pin", "attempts": 0},
    ]
    assert pop["inputs"]["verify_caller"] == "****"
    assert "1111" not in json.dumps(it.to_json())


async def test_paying_asks_for_the_pin_first(server: FastAgiServer, services: Services) -> None:
    # Alice lets the first PIN prompt time out, then chooses billing -> pay.
    card, expiry = "4111111111111111", "1299"
    call = await FakeCall(
        caller=ALICE, keys=[None, None, None, "1", "2", "9999#"], linkedid="1700000300.2"
    ).run(server.port)
    it = await record(services, call)
    assert it.path[-3:] == ["known_for_payment", "verify_for_payment", "billing_agent"]
    assert "card_number" not in it.path
    right = await FakeCall(
        caller=ALICE,
        keys=[None, None, None, "1", "2", ALICE_PIN + "#", card + "#", expiry, "2"],
        linkedid="1700000300.3",
    ).run(server.port)
    it = await record(services, right)
    assert it.path[5:9] == [
        "known_for_payment",
        "verify_for_payment",
        "payment_due",
        "card_number",
    ]


# -- rate limits -----------------------------------------------------------------------------


async def test_the_fourth_link_in_a_window_is_refused_with_a_reason_even_after_a_restart(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    for n in range(3):
        call = await FakeCall(keys=[*TO_BILLING_AGENT, "1"], linkedid=f"1700000301.{n}").run(
            server.port
        )
        assert call.hung_up_by_server, n
    assert len(sent(tmp_path)) == 3
    fourth = await FakeCall(keys=[*TO_BILLING_AGENT, "1"], linkedid="1700000301.3").run(server.port)
    assert played(services, fourth, LINK_LIMIT)
    assert fourth.variables["HOTLINE_QUEUE"] == "billing"
    assert len(sent(tmp_path)) == 3
    it = await record(services, fourth)
    step = next(s for s in it.steps if s["node"] == "billing_wait")
    assert step["result"] == "link_limited" and it.link_token is None

    # A new process on the same database (nothing in memory): still refused.
    await services.interactions.close()
    services.interactions = InteractionStore(services.interactions._db)
    restarted = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await restarted.start()
    try:
        again = await FakeCall(keys=[*TO_BILLING_AGENT, "1"], linkedid="1700000301.4").run(
            restarted.port
        )
        other = await FakeCall(
            caller="5558888", keys=[*TO_BILLING_AGENT, "1"], linkedid="1700000301.5"
        ).run(restarted.port)
    finally:
        await restarted.stop()
    assert played(services, again, LINK_LIMIT) and "HOTLINE_QUEUE" in again.variables
    # Another number is not held back by this one's links.
    assert other.hung_up_by_server and [m["to"] for m in sent(tmp_path)][-1] == "5558888"


async def test_a_burst_of_calls_from_one_number_gets_no_more_than_the_limit(
    server: FastAgiServer, tmp_path: Path
) -> None:
    calls = [
        FakeCall(caller="5557777", keys=[*TO_BILLING_AGENT, "1"], linkedid=f"1700000302.{n}")
        for n in range(6)
    ]
    await asyncio.gather(*(c.run(server.port) for c in calls))
    assert len(sent(tmp_path)) == 3


async def test_links_older_than_the_window_do_not_count(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    two_days_ago = utcnow() - timedelta(days=2)
    for n in range(3):
        old = Interaction(id=f"old{n}", call_id=f"1600000000.{n}", flow="hotline")
        old.started_at = two_days_ago
        old.link_token, old.link_to, old.link_sent_at = f"tok{n}", "5556666", two_days_ago
        await services.interactions.save(old)
    call = await FakeCall(
        caller="5556666", keys=[*TO_BILLING_AGENT, "1"], linkedid="1700000303.1"
    ).run(server.port)
    assert call.hung_up_by_server and len(sent(tmp_path)) == 1


async def test_the_fourth_callback_in_a_window_is_refused_with_a_reason(
    server: FastAgiServer, services: Services
) -> None:
    store = services.callbacks
    assert store is not None
    for n in range(3):
        call = await FakeCall(keys=[*TO_BILLING_AGENT, "2"], linkedid=f"1700000304.{n}").run(
            server.port
        )
        assert call.hung_up_by_server, n
        [cb] = await store.pending()
        await store.cancel(cb.id, "test")  # done with: the number may book again
    fourth = await FakeCall(keys=[*TO_BILLING_AGENT, "2"], linkedid="1700000304.3").run(server.port)
    assert played(services, fourth, CALLBACK_LIMIT)
    assert fourth.variables["HOTLINE_QUEUE"] == "billing"
    assert await store.pending() == []
    it = await record(services, fourth)
    step = next(s for s in it.steps if s["node"] == "billing_wait")
    assert step["result"] == "callback_limited"


def test_the_limits_are_configurable() -> None:
    cfg = load_config(
        None,
        environ={
            "HOTLINE_DEFLECTION__MAX_LINKS_PER_NUMBER": "1",
            "HOTLINE_DEFLECTION__MAX_CALLBACKS_PER_NUMBER": "0",
            "HOTLINE_DEFLECTION__WINDOW_S": "3600",
        },
    )
    assert DeflectionLimits.from_config(cfg.deflection) == DeflectionLimits(1, 0, 3600.0)
    assert DeflectionLimits.from_config(load_config(None, environ={}).deflection) == (
        DeflectionLimits(3, 3, 86400.0)
    )


# -- the link's token ----------------------------------------------------------------------------


async def test_the_link_token_is_unguessable_stored_and_not_the_call_id(
    server: FastAgiServer, services: Services, tmp_path: Path
) -> None:
    tokens = []
    for n, caller in enumerate(("5551111", "5552222")):
        call = await FakeCall(
            caller=caller, keys=[*TO_BILLING_AGENT, "1"], linkedid=f"1700000305.{n}"
        ).run(server.port)
        it = await record(services, call)
        token = it.link_token
        assert token is not None and call.linkedid not in token
        assert len(base64.urlsafe_b64decode(token + "==")) * 8 >= 128
        assert sent(tmp_path)[-1]["text"].endswith(f"/b/{token}")
        resolved = await services.interactions.by_link_token(token)
        assert resolved is not None and resolved.call_id == call.linkedid
        tokens.append(token)
    assert tokens[0] != tokens[1]
    assert await services.interactions.by_link_token("1700000305.0") is None


OLD_LINK = """\
flow: old_link
start: offer
nodes:
  offer:
    type: deflect
    queue: billing
    threshold: 60
    say: "Press 1 for a link."
    say_no_agents: "Press 1 for a link."
    link:
      kind: pay_bill
      text: {en: "Pay at https://pay.example/b/{call.id}"}
      sent: "Sent."
      failed: "Not sent."
    callback:
      booked: "Booked."
      exists: "You have one."
    next: agent
  agent:
    type: queue
    queue: billing
"""


async def test_a_flow_with_the_call_id_link_still_works(
    flow_services: ServicesFor, tmp_path: Path
) -> None:
    services = await flow_services(OLD_LINK)
    services.notifier = FileNotifier(tmp_path / "outbox.jsonl")
    services.wait_estimate = lambda queue: WaitEstimate(math.inf, "no_agents", "none staffed")
    call = await dial(services, FakeCall(script="old_link", keys=["1"], linkedid="1700000306.1"))
    assert call.hung_up_by_server
    assert sent(tmp_path)[0]["text"] == "Pay at https://pay.example/b/1700000306.1"
