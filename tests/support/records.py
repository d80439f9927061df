"""Waiting for the interaction record a call leaves behind."""

from __future__ import annotations

from harness.wait import wait_for
from hotline.records.interactions import Interaction
from ivr.flow.engine import Services


async def finished_record(services: Services, call_id: str) -> Interaction:
    """The call's interaction record, once the server has finished writing it."""

    async def finished() -> Interaction | None:
        it = await services.interactions.get(call_id)
        return it if it is not None and it.ended_at is not None else None

    # Every call leaves a finished interaction record: none within 5 s fails the test.
    return await wait_for(finished, timeout=5, what=f"call {call_id}'s finished interaction record")
