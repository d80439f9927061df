"""The ``verify`` node: a caller ID finds a customer, keys prove who is calling.

Flows here use recorded prompts only (nothing is synthesised); the directory
is SQLite with customers imported from CSV, PINs hashed on import.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.records.customers import (
    CustomerDirectory,
    CustomerImportError,
    birth_date_keyed,
    hash_pin,
    pin_matches,
)
from hotline.records.interactions import Interaction, InteractionStore
from hotline.storage.db import Database
from hotline.storage.tables import CustomerRow
from ivr.flow import render
from ivr.flow.engine import Services
from ivr.flow.loader import FlowError, parse_flow
from ivr.flow.nodes.verify import Verify
from ivr.flow.prompt import Prompt, PromptPart
from ivr.prompts import PromptCache
from tests.support.fake_asterisk import FakeCall
from tests.support.flows import run_flow_text

CUSTOMERS = """\
name,phone,account,language,balance,pin,birth_date
Erin Park,5550100,900123,en,42.00,2468,1985-03-14
Omar Reyes,5550101,900456,en,10.00,,
"""
ERIN = "5550100"
OMAR = "5550101"  # no PIN, no date of birth on file

# Known caller: verified -> the account is spoken; not -> an agent, nothing said.
FLOW = """\
flow: t
start: who
nodes:
  who:
    type: lookup
    by: caller_id
    found: check
    not_found: check
  check:
    type: verify
    method: pin
    say: {file: ask_pin}
    invalid: {file: no_match}
    next: account
    failed: agent
  account:
    type: branch
    when:
      - if: verified
        goto: balance
    else: agent
  balance:
    type: say
    say: {file: your_balance}
    next: again
  again:
    type: verify
    method: pin
    say: {file: ask_pin}
    invalid: {file: no_match}
    next: bye
    failed: agent
  bye:
    type: hangup
  agent:
    type: queue
    queue: support
"""


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await db.migrate()
    directory = CustomerDirectory(db)
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    await directory.import_csv(tmp_path / "customers.csv")
    svc = Services(
        prompts=PromptCache(tmp_path, "/srv/hotline/prompts", {}),
        directory=directory,
        interactions=InteractionStore(db),
        flows={},
    )
    yield svc
    await svc.interactions.close()
    await db.close()


async def call(services: Services, flow_text: str, fake: FakeCall) -> tuple[FakeCall, Interaction]:
    return await run_flow_text(services, flow_text, fake)


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as e:
        parse_flow(text, "dialplans/t.yaml")
    return [str(p) for p in e.value.problems]


BALANCE = "/srv/hotline/prompts/your_balance"
ASK_PIN = "/srv/hotline/prompts/ask_pin"


# -- the file ------------------------------------------------------------------------------


def test_verify_is_read_with_its_defaults_and_drawn() -> None:
    flow = parse_flow(FLOW, "t.yaml")
    ask = Prompt((PromptPart(file={"en": "ask_pin"}),))
    no_match = Prompt((PromptPart(file={"en": "no_match"}),))
    assert flow.nodes["check"] == Verify(
        "check", 9, "pin", ask, "account", "agent", 3, 4, 6.0, no_match
    )
    out = render.outline(flow)
    assert (
        "check  [line 9]\n"
        "    verify the caller by PIN, 3 attempts\n"
        "      verified -> account\n"
        "      failed -> agent\n"
    ) in out
    # Without `failed`, the flow's agent queue takes the caller (shown in outlines).
    bare = parse_flow(FLOW.replace("    failed: agent\n", "", 1), "t.yaml")
    assert "      failed -> agent (support)\n" in render.outline(bare)
    assert "shape=octagon" in render.dot(flow)
    digits = parse_flow(
        FLOW.replace("method: pin", "method: account\n    digits: 6", 1), "t.yaml"
    ).nodes["check"]
    assert digits.describe("en") == (
        "verify the caller by last 6 digits of the account number, 3 attempts"
    )


def test_verify_problems_name_file_line_and_node() -> None:
    text = (
        FLOW.replace("method: pin", "method: voiceprint", 1)
        .replace("    next: account\n", "    next: account\n    attempts: 0\n    digits: 5\n", 1)
        .replace("failed: agent", "failed: nowhere", 1)
    )
    assert problems(text) == [
        "dialplans/t.yaml:9: node 'check': failed: no node 'nowhere'",
        "dialplans/t.yaml:11: node 'check': method: 'voiceprint' is not one of "
        "pin, birth_date, account",
        "dialplans/t.yaml:15: node 'check': attempts: expected a number from 1 to 10",
        "dialplans/t.yaml:16: node 'check': digits: only for method account",
    ]
    assert problems(FLOW.replace("    method: pin\n", "", 1)) == [
        "dialplans/t.yaml:10: node 'check': missing field 'method'"
    ]
    # A PIN never goes in a flow file: there is no such field.
    assert problems(FLOW.replace("    say: {file: ask_pin}\n", "    pin: 1234\n", 1)) == [
        "dialplans/t.yaml:10: node 'check': missing field 'say'",
        "dialplans/t.yaml:12: node 'check': unknown field 'pin' (allowed: attempts, description, "
        "digits, failed, invalid, method, next, say, timeout, type)",
    ]


def test_verified_is_a_condition_name() -> None:
    flow = parse_flow(FLOW, "t.yaml")
    assert "account" in flow.nodes
    bad = FLOW.replace("if: verified", "if: verifed", 1)
    assert problems(bad) == [
        "dialplans/t.yaml:19: node 'account': if: unknown name 'verifed' "
        "(use call, caller, customer, link, open, queue, vars, verified)"
    ]


# -- secrets ---------------------------------------------------------------------------------


def test_a_pin_is_kept_as_a_salted_hash_only() -> None:
    stored = hash_pin("2468")
    assert "2468" not in stored and stored.startswith("scrypt$")
    assert stored != hash_pin("2468")  # salted: the same PIN hashes differently
    assert pin_matches("2468", stored)
    assert not pin_matches("2469", stored) and not pin_matches("", stored)
    assert not pin_matches("2468", "plain$2468")
    with pytest.raises(ValueError):
        hash_pin("12")


def test_a_birth_date_is_keyed_ddmmyyyy() -> None:
    assert str(birth_date_keyed("14031985")) == "1985-03-14"
    assert birth_date_keyed("31021985") is None  # no such day
    assert birth_date_keyed("1985031") is None
    assert birth_date_keyed("19850314") is None  # YYYYMMDD is not the form


async def test_the_directory_stores_no_pin_in_clear_and_rejects_a_bad_one(
    services: Services, tmp_path: Path
) -> None:
    db = services.interactions._db
    async with db.sessions() as s:
        rows = {r.phone: r for r in await s.scalars(select(CustomerRow))}
    stored = rows[ERIN].pin_hash
    assert stored is not None and "2468" not in stored
    assert rows[OMAR].pin_hash is None
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone,account,pin\nZed,5550199,900999,12ab\n")
    with pytest.raises(CustomerImportError) as e:
        await services.directory.import_csv(bad)
    assert str(e.value).endswith("bad.csv:2: pin: expected 4 to 8 digits")
    assert "12ab" not in str(e.value)
    # Re-importing without a pin column keeps the PIN.
    again = tmp_path / "again.csv"
    again.write_text("name,phone,account\nErin Park,5550100,900123\n")
    await services.directory.import_csv(again)
    erin = await services.directory.by_phone(ERIN)
    assert erin is not None
    assert await services.directory.verify(erin.id, "pin", "2468")
    assert await services.directory.set_pin("900123", "1357")
    assert not await services.directory.verify(erin.id, "pin", "2468")
    assert await services.directory.verify(erin.id, "pin", "1357")
    assert not await services.directory.set_pin("000000", "1357")


# -- during a call -------------------------------------------------------------------------


async def test_the_right_pin_verifies_and_the_account_is_spoken(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, it = await call(
        services, FLOW, FakeCall(caller=ERIN, keys=["1111#", "2468#"], linkedid="1.1")
    )
    assert BALANCE in fake.played
    assert it.path == ["who", "check", "account", "balance", "again", "bye"]
    check = it.steps[1]
    assert check["result"] == "verified" and check["tries"] == ["invalid"]
    # Verified once: a later verify step for the same customer does not ask again.
    assert it.steps[4]["result"] == "already_verified"
    assert fake.played.count(ASK_PIN) == 2  # the first try and the retry, not `again`
    assert it.self_service == [
        {"task": "verify", "outcome": "verified", "method": "pin", "attempts": 2}
    ]
    # What was keyed: masked in the record, nowhere in the record or the logs.
    assert it.inputs == {"check": "****"}
    assert "2468" not in str(it.to_json()) and "1111" not in str(it.to_json())
    assert "2468" not in caplog.text


async def test_wrong_pins_go_to_failed_without_a_word_about_the_account(
    services: Services,
) -> None:
    fake, it = await call(
        services,
        FLOW,
        FakeCall(caller=ERIN, keys=["1111#", "2222#", "3333#", "2468#"], linkedid="1.2"),
    )
    assert BALANCE not in fake.played
    assert fake.played.count("/srv/hotline/prompts/no_match") == 3
    assert it.path == ["who", "check", "agent"]
    assert fake.variables["HOTLINE_QUEUE"] == "support"
    assert it.steps[1]["result"] == "failed"
    assert it.self_service == [
        {"task": "verify", "outcome": "failed", "method": "pin", "attempts": 3}
    ]


# Two PIN steps in a row: the second is where a caller who failed the first ends up.
LOCKED = """\
flow: t
start: who
nodes:
  who:
    type: lookup
    by: caller_id
    found: check
    not_found: check
  check:
    type: verify
    method: pin
    say: {file: ask_pin}
    invalid: {file: no_match}
    next: again
    failed: again
  again:
    type: verify
    method: pin
    say: {file: ask_pin}
    invalid: {file: no_match}
    next: balance
    failed: agent
  balance:
    type: say
    say: {file: your_balance}
    next: bye
  bye:
    type: hangup
  agent:
    type: queue
    queue: support
"""


async def test_tries_are_counted_per_call_not_per_step(services: Services) -> None:
    # Three wrong PINs at `check`; `again` (the same method) does not ask at all.
    fake, it = await call(
        services,
        LOCKED,
        FakeCall(caller=ERIN, keys=["1111#", "2222#", "3333#", "2468#"], linkedid="1.3"),
    )
    assert it.path == ["who", "check", "again", "agent"]
    assert it.steps[2]["result"] == "locked"
    assert fake.played.count(ASK_PIN) == 3 and BALANCE not in fake.played
    assert [s["outcome"] for s in it.self_service] == ["failed", "locked"]


async def test_silence_uses_up_the_step_not_the_calls_tries(services: Services) -> None:
    fake, it = await call(
        services, LOCKED, FakeCall(caller=ERIN, keys=[None, None, None, "2468#"], linkedid="1.4")
    )
    assert it.steps[1]["tries"] == ["empty", "empty", "empty"]
    assert it.path == ["who", "check", "again", "balance", "bye"]
    assert BALANCE in fake.played


async def test_no_customer_or_no_pin_on_file_cannot_verify(services: Services) -> None:
    fake, it = await call(services, FLOW, FakeCall(caller="5559999", linkedid="1.5"))
    assert it.path == ["who", "check", "agent"]
    assert it.steps[1]["result"] == "no_customer"
    assert ASK_PIN not in fake.played
    fake, it = await call(services, FLOW, FakeCall(caller=OMAR, keys=["0000#"] * 3, linkedid="1.6"))
    assert it.steps[1]["result"] == "failed" and BALANCE not in fake.played


async def test_birth_date_and_account_digits(services: Services) -> None:
    dob = FLOW.replace("method: pin", "method: birth_date", 1)
    fake, it = await call(services, dob, FakeCall(caller=ERIN, keys=["14031985"], linkedid="2.1"))
    assert BALANCE in fake.played
    assert it.inputs["check"] == "********"
    assert 'GET DATA "/srv/hotline/prompts/ask_pin" 6000 8' in fake.commands
    last4 = FLOW.replace("method: pin", "method: account", 1)
    fake, it = await call(services, last4, FakeCall(caller=ERIN, keys=["0123"], linkedid="2.2"))
    assert BALANCE in fake.played
    assert 'GET DATA "/srv/hotline/prompts/ask_pin" 6000 4' in fake.commands
    fake, it = await call(
        services, last4, FakeCall(caller=ERIN, keys=["0124", "900123", "123"], linkedid="2.3")
    )
    assert BALANCE not in fake.played


async def test_verification_belongs_to_the_customer_it_was_made_for(
    services: Services,
) -> None:
    # Verified as Erin, then the flow looks up another account: `verified` no longer holds.
    flow = FLOW.replace(
        """  account:
    type: branch""",
        """  other:
    type: lookup
    by: var:acct
    found: account
    not_found: agent
  account:
    type: branch""",
        1,
    ).replace("    next: account\n", "    next: set_other\n", 1) + (
        """  set_other:
    type: set
    values: {acct: "900456"}
    next: other
"""
    )
    fake, it = await call(services, flow, FakeCall(caller=ERIN, keys=["2468#"], linkedid="2.4"))
    assert it.path == ["who", "check", "set_other", "other", "account", "agent"]
    assert BALANCE not in fake.played
