#!/usr/bin/env python3
"""The demo hotline's menu as a classic AGI script on pyst2: the FastAGI benchmark's baseline.

This is how the menu would be written without Hotline: Asterisk starts one
process per call (``AGI(classic_agi_menu.py,/path/to/hotline.db)``), hands it
the AGI environment on stdin and reads its commands from stdout.

It does the work Hotline's flow does on the path ``bench/fastagi_load.py``
walks (unknown caller -> greeting -> main menu -> billing menu -> agent), with
the same prompt files and the same database work: the caller lookup, and the
interaction row written when the call enters and when the script ends (the
dialplan queues the caller once the script has exited).  Hotline overlaps its
first write with the greeting; a sequential script does it before.  It is not
a port of the whole flow (known callers and their PIN check, payments, the
Korean switch are left out).

The prompt texts below are dialplans/hotline.yaml's (``greet_caller``,
``main_menu``, ``billing_menu``, the built-in retry and hand-off messages);
``bench/fastagi_load.py`` checks in every run that both engines played the same
files and stops if they did not, so a flow change that is not copied here fails
the benchmark instead of comparing different menus.  Hotline also sends a
``NOOP`` liveness probe before its first prompt (FastAGI only: a socket peer
can be silent; a classic AGI process is Asterisk's own child), so it sends one
command more per call than this script.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import uuid
from datetime import UTC, datetime

from asterisk.agi import AGI

PROMPTS = "/srv/hotline/prompts"  # as Asterisk sees them (hotline.toml paths.prompts_asterisk)
VOICES = {"en": "gmw/en-us", "ko": "ko"}  # hotline.toml [tts]
RATE = 160
DIGITS = "0123456789*#"


def prompt(text: str, language: str) -> str:
    """The file Hotline's PromptCache renders for this text (same name, same hash)."""
    material = f"{text}\0{language}\0{VOICES[language]}\0{RATE}"
    key = hashlib.sha256(material.encode()).hexdigest()[:24]
    return f"{PROMPTS}/tts/{language}/{key}"


GREETING = prompt("Welcome to Hotline.", "en")
MAIN_MENU = [
    prompt(
        "For billing, press 1. For technical support, press 2. To speak to an agent, press 0.",
        "en",
    ),
    prompt("한국어 서비스는 9번을 누르세요.", "ko"),
]
BILLING_MENU = [
    prompt(
        "For your balance, press 1. To pay your bill, press 2. For a billing agent, press 3.",
        "en",
    )
]
NO_INPUT = prompt("Sorry, I did not hear a choice.", "en")
INVALID = prompt("Sorry, that is not one of the choices.", "en")
TO_AGENT = prompt("Please hold, an agent will be with you shortly.", "en")


def menu(agi: AGI, prompts: list[str], keys: str, pending: str = "", timeout_ms: int = 5000) -> str:
    """Play the menu, wait for a key, retry three times; '' means send to an agent."""
    for _ in range(3):
        digit, pending = pending, ""
        if not digit:
            for p in prompts:
                digit = agi.stream_file(p, keys)
                if digit:
                    break
        if not digit:
            digit = agi.wait_for_digit(timeout_ms)
        if digit and digit in keys:
            return digit
        agi.stream_file(INVALID if digit else NO_INPUT, "")
    agi.stream_file(TO_AGENT, "")
    return "0"


def save(db: sqlite3.Connection, row: dict[str, object]) -> None:
    with db:
        db.execute(
            "INSERT OR REPLACE INTO interactions (id, call_id, channel, flow, caller_number,"
            " caller_name, customer_id, language, started_at, ended_at, outcome, queue, intent,"
            " steps, inputs, transcripts, self_service, error) VALUES (:id, :call_id, :channel,"
            " :flow, :caller_number, :caller_name, :customer_id, :language, :started_at,"
            " :ended_at, :outcome, :queue, :intent, :steps, :inputs, '[]', '[]', NULL)",
            {**row, "steps": json.dumps(row["steps"]), "inputs": json.dumps(row["inputs"])},
        )


def main() -> int:
    agi = AGI()
    db = sqlite3.connect(sys.argv[1], timeout=30)
    # The dialplan hands the linkedid over as an argument, as it does to Hotline.
    arg = agi.env.get("agi_arg_1", "")
    call_id = (
        arg.removeprefix("linkedid=")
        if arg.startswith("linkedid=")
        else agi.get_full_variable("${CHANNEL(linkedid)}") or agi.env.get("agi_uniqueid", "")
    )
    caller = agi.env.get("agi_callerid", "")
    steps: list[str] = []
    row: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "call_id": call_id,
        "channel": agi.env.get("agi_channel", ""),
        "flow": "hotline",
        "caller_number": caller,
        "caller_name": agi.env.get("agi_calleridname", ""),
        "customer_id": None,
        "language": "en",
        "started_at": datetime.now(UTC).isoformat(" "),
        "ended_at": None,
        "outcome": "in_progress",
        "queue": None,
        "intent": None,
        "steps": steps,
        "inputs": {},
    }
    save(db, row)
    found = db.execute(
        "SELECT id FROM customers WHERE phone = ?", (re.sub(r"\D", "", caller),)
    ).fetchone()
    steps.append("identify")
    if found:
        row["customer_id"] = found[0]
    steps.append("greet_caller")
    pending = agi.stream_file(GREETING, DIGITS)
    queue = "support"
    steps.append("main_menu")
    choice = menu(agi, MAIN_MENU, "1290", pending)
    if choice == "1":
        row["intent"] = "billing"
        row["inputs"] = {"main_menu": "1"}
        steps.append("billing_menu")
        queue = "billing"
        # keys 1 to 3 are the billing menu's options, 0 the agent (agent_queue: billing)
        if menu(agi, BILLING_MENU, "1230") == "0":
            row["inputs"] = {"main_menu": "1", "billing_menu": "0"}
    row.update(queue=queue, outcome="queued")
    agi.set_variable("HOTLINE_QUEUE", queue)
    agi.set_variable("HOTLINE_PRIORITY", "0")
    agi.set_variable("HOTLINE_INTERACTION", row["id"])
    agi.set_variable("HOTLINE_INTENT", row["intent"] or "")
    agi.set_variable("HOTLINE_LANGUAGE", "en")
    agi.set_variable("HOTLINE_CUSTOMER", str(row["customer_id"] or ""))
    row["ended_at"] = datetime.now(UTC).isoformat(" ")
    save(db, row)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
