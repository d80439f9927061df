"""``hotline users add`` and ``hotline audit ...``: who may do what, and what they did.

``audit verify`` exits 0 when the log is intact, 1 when anything is wrong (each
bad entry named, and why), 2 when the key file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, print_json, with_db
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.storage.db import Database


def register(sub: Subparsers) -> None:
    users = group(sub, "users", "users and roles", dest="u")
    s = command(users, "add", cmd_users_add, "add a user (compliance, admin or agent)")
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=["compliance", "admin", "agent"])
    s.add_argument("--agent", help="role agent: the agent's number (e.g. 1001) it works as")
    s.add_argument("--password-stdin", action="store_true")

    audit = group(sub, "audit", "the audit log", dest="a")
    s = command(audit, "show", cmd_audit_show, "the latest audit entries")
    s.add_argument("--limit", type=int, default=50)
    s = command(audit, "verify", cmd_audit_verify, "check the chain, its seals and checkpoints")
    s.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    command(
        audit, "rotate-key", cmd_audit_rotate_key, "add a new sealing key (old ones still verify)"
    )


def cmd_users_add(cfg: Config, args: argparse.Namespace) -> int:
    import secrets

    from hotline.records.audit import AuditLog
    from hotline.records.users import Users, host_operator

    async def go(db: Database) -> int:
        password = (
            sys.stdin.readline().strip() if args.password_stdin else secrets.token_urlsafe(12)
        )
        try:
            await Users(db).add(args.name, args.role, password, agent=args.agent)
        except ValueError as e:
            return fail(f"error: {e}")
        await AuditLog.from_config(db, cfg).record(
            host_operator().label,
            "user_add",
            args.name,
            "ok",
            {"role": args.role, **({"agent": args.agent} if args.agent else {})},
        )
        bound = f", agent {args.agent}" if args.agent else ""
        print(f"user {args.name} ({args.role}{bound}) added")
        if not args.password_stdin:
            print(f"password (shown once): {password}")
        return 0

    return with_db(go, cfg)


def visible(text: str, *, backslash: bool = True) -> str:
    """``text`` safe for a terminal: control and format characters as escapes (``\\x1b``).

    Names, targets and paths in the audit log come from whoever sent them; a
    raw ESC, CSI (U+009B), BEL or bidi override would reach the reader's
    terminal as a command.  ``backslash`` escapes ``\\`` too, so an escape
    shown is never one that was typed.
    """
    out = []
    for c in text:
        if c == "\\" and backslash:
            out.append("\\\\")
        elif unicodedata.category(c) in _UNSAFE:
            n = ord(c)
            out.append(
                f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
            )
        else:
            out.append(c)
    return "".join(out)


# Control, format (bidi overrides, zero-width), line and paragraph separators, unassigned,
# surrogates (a lone one in a name), private use.
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Cs", "Co"})


def cmd_audit_show(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.audit import AuditLog

    async def go(db: Database) -> int:
        for e in reversed(await AuditLog.from_config(db, cfg).entries(args.limit)):
            detail = visible(json.dumps(e.detail, ensure_ascii=False), backslash=False)
            print(
                f"{e.seq:6} {e.at:%Y-%m-%d %H:%M:%S} {visible(e.actor):20} "
                f"{visible(e.action):8} {visible(e.result):8} {visible(e.target):32} {detail}"
            )
        return 0

    return with_db(go, cfg)


def cmd_audit_verify(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.audit import AuditLog
    from hotline.records.seal import KeyFileError, Sealer

    try:  # never create a key here: a new key would make every seal look foreign
        sealer = Sealer.load(cfg.path(cfg.audit.key_file))
    except KeyFileError as e:
        return fail(f"error: {e}", 2)

    async def go(db: Database) -> int:
        report = await AuditLog(db, sealer, cfg.path(cfg.audit.checkpoint_file)).check()
        if args.json:
            print_json([p.to_json() for p in report.problems], ensure_ascii=False)
        else:
            for p in report.problems:
                print(p.message)
            print(report.summary())
        return 0 if report.ok else 1

    return with_db(go, cfg)


def cmd_audit_rotate_key(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.seal import KeyFileError, Sealer

    path = cfg.path(cfg.audit.key_file)
    try:
        sealer = Sealer.rotate(path)
    except KeyFileError as e:
        return fail(f"error: {e}", 2)
    print(
        f"{path}: new key {sealer.current} seals from now on (a running server: once "
        f"restarted); {len(sealer.keys) - 1} older key(s) kept to verify what they sealed"
    )
    return 0
