"""Call flows written inline in a test, loaded by the real loader, and calls run through them.

Engine tests run each behaviour on a small flow of their own (YAML text in the
test module), not on the demo site's ``dialplans/hotline.yaml``: whoever edits
the demo does not break tests that are about the engine.  The
``flow_services`` fixture (tests/integration/conftest.py) builds the services
for such flows; :func:`dial` runs one scripted call against them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Protocol

from harness.wait import wait_for
from hotline.records.interactions import Interaction
from ivr.flow import model as m
from ivr.flow.engine import CallRouter, Services
from ivr.flow.loader import load_flows, parse_flow
from ivr.server import FastAgiServer
from tests.support.fake_asterisk import FakeCall

# The header of a customer CSV (``hotline customers import``), for inline customers.
CUSTOMER_HEADER = (
    "name,phone,account,language,balance,last_bill_date,last_bill_amount,bill_due_date,open_ticket"
)


class ServicesFor(Protocol):
    """What the ``flow_services`` fixture gives: services for the flows a test writes."""

    async def __call__(self, *flows: str, customers: str = "") -> Services:
        """``flows``: YAML texts, one flow each; ``customers``: CSV rows after the header."""
        ...


def load_inline_flows(folder: Path, *texts: str) -> dict[str, m.Flow]:
    """Write each YAML text to a file of its own in ``folder`` (new) and load the folder.

    The folder is loaded as the server loads ``dialplans/`` (``load_flows``):
    every flow validated, sub-flow references checked.  The flows are known by
    their ``flow:`` names; the file names do not matter.
    """
    folder.mkdir(parents=True)
    for i, text in enumerate(texts):
        (folder / f"flow{i}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_flows(folder)


def write_customers(path: Path, rows: str) -> Path:
    """A customer CSV at ``path``: the header, then ``rows`` (CSV text)."""
    path.write_text(CUSTOMER_HEADER + "\n" + textwrap.dedent(rows).strip() + "\n", encoding="utf-8")
    return path


async def dial(services: Services, call: FakeCall) -> FakeCall:
    """Run one scripted call through a FastAGI server serving these services' flows."""
    server = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await server.start()
    try:
        return await call.run(server.port)
    finally:
        await server.stop()


async def run_flow_text(
    services: Services, flow_text: str, fake: FakeCall
) -> tuple[FakeCall, Interaction]:
    """One call of ``fake`` through the one flow in ``flow_text``; the call and its record."""
    flow = parse_flow(flow_text, "dialplans/t.yaml")
    services.flows = {flow.name: flow}
    server = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await server.start()
    fake.script = flow.name
    try:
        done = await fake.run(server.port)
    finally:
        await server.stop()

    async def finished() -> Interaction | None:
        it = await services.interactions.get(fake.linkedid)
        return it if it is not None and it.ended_at is not None else None

    record = await wait_for(finished, timeout=5, what=f"call {fake.linkedid}'s record")
    assert record is not None
    return done, record
