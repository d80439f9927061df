"""Callbacks: the store's life cycle and the dispatcher's rules, against a scripted AMI.

The dispatcher's real-Asterisk proof is tests/live/test_deflection_live.py; here
the AMI peer is scripted so every outcome (agent does not answer, caller
does not answer, attempts run out) and the "keeps the caller's place" rule
can be checked quickly, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, cast

from cti.ami import AmiClient
from cti.callbacks import CallbackDispatcher, CallbackPolicy
from cti.state import CallCenter
from hotline.deflection.callbacks import CallbackStore
from hotline.storage.db import Database


async def test_booking_twice_keeps_one_callback_and_its_place(db: Database) -> None:
    store = CallbackStore(db)
    first = await store.book(queue="billing", number="5550999", call_id="c1")
    again = await store.book(queue="billing", number="+5550999", call_id="c2")
    assert again.id == first.id and again.call_id == "c1"
    assert [c.id for c in await store.pending("billing")] == [first.id]


async def test_calls_from_one_number_booking_at_once_get_one_callback(db: Database) -> None:
    stores = [CallbackStore(db) for _ in range(5)]  # as five calls' engines would
    booked = await asyncio.gather(
        *(s.book(queue="billing", number="5550777", call_id=f"c{i}") for i, s in enumerate(stores))
    )
    assert len({cb.id for cb in booked}) == 1
    assert [c.id for c in await stores[0].pending("billing")] == [booked[0].id]
    # Once it is done, the number may book again.
    await stores[0].cancel(booked[0].id, "test")
    later = await stores[0].book(queue="billing", number="5550777", call_id="c9")
    assert later.id != booked[0].id


class AttemptPolicy(TypedDict):
    """The policy keywords of CallbackStore.finish_attempt."""

    max_attempts: int
    retry_after_s: float


async def test_attempts_agent_no_answer_is_free_caller_no_answer_counts(db: Database) -> None:
    store = CallbackStore(db)
    cb = await store.book(queue="billing", number="5550999", call_id="c1")
    policy: AttemptPolicy = {"max_attempts": 2, "retry_after_s": 60}
    await store.start_attempt(cb.id, "1001")
    after = await store.finish_attempt(
        cb.id, "agent_no_answer", connected=False, counts=False, **policy
    )
    assert after is not None and after.status == "pending" and after.attempts == 0
    await store.start_attempt(cb.id, "1001")
    after = await store.finish_attempt(cb.id, "noanswer", connected=False, **policy)
    assert after is not None and after.status == "pending" and after.attempts == 1
    assert after.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50)
    await store.start_attempt(cb.id, "1002")
    after = await store.finish_attempt(cb.id, "busy", connected=False, **policy)
    assert after is not None and after.status == "failed" and after.attempts == 2
    assert [h["event"] for h in after.history] == [
        "booked",
        *["dialing", "attempt_result"] * 3,
    ]


async def test_a_restart_puts_callbacks_being_dialled_back_in_line(db: Database) -> None:
    store = CallbackStore(db)
    cb = await store.book(queue="billing", number="5550999", call_id="c1")
    await store.start_attempt(cb.id, "1001")
    assert await store.recover(max_attempts=3, retry_after_s=55) == 1
    got = await store.get(cb.id)
    assert got is not None and got.status == "pending" and got.last_result == "interrupted"
    # The interrupted call may still be ringing: not dialled again at once.
    assert got.next_attempt_at > datetime.now(UTC) + timedelta(seconds=50)
    # A restart during the last allowed attempt fails it rather than calling again.
    await store.start_attempt(cb.id, "1001")
    assert await store.recover(max_attempts=2) == 1
    got = await store.get(cb.id)
    assert got is not None and got.status == "failed" and got.attempts == 2


class ScriptedAmi:
    """Plays Asterisk for Originate: the agent answers or not, then the caller's result."""

    def __init__(self, agent_answers: bool = True) -> None:
        self.logged_in = True
        self.agent_answers = agent_answers
        self.originates: list[dict[str, Any]] = []
        self.dispatcher: CallbackDispatcher | None = None
        self.caller_status = "ANSWER"

    async def action(self, action: dict[str, Any], timeout: float = 10.0) -> list[dict[str, Any]]:
        assert action["Action"] == "Originate"
        self.originates.append(action)
        queued = {"Response": "Success", "Message": "Originate successfully queued"}
        if not self.agent_answers:
            return [queued, {"Event": "OriginateResponse", "Response": "Failure", "Reason": "3"}]
        variables = dict(v.split("=", 1) for v in action["Variable"])

        def caller_result() -> None:
            assert self.dispatcher is not None
            self.dispatcher.on_event(
                {
                    "Event": "UserEvent",
                    "UserEvent": "HotlineCallback",
                    "Id": variables["HOTLINE_CALLBACK_ID"],
                    "Status": self.caller_status,
                }
            )

        asyncio.get_running_loop().call_later(0.05, caller_result)
        return [queued, {"Event": "OriginateResponse", "Response": "Success"}]

    def client(self) -> AmiClient:
        """This script where the dispatcher takes an AmiClient (it only uses what is here)."""
        return cast(AmiClient, self)


def billing_with(available: list[str], waiting_since: list[float]) -> CallCenter:
    state = CallCenter()
    q = state.queue("billing")
    for number in ("1001", "1002"):
        agent = state.agent(number)
        agent.interface = f"PJSIP/agent{number}"
        agent.state = "available" if number in available else "busy"
        q.members.add(number)
    for i, joined in enumerate(waiting_since):
        q.callers[f"PJSIP/callers-{i}"] = (f"call{i}", joined)
    return state


async def test_dispatch_waits_for_callers_ahead_then_rings_the_free_agent_first(
    db: Database,
) -> None:
    store = CallbackStore(db)
    booked_at = datetime.now(UTC)
    cb = await store.book(queue="billing", number="5550999", call_id="c1", requested_at=booked_at)
    # One caller still on the line joined before the callback was booked.
    state = billing_with(["1002"], [booked_at.timestamp() - 30])
    ami = ScriptedAmi()
    dispatcher = CallbackDispatcher(store, state, ami.client(), CallbackPolicy())
    ami.dispatcher = dispatcher
    assert await dispatcher.dispatch_due() == 0  # they are served first
    state.queue("billing").callers.clear()
    # A caller who joined after the booking does not hold the callback back.
    state.queue("billing").callers["PJSIP/callers-9"] = ("late", time.time() + 5)
    assert await dispatcher.dispatch_due() == 1
    await asyncio.gather(*dispatcher._running.values())
    [originate] = ami.originates
    assert originate["Channel"] == "PJSIP/agent1002"
    assert originate["Context"] == "hotline-callback" and originate["Exten"] == "s"
    assert "HOTLINE_CALLBACK_NUMBER=5550999" in originate["Variable"]
    done = await store.get(cb.id)
    assert done is not None and done.status == "completed" and done.agent == "1002"


async def test_agent_not_answering_retries_without_using_up_the_callers_attempts(
    db: Database,
) -> None:
    store = CallbackStore(db)
    cb = await store.book(queue="billing", number="5550999", call_id="c1")
    state = billing_with(["1001"], [])
    ami = ScriptedAmi(agent_answers=False)
    outcomes: list[tuple[str, str]] = []
    dispatcher = CallbackDispatcher(
        store,
        state,
        ami.client(),
        CallbackPolicy(max_attempts=1),
        on_outcome=lambda q, w: outcomes.append((q, w)),
    )
    assert await dispatcher.dispatch_due() == 1
    await asyncio.gather(*dispatcher._running.values())
    got = await store.get(cb.id)
    assert got is not None and got.status == "pending" and got.attempts == 0
    assert got.last_result == "agent_no_answer:3"
    assert outcomes == []
    # That agent is left alone for a while; the other one gets the next try.
    state.agent("1002").state = "available"
    assert dispatcher.free_agent("billing") == "1002"


async def test_caller_not_answering_until_attempts_run_out_fails_the_callback(
    db: Database,
) -> None:
    store = CallbackStore(db)
    cb = await store.book(queue="billing", number="5550999", call_id="c1")
    state = billing_with(["1001"], [])
    ami = ScriptedAmi()
    ami.caller_status = "NOANSWER"
    outcomes: list[tuple[str, str]] = []
    dispatcher = CallbackDispatcher(
        store,
        state,
        ami.client(),
        CallbackPolicy(max_attempts=2, retry_after_s=0.01),
        on_outcome=lambda q, w: outcomes.append((q, w)),
    )
    ami.dispatcher = dispatcher
    for _ in range(2):
        await asyncio.sleep(0.05)
        assert await dispatcher.dispatch_due() == 1
        await asyncio.gather(*dispatcher._running.values())
    got = await store.get(cb.id)
    assert got is not None and got.status == "failed" and got.attempts == 2
    assert got.last_result == "noanswer"
    assert outcomes == [("billing", "callback_failed")]
    assert await dispatcher.dispatch_due() == 0


async def test_a_caller_joining_now_waits_behind_the_callbacks_booked(db: Database) -> None:
    store = CallbackStore(db)
    # Both billing agents busy, nobody on the line, two callbacks keeping their place.
    state = billing_with([], [])
    for i in range(5):  # handle times: the estimate has something to go on
        state.queue("billing").history.record_completed(120.0, time.time() - 60 + i)
    before = state.wait_estimate("billing")
    for n in ("5550991", "5550992"):
        await store.book(queue="billing", number=n, call_id=f"c{n}")
    dispatcher = CallbackDispatcher(store, state, ScriptedAmi().client(), CallbackPolicy())
    assert await dispatcher.dispatch_due() == 0  # no agent free: both still wait
    after = state.wait_estimate("billing")
    assert state.queue_stats("billing")["callbacks_waiting"] == 2
    assert after.seconds > before.seconds
    # Two callbacks ahead weigh as two callers on the line ahead.
    q = state.queue("billing")
    q.callbacks_waiting = 0
    q.callers["PJSIP/callers-1"] = ("c1", time.time())
    q.callers["PJSIP/callers-2"] = ("c2", time.time())
    assert state.wait_estimate("billing").seconds == after.seconds
    q.callers.clear()
    # Booking counts at once (the stats a supervisor sees), before the dispatcher looks.
    state.count_deflection("billing", "callback_booked")
    assert state.queue_stats("billing")["callbacks_waiting"] == 1
