"""The deflect step of the demo flow against a scripted AGI peer, on SQLite and PostgreSQL.

The caller presses 1 (billing), then 3 (a billing agent): the flow's
``billing_wait`` step offers a link (1), a callback (2) or waiting (3) when
the estimate is over 60 s.  Real notifier (a file outbox, or a webhook to a
closed port), real callback store; the estimate is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hotline.deflection.callbacks import CallbackStore
from hotline.deflection.notify import FileNotifier, WebhookNotifier
from hotline.erlang_c import WaitEstimate
from hotline.records.interactions import Interaction
from ivr.flow.engine import CallRouter, Services
from ivr.server import FastAgiServer
from tests.support.fake_asterisk import FakeCall
from tests.support.records import finished_record

# What the ``deflecting`` fixture gives: the server, its services, the notifier's outbox.
Deflecting = tuple[FastAgiServer, Services, Path]

TO_BILLING_AGENT = ["1", "3"]  # main menu: billing; billing menu: a billing agent


class Counted(list[tuple[str, str]]):
    def __call__(self, queue: str, what: str) -> None:
        self.append((queue, what))


@pytest.fixture
def counted() -> Counted:
    return Counted()


@pytest.fixture
def estimate() -> Iterator[list[WaitEstimate | None]]:
    yield [WaitEstimate(math.inf, "no_agents", "no agents staffed")]


@pytest.fixture
async def deflecting(
    services: Services, tmp_path: Path, counted: Counted, estimate: list[WaitEstimate | None]
) -> AsyncIterator[Deflecting]:
    outbox = tmp_path / "outbox.jsonl"
    services.callbacks = CallbackStore(services.interactions._db)
    services.notifier = FileNotifier(outbox)
    services.wait_estimate = lambda queue: estimate[0]
    services.on_deflection = counted
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    yield srv, services, outbox
    await srv.stop()


async def record(services: Services, call: FakeCall) -> Interaction:
    return await finished_record(services, call.linkedid)


def callbacks(services: Services) -> CallbackStore:
    """The callback store the ``deflecting`` fixture gave the flow."""
    assert services.callbacks is not None
    return services.callbacks


def played(services: Services, call: FakeCall, text: str) -> bool:
    return services.prompts.asterisk_path(text, "en") in call.played


NO_AGENTS_OFFER = (
    "No billing agent is available right now. To get a link by text message and pay your "
    "bill online, press 1. To be called back when an agent is free, press 2. "
    "To keep waiting, press 3."
)


async def test_no_agent_then_link_by_text_message(deflecting: Deflecting, counted: Counted) -> None:
    server, services, outbox = deflecting
    call = await FakeCall(keys=[*TO_BILLING_AGENT, "1"], linkedid="1700000100.1").run(server.port)
    assert played(services, call, NO_AGENTS_OFFER)
    assert call.hung_up_by_server and "HOTLINE_QUEUE" not in call.variables
    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert len(sent) == 1
    assert sent[0]["to"] == "5559999" and sent[0]["kind"] == "pay_bill"
    it = await record(services, call)
    # The link carries the call's unguessable token (stored with it), not the call id.
    assert it.link_token is not None and it.link_token != call.linkedid
    assert sent[0]["text"].endswith(f"https://pay.hotline.example/b/{it.link_token}")
    assert it.outcome == "deflected"
    assert counted == [("billing", "offered"), ("billing", "link_sent")]


async def test_long_wait_is_announced_in_minutes_then_callback_keeps_the_place(
    deflecting: Deflecting, counted: Counted, estimate: list[WaitEstimate | None]
) -> None:
    server, services, _ = deflecting
    estimate[0] = WaitEstimate(245.0, "erlang_c", "3 ahead, 2 agents, AHT 160 s")
    call = await FakeCall(keys=[*TO_BILLING_AGENT, "2"], linkedid="1700000100.2").run(server.port)
    assert played(
        services,
        call,
        "All our billing agents are busy. Your wait is about 5 minutes. To get a link by text "
        "message and pay your bill online, press 1. To be called back without losing your "
        "place, press 2. To keep waiting, press 3.",
    )
    assert call.hung_up_by_server and "HOTLINE_QUEUE" not in call.variables
    it = await record(services, call)
    [cb] = await callbacks(services).pending("billing")
    assert (cb.number, cb.queue, cb.call_id, cb.interaction_id) == (
        "5559999",
        "billing",
        "1700000100.2",
        it.id,
    )
    # The place in line is when the caller called, not when they pressed 2.
    assert cb.requested_at == it.started_at
    assert it.outcome == "deflected"
    step = next(s for s in it.steps if s["node"] == "billing_wait")
    assert step["result"] == "callback_booked" and step["estimate_s"] == 245
    assert counted == [("billing", "offered"), ("billing", "callback_booked")]

    # Calling again while waiting for the callback: told so, not queued twice.
    again = await FakeCall(keys=[*TO_BILLING_AGENT], linkedid="1700000100.3").run(server.port)
    assert played(
        services,
        again,
        "You already have a callback booked. We will call you back when it is your turn. Goodbye.",
    )
    assert "HOTLINE_QUEUE" not in again.variables
    assert len(await callbacks(services).pending()) == 1


async def test_keep_waiting_and_short_waits_and_no_estimate_go_to_the_queue(
    deflecting: Deflecting, counted: Counted, estimate: list[WaitEstimate | None]
) -> None:
    server, services, _ = deflecting
    call = await FakeCall(keys=[*TO_BILLING_AGENT, "3"]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert counted == [("billing", "offered"), ("billing", "declined")]

    counted.clear()
    estimate[0] = WaitEstimate(30.0, "erlang_c", "short")  # under the flow's 60 s
    call = await FakeCall(keys=[*TO_BILLING_AGENT]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert not played(services, call, NO_AGENTS_OFFER)

    estimate[0] = None  # no CTI in this process: no estimate, no offer
    call = await FakeCall(keys=[*TO_BILLING_AGENT]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert counted == []


async def test_a_link_that_cannot_be_sent_queues_the_caller(
    deflecting: Deflecting, counted: Counted
) -> None:
    server, services, _ = deflecting
    # A webhook nobody listens on: delivery fails, the caller is not dropped.
    services.notifier = WebhookNotifier("http://127.0.0.1:9/sms", attempts=1, timeout_s=1)
    try:
        call = await FakeCall(keys=[*TO_BILLING_AGENT, "1"]).run(server.port)
    finally:
        await services.notifier.close()
    assert played(services, call, "Sorry, we could not send the link. Please hold for an agent.")
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert counted == [("billing", "offered"), ("billing", "link_failed")]


async def test_a_caller_without_a_usable_number_is_not_called_back(deflecting: Deflecting) -> None:
    server, services, outbox = deflecting
    for caller in ("anonymous", "12", "5559999;x"):
        call = await FakeCall(keys=[*TO_BILLING_AGENT, "2"], caller=caller).run(server.port)
        assert call.variables["HOTLINE_QUEUE"] == "billing", caller
    assert await callbacks(services).pending() == []
    assert not outbox.exists()


async def test_zero_in_the_billing_menu_skips_the_offer(
    deflecting: Deflecting, counted: Counted
) -> None:
    server, _, _ = deflecting
    call = await FakeCall(keys=["1", "0"]).run(server.port)
    assert call.variables["HOTLINE_QUEUE"] == "billing"
    assert counted == []
