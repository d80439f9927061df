"""The agent desk as ``hotline serve`` builds it (cti.setup), against a scripted
AMI peer that plays Asterisk's queues (members, pauses and their reasons,
static and dynamic memberships, the events each change makes), on SQLite and
PostgreSQL: state changes go to Asterisk and come back on the retained state
topic; wrap-up after a call, its end, a pause meanwhile, a restart mid-way;
a disposition lands on the interaction, in ``hotline calls show`` and in the
next pop for the same customer.

Against the real Asterisk: tests/live/test_agent_desk_live.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from cti import setup as cti_feature
from cti.amiproto import encode_action
from cti.desk import (
    AgentDesk,
    AsteriskRefused,
    AsteriskUnavailable,
    InvalidDisposition,
    InvalidReason,
    NotInWrapup,
    NotYourCall,
    StaticMembership,
    UnknownCall,
)
from cti.payloads import ScreenPopPayload
from hotline.config import load_config
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore
from hotline.storage.db import Database
from tests.support.paths import REPO
from tests.unit.test_ami_client import FakeAmi

WRAPUP_S = 0.6
ALICE = "5551234"  # dialplans/data/customers.csv: customer 1, flagged vip


@dataclass
class Member:
    static: bool
    paused: bool = False
    reason: str = ""


class QueuesPeer:
    """Asterisk's queue side over the scripted AMI peer: answers QueuePause,
    QueueRemove, QueueAdd, QueueStatus and CoreShowChannels as Asterisk 22 does
    (messages as seen in tests/live), and raises the member events."""

    def __init__(self, fake: FakeAmi) -> None:
        self.fake = fake
        self.members: dict[tuple[str, str], Member] = {
            ("billing", "1001"): Member(static=True),
            ("billing", "1002"): Member(static=True),
            ("support", "1002"): Member(static=True),
            ("support", "1003"): Member(static=False),
        }
        self.refuse: str | None = None  # answer the next change with this error
        self.silent = False  # answer nothing (a hung Asterisk)
        for name in ("QueuePause", "QueueRemove", "QueueAdd", "QueueStatus", "CoreShowChannels"):
            fake.handlers[name] = getattr(self, name.lower())

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.fake.actions if a.get("Action") == name]

    def send(self, message: dict[str, str]) -> None:
        data = encode_action(message)
        for w in self.fake.writers:
            if not w.is_closing():
                w.write(data)

    def member_event(self, kind: str, queue: str, agent: str) -> dict[str, str]:
        m = self.members.get((queue, agent), Member(static=False))
        return {
            "Event": kind,
            "Queue": queue,
            "MemberName": agent,
            "Interface": f"PJSIP/agent{agent}",
            "StateInterface": f"PJSIP/agent{agent}",
            "Membership": "static" if m.static else "dynamic",
            "Status": "1",
            "Paused": "1" if m.paused else "0",
            "PausedReason": m.reason,
        }

    def pause_in_cli(self, agent: str, paused: bool, reason: str = "") -> None:
        """``queue pause member PJSIP/agentN reason ...`` typed in the Asterisk CLI."""
        for (queue, who), m in self.members.items():
            if who == agent:
                m.paused, m.reason = paused, reason if paused else ""
                self.send(self.member_event("QueueMemberPause", queue, agent))

    def _reply(self, action: dict[str, str], error: str | None, message: str = "") -> bool:
        if self.silent:
            return False
        if error is None and self.refuse is not None:
            error, self.refuse = self.refuse, None
        aid = action["ActionID"]
        if error is not None:
            self.send({"Response": "Error", "ActionID": aid, "Message": error})
            return False
        self.send({"Response": "Success", "ActionID": aid, "Message": message})
        return True

    async def queuepause(self, action: dict[str, str], _w: object) -> None:
        agent = action["Interface"].removeprefix("PJSIP/agent")
        mine = [q for (q, a) in self.members if a == agent and action.get("Queue") in (None, q)]
        paused = action["Paused"] == "true"
        if self._reply(action, None if mine else "Interface not found", "Interface paused"):
            for queue in mine:
                m = self.members[(queue, agent)]
                m.paused, m.reason = paused, action.get("Reason", "") if paused else ""
                self.send(self.member_event("QueueMemberPause", queue, agent))

    async def queueremove(self, action: dict[str, str], _w: object) -> None:
        queue, agent = action["Queue"], action["Interface"].removeprefix("PJSIP/agent")
        m = self.members.get((queue, agent))
        error = (
            "Unable to remove interface: Not there"
            if m is None
            else "Member not dynamic"
            if m.static
            else None
        )
        if self._reply(action, error, "Removed interface from queue"):
            event = self.member_event("QueueMemberRemoved", queue, agent)
            del self.members[(queue, agent)]
            self.send(event)

    async def queueadd(self, action: dict[str, str], _w: object) -> None:
        queue, agent = action["Queue"], action["MemberName"]
        there = (queue, agent) in self.members
        error = "Unable to add interface: Already there" if there else None
        if self._reply(action, error, "Added interface to queue"):
            self.members[(queue, agent)] = Member(static=False)
            self.send(self.member_event("QueueMemberAdded", queue, agent))

    async def queuestatus(self, action: dict[str, str], _w: object) -> None:
        aid = action["ActionID"]
        self.send({"Response": "Success", "ActionID": aid, "EventList": "start"})
        for (queue, agent), m in self.members.items():
            self.send(
                {
                    "Event": "QueueMember",
                    "ActionID": aid,
                    "Queue": queue,
                    "Name": agent,
                    "Location": f"PJSIP/agent{agent}",
                    "StateInterface": f"PJSIP/agent{agent}",
                    "Membership": "static" if m.static else "dynamic",
                    "Status": "1",
                    "Paused": "1" if m.paused else "0",
                    "PausedReason": m.reason,
                }
            )
        self.send({"Event": "QueueStatusComplete", "ActionID": aid, "EventList": "Complete"})

    async def coreshowchannels(self, action: dict[str, str], _w: object) -> None:
        aid = action["ActionID"]
        self.send({"Response": "Success", "ActionID": aid, "EventList": "start"})
        self.send({"Event": "CoreShowChannelsComplete", "ActionID": aid, "EventList": "Complete"})

    def queue_call(self, call_id: str, agent: str, interaction: str, caller: str = ALICE) -> None:
        """A caller from the IVR rings ``agent`` in billing, who answers."""
        channel = f"PJSIP/callers-{call_id}"
        caller_part = {
            "Channel": channel,
            "Linkedid": call_id,
            "Uniqueid": call_id,
            "CallerIDNum": caller,
            "CallerIDName": "Alice Martin",
            "Queue": "billing",
            "MemberName": agent,
            "Interface": f"PJSIP/agent{agent}",
            "ChanVariable": f"HOTLINE_INTERACTION={interaction}",
        }
        self.send({"Event": "Newchannel", "Context": "from-callers", **caller_part})
        self.send({"Event": "QueueCallerJoin", "Position": "1", **caller_part})
        self.send({"Event": "AgentCalled", **caller_part})
        self.send({"Event": "AgentConnect", "HoldTime": "2", **caller_part})

    def hang_up(self, call_id: str, agent: str) -> None:
        channel = f"PJSIP/callers-{call_id}"
        self.send(
            {
                "Event": "AgentComplete",
                "Channel": channel,
                "Linkedid": call_id,
                "Queue": "billing",
                "MemberName": agent,
                "Interface": f"PJSIP/agent{agent}",
                "TalkTime": "20",
                "Reason": "caller",
            }
        )
        self.send({"Event": "Hangup", "Channel": channel, "Linkedid": call_id})


async def until(cond: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


@dataclass
class Desk:
    cti: cti_feature.Cti
    peer: QueuesPeer
    pops: list[ScreenPopPayload]

    @property
    def desk(self) -> AgentDesk:
        return self.cti.desk

    def shown(self, agent: str) -> dict[str, Any]:
        """What a page subscribing now gets: the retained state topic's message."""
        topic = self.cti.publisher.topic("agents", agent, "state")
        msg = self.cti.publisher._retained[topic]
        assert msg.retain
        loaded: dict[str, Any] = json.loads(msg.payload)
        return loaded


@contextlib.asynccontextmanager
async def running_desk(
    directory: CustomerDirectory,
    interactions: InteractionStore,
    setup_peer: Callable[[QueuesPeer], None] = lambda _p: None,
) -> AsyncIterator[Desk]:
    async with FakeAmi() as fake:
        peer = QueuesPeer(fake)
        setup_peer(peer)
        cfg = load_config(
            REPO / "hotline.toml",
            environ={
                "HOTLINE_AMI__PORT": str(fake.port),
                "HOTLINE_AMI__RECONNECT_MIN_S": "0.05",
                "HOTLINE_MQTT__PORT": "1",  # no broker: the retained messages stay readable
                "HOTLINE_DESK__WRAPUP_S": str(WRAPUP_S),
            },
        )
        deps = cti_feature.CtiDeps(directory, interactions, "s")
        async with cti_feature.setup(cfg, deps) as cti:
            cti.desk.ACTION_TIMEOUT_S = 0.5
            pops: list[ScreenPopPayload] = []
            cti.service.popped.subscribe(pops.append)
            await cti.connect()
            await until(lambda: {"1001", "1002", "1003"} <= set(cti.state.agents), "rebuilt")
            yield Desk(cti, peer, pops)


@pytest.fixture
async def records(db: Database) -> AsyncIterator[tuple[CustomerDirectory, InteractionStore]]:
    directory = CustomerDirectory(db)
    await directory.import_csv(REPO / "dialplans" / "data" / "customers.csv")
    interactions = InteractionStore(db)
    yield directory, interactions
    await interactions.close()
    await directory.close()


Records = tuple[CustomerDirectory, InteractionStore]


# -- state control ---------------------------------------------------------------------


async def test_pause_goes_to_asterisk_and_the_state_shown_is_what_asterisk_reports(
    records: Records,
) -> None:
    async with running_desk(*records) as d:
        await d.desk.set_state("1001", "pause", "lunch")
        (sent,) = d.peer.actions("QueuePause")
        # No Queue: Asterisk pauses the member in all its queues.
        assert sent["Interface"] == "PJSIP/agent1001" and "Queue" not in sent
        assert (sent["Paused"], sent["Reason"]) == ("true", "Lunch")
        await until(lambda: d.shown("1001")["phase"] == "paused", "paused shown")
        shown = d.shown("1001")
        assert (shown["state"], shown["pause_reason"], shown["wrapup_until"]) == (
            "paused",
            "Lunch",
            None,
        )
        # Made ready in the Asterisk CLI: the retained topic shows it, no desk involved.
        d.peer.pause_in_cli("1001", False)
        await until(lambda: d.shown("1001")["phase"] == "ready", "ready from the CLI shown")
        assert d.shown("1001")["pause_reason"] is None
        # A reason not configured is refused before anything reaches Asterisk.
        with pytest.raises(InvalidReason):
            await d.desk.set_state("1001", "pause", "Nap")
        assert len(d.peer.actions("QueuePause")) == 1
        d.peer.refuse = "Interface not found"
        with pytest.raises(AsteriskRefused, match="Interface not found"):
            await d.desk.set_state("1001", "ready")
        d.peer.silent = True
        with pytest.raises(AsteriskUnavailable):
            await d.desk.set_state("1001", "pause", "Break")
        assert d.shown("1001")["phase"] == "ready"  # nothing changed is shown as changed


async def test_logout_and_login_through_queue_remove_and_add(records: Records) -> None:
    async with running_desk(*records) as d:
        # 1001 is a static member (queues.conf member =>): Asterisk cannot log it out.
        with pytest.raises(StaticMembership, match="static member of billing"):
            await d.desk.set_state("1001", "logout")
        assert d.peer.actions("QueueRemove") == []
        # 1003 is dynamic in support: out, then back into [desk] memberships' queues.
        await d.desk.set_state("1003", "logout")
        assert [(a["Queue"], a["Interface"]) for a in d.peer.actions("QueueRemove")] == [
            ("support", "PJSIP/agent1003")
        ]
        await until(lambda: d.shown("1003")["phase"] == "offline", "1003 offline")
        assert d.shown("1003")["queues"] == []
        await d.desk.set_state("1003", "login")
        (added,) = d.peer.actions("QueueAdd")
        assert (added["Queue"], added["MemberName"], added["Paused"]) == (
            "support",
            "1003",
            "false",
        )
        await until(lambda: d.shown("1003")["phase"] == "ready", "1003 back")
        assert d.shown("1003")["queues"] == ["support"]


# -- wrap-up -----------------------------------------------------------------------------


async def call_done(d: Desk, call_id: str, agent: str = "1001", interaction: str = "") -> None:
    d.peer.queue_call(call_id, agent, interaction)
    await until(lambda: d.shown(agent)["phase"] == "talking", f"{agent} talking")
    d.peer.hang_up(call_id, agent)


async def test_after_each_call_wrap_up_then_ready_unless_paused_meanwhile(
    records: Records,
) -> None:
    async with running_desk(*records) as d:
        await call_done(d, "1796000001.1")
        await until(lambda: d.shown("1001")["phase"] == "wrapup", "wrap-up shown")
        pause = d.peer.actions("QueuePause")[-1]
        assert (pause["Paused"], pause["Reason"]) == ("true", "Wrap-up")
        shown = d.shown("1001")
        assert shown["pause_reason"] == "Wrap-up"
        assert time.time() < shown["wrapup_until"] <= time.time() + WRAPUP_S
        await until(lambda: d.shown("1001")["phase"] == "ready", "ready after wrap-up", 3)
        assert d.peer.actions("QueuePause")[-1]["Paused"] == "false"

        # Paused for lunch during the wrap-up: the lunch stands when the timer ends.
        await call_done(d, "1796000002.1")
        await until(lambda: d.shown("1001")["phase"] == "wrapup", "second wrap-up")
        await d.desk.set_state("1001", "pause", "Lunch")
        await asyncio.sleep(WRAPUP_S + 0.3)
        shown = d.shown("1001")
        assert (shown["phase"], shown["pause_reason"]) == ("paused", "Lunch")
        assert d.peer.actions("QueuePause")[-1]["Reason"] == "Lunch"

        # Finish early; extend.
        await d.desk.set_state("1001", "ready")
        await until(lambda: d.shown("1001")["phase"] == "ready", "ready again")
        with pytest.raises(NotInWrapup):
            await d.desk.finish_wrapup("1001")
        await call_done(d, "1796000003.1")
        await until(lambda: d.shown("1001")["phase"] == "wrapup", "third wrap-up")
        first_end = d.shown("1001")["wrapup_until"]
        await d.desk.extend_wrapup("1001", 30)
        await until(lambda: d.shown("1001")["wrapup_until"] > first_end + 29, "extended")
        await asyncio.sleep(WRAPUP_S + 0.2)
        assert d.shown("1001")["phase"] == "wrapup"  # the old end passed: still in wrap-up
        await d.desk.finish_wrapup("1001")
        await until(lambda: d.shown("1001")["phase"] == "ready", "finished early")
        assert d.shown("1001")["wrapup_until"] is None


async def test_a_wrap_up_found_at_start_ends_after_wrapup_s(records: Records) -> None:
    """The server restarted mid-wrap-up (or the CLI paused the agent "Wrap-up"):
    the agent is not left paused for ever."""

    def mid_wrapup(peer: QueuesPeer) -> None:
        for queue in ("billing", "support"):
            peer.members[(queue, "1002")] = Member(static=True, paused=True, reason="Wrap-up")

    async with running_desk(*records, setup_peer=mid_wrapup) as d:
        await until(lambda: d.shown("1002")["wrapup_until"] is not None, "timer armed")
        assert d.shown("1002")["phase"] == "wrapup"
        await until(lambda: d.shown("1002")["phase"] == "ready", "made ready", 3)
        assert d.peer.actions("QueuePause")[-1]["Interface"] == "PJSIP/agent1002"


# -- dispositions --------------------------------------------------------------------------


async def ivr_record(interactions: InteractionStore, call_id: str, n: int) -> Interaction:
    it = Interaction(
        id=f"desk{n:028d}",
        call_id=call_id,
        flow="hotline",
        caller_number=ALICE,
        customer_id=1,
        started_at=datetime.now(UTC),
        ended_at=datetime.now(UTC),
        outcome="queued",
        queue="billing",
        intent="billing",
    )
    it.steps.append({"node": "main_menu", "type": "menu", "at_ms": 10, "ms": 3000, "result": "1"})
    it.inputs["main_menu"] = "1"
    await interactions.save(it)
    return it


async def hotline_cli(db: Database, tmp_path: Path, *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/hotline"),
        *argv,
        cwd=tmp_path,  # no hotline.toml here: defaults and the database below
        env={**os.environ, "HOTLINE_DATABASE__URL": db.url, "HOTLINE_AMI__ENABLED": "false"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_disposition_lands_on_the_interaction_the_cli_and_the_next_pop(
    db: Database, records: Records, tmp_path: Path
) -> None:
    _directory, interactions = records
    first = await ivr_record(interactions, "1796000010.1", 1)
    async with running_desk(*records) as d:
        d.peer.queue_call(first.call_id, "1001", first.id)
        await until(lambda: d.shown("1001")["phase"] == "talking", "talking")
        await until(lambda: d.pops, "pop")
        # A page reloaded mid-call gets the state, the call and its pop back.
        snap = d.desk.snapshot("1001")
        assert snap["call"] is not None and snap["call"]["call_id"] == first.call_id
        assert snap["pop"] is not None and snap["pop"]["call_id"] == first.call_id
        assert snap["state"]["phase"] == "talking"
        assert [q["queue"] for q in snap["queues"]] == ["billing"]
        assert snap["dispositions"]["billing"][0] == "Paid"
        d.peer.hang_up(first.call_id, "1001")
        await until(lambda: d.desk.snapshot("1001")["to_dispose"], "call to dispose")
        snap = d.desk.snapshot("1001")
        assert snap["pop"] is None and snap["call"] is None  # the call is over
        assert snap["to_dispose"] == {
            "call_id": first.call_id,
            "queue": "billing",
            "ended_at": cast(dict[str, str], snap["to_dispose"])["ended_at"],
        }

        with pytest.raises(InvalidDisposition, match="not a disposition of queue billing"):
            await d.desk.dispose("1001", first.call_id, "Technician booked")
        with pytest.raises(NotYourCall, match="taken by agent 1001"):
            await d.desk.dispose("1002", first.call_id, "Paid")
        with pytest.raises(UnknownCall):
            await d.desk.dispose("1001", "1796999999.9", "Paid")
        note = "Pays the rest on the 5th\nby card"
        await d.desk.dispose("1001", first.call_id, "payment plan", note)
        assert d.desk.snapshot("1001")["to_dispose"] is None

        stored = await interactions.get(first.id)
        assert stored is not None
        assert (stored.disposition, stored.disposition_note, stored.disposed_by) == (
            "Payment plan",
            note,
            "1001",
        )
        assert stored.disposed_at is not None

        shown = await hotline_cli(db, tmp_path, "calls", "show", first.call_id)
        assert "disposition  Payment plan  (agent 1001 at " in shown
        assert "note         Pays the rest on the 5th" in shown
        assert "note         by card" in shown
        as_json = json.loads(await hotline_cli(db, tmp_path, "calls", "show", first.id, "--json"))
        assert (as_json["disposition"], as_json["disposition_note"]) == ("Payment plan", note)
        assert as_json["disposed_by"] == "1001" and as_json["disposed_at"]

        # Alice calls again: the pop's history carries what the agent recorded.
        second = await ivr_record(interactions, "1796000011.1", 2)
        d.peer.queue_call(second.call_id, "1002", second.id)
        await until(lambda: len(d.pops) == 2, "second pop")
        pop = d.pops[-1]
        assert pop["call_id"] == second.call_id
        entry = pop["history"][0]
        assert (entry["call_id"], entry["kind"]) == (first.call_id, "call")
        assert (entry["disposition"], entry["disposition_note"], entry["disposed_by"]) == (
            "Payment plan",
            note,
            "1001",
        )
        assert [h["call_id"] for h in pop["history"]] == [first.call_id]  # not this call
        assert pop["customer"] is not None and pop["customer"]["flags"] == ["vip"]
        # Alice has 42 dollars due (the demo directory): the opener says so first.
        assert str(pop["opener"]).startswith("Calling about the bill of 42 dollars due ")
