"""``hotline users add`` and ``hotline audit show``: who may do what, and what they did."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, with_db
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.storage.db import Database


def register(sub: Subparsers) -> None:
    users = group(sub, "users", "users and roles", dest="u")
    s = command(users, "add", cmd_users_add, "add a user (compliance, admin or agent)")
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=["compliance", "admin", "agent"])
    s.add_argument("--password-stdin", action="store_true")

    audit = group(sub, "audit", "the audit log", dest="a")
    s = command(audit, "show", cmd_audit_show, "the latest audit entries")
    s.add_argument("--limit", type=int, default=50)


def cmd_users_add(cfg: Config, args: argparse.Namespace) -> int:
    import secrets

    from hotline.records.audit import AuditLog
    from hotline.records.users import Users, host_operator

    async def go(db: Database) -> int:
        password = (
            sys.stdin.readline().strip() if args.password_stdin else secrets.token_urlsafe(12)
        )
        try:
            await Users(db).add(args.name, args.role, password)
        except ValueError as e:
            return fail(f"error: {e}")
        await AuditLog(db).record(
            host_operator().label, "user_add", args.name, "ok", {"role": args.role}
        )
        print(f"user {args.name} ({args.role}) added")
        if not args.password_stdin:
            print(f"password (shown once): {password}")
        return 0

    return with_db(go, cfg)


def cmd_audit_show(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.audit import AuditLog

    async def go(db: Database) -> int:
        for e in reversed(await AuditLog(db).entries(args.limit)):
            print(
                f"{e.seq:6} {e.at:%Y-%m-%d %H:%M:%S} {e.actor:20} {e.action:8} {e.result:8} "
                f"{e.target:32} {json.dumps(e.detail, ensure_ascii=False)}"
            )
        return 0

    return with_db(go, cfg)
