"""Node types come from one registry: the loader, the renderers and the engine know none by name.

The ``transfer`` node is the worked example of a node type (docs/flows.md);
a node type and a site action registered here, in the test, are loaded,
drawn and run without any other change.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import Interaction, InteractionStore
from hotline.storage.db import Database
from ivr.flow import render
from ivr.flow.actions import ACTIONS, ActionNode, SiteAction
from ivr.flow.engine import Services
from ivr.flow.loader import FlowError, parse_flow
from ivr.flow.node import Exit, Node, Step
from ivr.flow.nodes import NODES
from ivr.flow.nodes.transfer import Transfer
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt
from ivr.flow.session import Session
from ivr.prompts import PromptCache
from tests.support.fake_asterisk import FakeCall
from tests.support.flows import run_flow_text

FLOW_CODE = Path(__file__).resolve().parents[2] / "ivr" / "flow"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}")
    await db.migrate()
    # Recorded prompts only in these flows: nothing is synthesised.
    svc = Services(
        prompts=PromptCache(tmp_path, "/srv/hotline/prompts", {}),
        directory=CustomerDirectory(db),
        interactions=InteractionStore(db),
        flows={},
    )
    yield svc
    await svc.interactions.close()
    await db.close()


async def call(services: Services, flow_text: str, linkedid: str) -> tuple[FakeCall, Interaction]:
    fake = FakeCall(linkedid=linkedid, linkedid_argument=True)
    return await run_flow_text(services, flow_text, fake)


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as e:
        parse_flow(text, "dialplans/t.yaml")
    return [str(p) for p in e.value.problems]


# -- the registry ----------------------------------------------------------------------------


def test_every_flow_file_type_is_a_registered_node_class() -> None:
    assert set(NODES) == {
        "action",
        "branch",
        "collect",
        "deflect",
        "goto",
        "hangup",
        "listen",
        "lookup",
        "menu",
        "queue",
        "return",
        "say",
        "set",
        "subflow",
        "transfer",
        "verify",
    }
    for cls in NODES.values():
        assert issubclass(cls, Node)
    assert set(ACTIONS) == {"say_balance", "pay_bill", "set_language"}


@pytest.mark.parametrize("module", ["loader.py", "render.py", "engine.py", "model.py"])
def test_loader_render_and_engine_name_no_node_type(module: str) -> None:
    """Per-type code lives in ivr/flow/nodes; these only call what every Node has."""
    code = (FLOW_CODE / module).read_text()
    if module == "model.py":
        # The model only re-exports the node classes (where other code imports them).
        code = "\n".join(line for line in code.splitlines() if not line.startswith("from "))
        code = re.sub(r"__all__ = \[.*?\]", "", code, flags=re.S)
    for cls in NODES.values():
        assert not re.search(rf"\b{cls.__name__}\b", code), f"{module} names {cls.__name__}"


# -- transfer: the worked example ------------------------------------------------------------

TRANSFER = """\
flow: t
start: hello
nodes:
  hello:
    type: say
    say: {file: greetings/welcome}
    next: to_billing
  to_billing:
    type: transfer
    queue: billing
    priority: 7
    reason: "billing question from {caller.number}"
"""


def test_transfer_parses_with_defaults() -> None:
    flow = parse_flow(TRANSFER, "t.yaml")
    assert flow.nodes["to_billing"] == Transfer(
        "to_billing", 8, "billing", 7, "billing question from {caller.number}"
    )
    bare = parse_flow(TRANSFER.replace("    priority: 7\n", "").split("    reason")[0], "t.yaml")
    assert bare.nodes["to_billing"] == Transfer("to_billing", 8, "billing", 0, "")
    assert bare.nodes["to_billing"].targets() == []


def test_transfer_problems_name_file_line_and_node() -> None:
    text = (
        TRANSFER.replace("queue: billing", "queue: Billing Team")
        .replace("priority: 7", "priority: 101")
        .replace("{caller.number}", "{ticket}")
        + "    colour: red\n"
    )
    assert problems(text) == [
        "dialplans/t.yaml:10: node 'to_billing': queue: 'Billing Team' is not a queue name",
        "dialplans/t.yaml:11: node 'to_billing': priority: expected a number from 0 to 100",
        "dialplans/t.yaml:12: node 'to_billing': reason: unknown placeholder {ticket} "
        "(use call, caller, customer, link, queue, vars)",
        "dialplans/t.yaml:13: node 'to_billing': unknown field 'colour' "
        "(allowed: description, priority, queue, reason, type)",
    ]
    missing = TRANSFER.replace("    queue: billing\n", "")
    assert problems(missing) == [
        "dialplans/t.yaml:8: node 'to_billing': queue: '' is not a queue name",
        "dialplans/t.yaml:9: node 'to_billing': missing field 'queue'",
    ]


def test_transfer_is_drawn_like_a_queue() -> None:
    flow = parse_flow(TRANSFER, "t.yaml")
    assert (
        "to_billing  [line 8]\n"
        "    transfer to billing (priority 7): billing question from {caller.number}\n"
    ) in render.outline(flow)
    assert '"to_billing" [label="to_billing\\ntransfer to billing' in render.dot(flow)
    assert "shape=house" in render.dot(flow)
    assert "hello --> to_billing" in render.mermaid(flow)


async def test_transfer_hands_the_caller_to_the_queue_with_priority_and_reason(
    services: Services,
) -> None:
    fake, it = await call(services, TRANSFER, "1700000001.1")
    assert fake.commands == [
        "NOOP",  # the liveness probe before the first prompt (ivr/agi.py)
        'STREAM FILE "/srv/hotline/prompts/greetings/welcome" "0123456789*#"',
        'SET VARIABLE HOTLINE_QUEUE "billing"',
        'SET VARIABLE HOTLINE_PRIORITY "7"',
        f'SET VARIABLE HOTLINE_INTERACTION "{it.id}"',
        'SET VARIABLE HOTLINE_INTENT ""',
        'SET VARIABLE HOTLINE_LANGUAGE "en"',
        'SET VARIABLE HOTLINE_CUSTOMER ""',
    ]
    assert it.outcome == "queued" and it.queue == "billing"
    assert it.path == ["hello", "to_billing"]
    step = it.steps[-1]
    assert step["type"] == "transfer" and step["result"] == "billing"
    assert step["reason"] == "billing question from 5559999"


# -- a node type and an action added by registration alone --------------------------------------


@dataclass(frozen=True, slots=True)
class Beep(Node):
    """A test node: plays a recorded beep ``times`` times, then goes on."""

    times: int
    next: str
    prompt: Prompt = field(default_factory=Prompt)

    shape: ClassVar[str] = "circle"

    @classmethod
    def parse(cls, src: NodeSource) -> Beep:
        src.take({"times", "next"}, {"next"})
        return cls(src.id, src.line, int(src.number("times", 1, 1, 3)), src.word("next"))

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next, "beeped")]

    def describe(self, language: str) -> str:
        return f"beep x{self.times}"

    async def run(self, session: Session, step: Step) -> str | None:
        for _ in range(self.times):
            await session.channel.stream_file(session.services.prompts.file_path("beep"), "")
        step["result"] = "beeped"
        return self.next


BEEP = """\
flow: t
start: beep
nodes:
  beep:
    type: beep
    times: 2
    next: note
  note:
    type: action
    do: note
    args: {text: "hello"}
    next: bye
  bye:
    type: hangup
"""


async def _note(session: Session, node: ActionNode, step: Step) -> str | None:
    session.interaction.self_service.append({"task": "note", "outcome": node.args["text"]})
    return node.next


@pytest.fixture
def beep_and_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(NODES, "beep", Beep)
    monkeypatch.setitem(ACTIONS, "note", SiteAction("note", _note, needs_customer=False))


def test_unregistered_types_and_actions_are_problems() -> None:
    out = problems(BEEP)
    assert out[0].startswith("dialplans/t.yaml:5: node 'beep': unknown node type 'beep' (known:")
    assert (
        "dialplans/t.yaml:10: node 'note': do: unknown action 'note' "
        "(known: pay_bill, say_balance, set_language)"
    ) in out


@pytest.mark.usefixtures("beep_and_note")
def test_a_registered_node_type_is_loaded_and_drawn() -> None:
    flow = parse_flow(BEEP, "t.yaml")
    assert flow.nodes["beep"] == Beep("beep", 4, 2, "note")
    assert "beep  [line 4]\n    beep x2\n      beeped -> note\n" in render.outline(flow)
    assert "shape=circle" in render.dot(flow)
    assert "beep -->|beeped| note" in render.mermaid(flow)
    assert problems(BEEP.replace("times: 2", "times: 9")) == [
        "dialplans/t.yaml:6: node 'beep': times: expected a number from 1 to 3"
    ]
    assert problems(BEEP.replace("next: note", "next: nowhere")) == [
        "dialplans/t.yaml:4: node 'beep': next: no node 'nowhere'",
        "dialplans/t.yaml:8: node 'note': unreachable: no path from start node 'beep' leads here",
        "dialplans/t.yaml:13: node 'bye': unreachable: no path from start node 'beep' leads here",
    ]


@pytest.mark.usefixtures("beep_and_note")
async def test_a_registered_node_type_and_action_run(services: Services) -> None:
    fake, it = await call(services, BEEP, "1700000001.2")
    assert fake.commands == [
        "NOOP",  # the liveness probe before the first prompt (ivr/agi.py)
        'STREAM FILE "/srv/hotline/prompts/beep" ""',
        'STREAM FILE "/srv/hotline/prompts/beep" ""',
        "HANGUP",
    ]
    assert it.path == ["beep", "note", "bye"]
    assert [s["type"] for s in it.steps] == ["beep", "action", "hangup"]
    assert it.steps[0]["result"] == "beeped"
    assert it.self_service == [{"task": "note", "outcome": "hello"}]
    assert it.outcome == "self_served"
