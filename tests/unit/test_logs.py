"""Log lines: one JSON object each, with the call id, written off the event loop."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys, time
    from hotline.logs import call_id_var, setup_logging

    setup_logging("INFO", sys.argv[1])
    log = logging.getLogger("hotline.test")

    async def call(call_id, n):
        call_id_var.set(call_id)
        await asyncio.sleep(0)
        log.info("caller handed to queue %s", n, extra={"queue": "billing"})

    async def main():
        await asyncio.gather(call("1700000000.1", 1), call("1700000000.2", 2))
        log.info("no call")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("flow failed")
        # stderr is a pipe nobody reads yet: the loop must go on all the same.
        started = time.monotonic()
        for i in range(20000):
            log.info("filler %d %s", i, "x" * 200)
        print(f"LOOP {time.monotonic() - started:.3f}", flush=True)

    asyncio.run(main())
    """
)


def _run(fmt: str) -> tuple[str, list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    # LOOP is printed while stderr (a 64 KiB pipe) is full and unread: with log
    # lines written on the event loop the process would be stuck writing them.
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
    assert ready, "the event loop was blocked by a full stderr"
    first = proc.stdout.readline()
    time.sleep(0.2)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return first + rest, err.splitlines()


def test_json_lines_carry_the_call_id_of_the_call_that_logged_them() -> None:
    out, lines = _run("json")
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    handed = [e for e in events if e["msg"].startswith("caller handed to queue")]
    assert {(e["msg"], e.get("call_id")) for e in handed} == {
        ("caller handed to queue 1", "1700000000.1"),
        ("caller handed to queue 2", "1700000000.2"),
    }
    assert all(e["queue"] == "billing" and e["level"] == "info" for e in handed)
    (plain,) = [e for e in events if e["msg"] == "no call"]
    assert "call_id" not in plain
    (failed,) = [e for e in events if e["msg"] == "flow failed"]
    assert "ValueError: boom" in failed["exc"] and failed["level"] == "error"
    # Everything queued is written out before the process exits.
    assert sum(1 for e in events if e["msg"].startswith("filler ")) == 20000
    assert out.startswith("LOOP ")


def test_text_lines_carry_the_call_id_too() -> None:
    _, lines = _run("text")
    assert any(
        line.startswith("info    hotline.test: [1700000000.2] caller handed to queue 2")
        for line in lines
    )
