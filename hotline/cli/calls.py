"""``hotline calls show|list``: interaction records, each call's trip through the IVR."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, print_json, with_db
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.records.interactions import Interaction
    from hotline.storage.db import Database


def register(sub: Subparsers) -> None:
    calls = group(sub, "calls", "interaction records", dest="k")
    s = command(calls, "show", cmd_calls_show, "one call's trip through the IVR")
    s.add_argument("call_id", help="call id (linkedid) or interaction id")
    s.add_argument("--json", action="store_true")
    s = command(calls, "list", cmd_calls_list, "recent calls")
    s.add_argument("--limit", type=int, default=20)


def cmd_calls_show(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.interactions import InteractionStore

    async def go(db: Database) -> int:
        it = await InteractionStore(db).get(args.call_id)
        if it is None:
            return fail(f"no call {args.call_id!r}")
        if args.json:
            print_json(it.to_json(), ensure_ascii=False)
        else:
            _print_call(it)
        return 0

    return with_db(go, cfg)


def _print_call(it: Interaction) -> None:
    print(f"call {it.call_id}  (interaction {it.id}, flow {it.flow})")
    print(f"  caller    {it.caller_number} {it.caller_name}".rstrip())
    print(
        f"  customer  {it.customer_id if it.customer_id is not None else '-'}"
        f"   language {it.language}"
    )
    print(
        f"  started   {it.started_at:%Y-%m-%d %H:%M:%S}  ended {it.ended_at:%H:%M:%S}"
        if it.ended_at
        else f"  started   {it.started_at}"
    )
    print(
        f"  outcome   {it.outcome}"
        + (f" -> queue {it.queue}" if it.queue else "")
        + (f"   intent {it.intent}" if it.intent else "")
    )
    print("  path")
    for s in it.steps:
        res = f" -> {s['result']}" if "result" in s else ""
        tries = f" ({', '.join(s['tries'])})" if s.get("tries") else ""
        print(
            f"    {s['at_ms'] / 1000:6.1f}s  {s['node']:20} {s['type']:8} "
            f"{s.get('ms', 0):5} ms{res}{tries}"
        )
    if it.inputs:
        print("  inputs    " + ", ".join(f"{k}={v}" for k, v in it.inputs.items()))
    for t in it.self_service:
        print(f"  self-service {t}")
    if it.error:
        print(f"  error     {it.error}")
    if it.disposition:
        at = f" at {it.disposed_at:%Y-%m-%d %H:%M:%S}" if it.disposed_at else ""
        print(f"  disposition  {it.disposition}  (agent {it.disposed_by or '-'}{at})")
        if it.disposition_note:
            # One line per line of the note, indented; the note is an agent's text:
            # nothing in it may drive the terminal.
            for line in it.disposition_note.splitlines() or [""]:
                shown = "".join(ch if ch.isprintable() else "?" for ch in line)
                print(f"  note         {shown}")


def cmd_calls_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.interactions import InteractionStore

    async def go(db: Database) -> int:
        for it in await InteractionStore(db).recent(args.limit):
            print(
                f"{it.started_at:%Y-%m-%d %H:%M:%S}  {it.call_id:24} {it.caller_number:12} "
                f"{it.outcome:12} {it.queue or '':8} {' > '.join(it.path)[:80]}"
            )
        return 0

    return with_db(go, cfg)
