"""``hotline callbacks list|cancel``: the callbacks callers booked instead of waiting."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, print_json, with_db
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.storage.db import Database

STATUSES = ["pending", "dialing", "completed", "failed", "cancelled"]


def register(sub: Subparsers) -> None:
    cbs = group(sub, "callbacks", "callbacks callers booked", dest="cb")
    s = command(cbs, "list", cmd_callbacks_list, "callbacks, newest first")
    s.add_argument("--status", choices=STATUSES)
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s = command(cbs, "cancel", cmd_callbacks_cancel, "cancel a pending callback")
    s.add_argument("id")


def cmd_callbacks_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.deflection.callbacks import CallbackStore

    async def go(db: Database) -> int:
        callbacks = await CallbackStore(db).list(args.status, args.limit)
        if args.json:
            print_json([c.to_json() for c in callbacks], ensure_ascii=True)
            return 0
        if not callbacks:
            print("no callbacks" + (f" with status {args.status}" if args.status else ""))
        for c in callbacks:
            print(
                f"{c.requested_at:%Y-%m-%d %H:%M:%S}  {c.id}  {c.queue:8} {c.number:15} "
                f"{c.status:10} attempts {c.attempts}  {c.last_result or ''}"
            )
        return 0

    return with_db(go, cfg)


def cmd_callbacks_cancel(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.deflection.callbacks import CallbackStore
    from hotline.records.users import host_operator

    async def go(db: Database) -> int:
        done = await CallbackStore(db).cancel(args.id, f"cancelled by {host_operator().label}")
        if done is None:
            return fail(f"error: no pending callback {args.id}")
        print(f"callback {args.id} cancelled")
        return 0

    return with_db(go, cfg)
