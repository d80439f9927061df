"""The interaction store: batched, durable writes that never lose the newest snapshot."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from hotline.records.interactions import Interaction, InteractionStore
from hotline.storage.db import Database


def _call(n: int) -> Interaction:
    return Interaction(id=f"i{n:05d}", call_id=f"170000.{n}", flow="hotline", caller_number="555")


async def test_a_thousand_calls_saving_at_once_are_all_stored_in_a_few_batches(
    db: Database,
) -> None:
    store = InteractionStore(db)
    calls = [_call(n) for n in range(1000)]
    await asyncio.gather(*(store.save(c) for c in calls))
    # Read back through a fresh store: the database, not the hand-off cache.
    fresh = InteractionStore(db)
    assert len(await fresh.recent(limit=2000)) == 1000
    assert store.batches < 50  # one statement per batch, not per call
    await store.close()


async def test_the_newest_snapshot_wins_and_later_changes_are_not_written(db: Database) -> None:
    store = InteractionStore(db)
    call = _call(1)
    await store.save(call, wait=False)  # the first write, queued
    call.steps.append({"node": "greet", "type": "say", "at_ms": 0})
    call.outcome = "queued"
    call.queue = "billing"
    call.ended_at = datetime.now(UTC)
    await store.save(call)
    call.steps.append({"node": "after", "type": "say", "at_ms": 10})  # after the save: not stored
    call.steps[0]["result"] = "changed later"  # nested: not stored, not in the cache
    call.inputs["account"] = "changed later"
    stored = await InteractionStore(db).get(call.id)
    assert stored is not None
    assert stored.outcome == "queued" and stored.queue == "billing"
    assert stored.path == ["greet"] and "result" not in stored.steps[0]
    assert stored.inputs == {}
    cached = await store.get(call.id)  # the hand-off cache (the screen pop reads it)
    assert cached is not None and cached.path == ["greet"] and cached.inputs == {}
    cached.steps.append({"node": "a reader's change", "type": "say", "at_ms": 20})
    again = await store.get(call.id)
    assert again is not None and again.path == ["greet"]
    await store.close()


async def test_a_failed_write_is_raised_to_whoever_waits_and_the_store_goes_on(
    pg_db: Database,
) -> None:
    store = InteractionStore(pg_db)
    bad = _call(2)
    bad.flow = "x" * 200  # longer than the column: PostgreSQL refuses it
    good = _call(3)
    with pytest.raises(Exception, match=r"too long|value"):
        await store.save(bad)
    await store.save(good)  # the writer survived the failed batch
    assert await InteractionStore(pg_db).get(good.id) is not None
    await store.close()


async def test_one_bad_record_in_a_batch_costs_only_itself(pg_db: Database) -> None:
    store = InteractionStore(pg_db)
    calls = [_call(100 + n) for n in range(20)]
    calls[7].caller_name = "x" * 500  # a caller ID name longer than the column
    results = await asyncio.gather(*(store.save(c) for c in calls), return_exceptions=True)
    failed = [c.id for c, r in zip(calls, results, strict=True) if isinstance(r, Exception)]
    assert failed == [calls[7].id]
    stored = {i.id for i in await InteractionStore(pg_db).recent(limit=100)}
    assert stored == {c.id for c in calls} - {calls[7].id}
    await store.close()
