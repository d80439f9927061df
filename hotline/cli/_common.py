"""What every command module shares: the handler type, adding a command, running one.

Only cheap modules are imported here: ``hotline --help`` imports every command
module, so feature code is imported inside the command functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from hotline.config import DEFAULT_CONFIG, Config, load_config

if TYPE_CHECKING:
    from hotline.records.users import Actor
    from hotline.storage.db import Database

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler: TypeAlias = Callable[[Config, argparse.Namespace], int]

# The configuration of the command running in :func:`with_db` (for :func:`actor`'s audit).
_running_config: ContextVar[Config | None] = ContextVar("hotline_cli_config", default=None)
# Where ``--as NAME`` reads NAME's password when it does not prompt for it.
PASSWORD_ENV = "HOTLINE_PASSWORD"  # noqa: S105 (a variable's name, not a password)
# ``--as`` refused: no password, a wrong one, or no such user.
AS_REFUSED = 2


def command(parent: Subparsers, name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` that runs ``fn(cfg, args)``; returns its parser for flags."""
    sp = parent.add_parser(name, help=help_)
    sp.set_defaults(fn=fn)
    return sp


def group(sub: Subparsers, name: str, help_: str, dest: str) -> Subparsers:
    """Add ``hotline NAME ...``, a command that only holds subcommands.

    ``dest`` is part of the interface: argparse names it when the subcommand is missing.
    """
    return sub.add_parser(name, help=help_).add_subparsers(dest=dest, required=True)


def load(args: argparse.Namespace) -> Config:
    """The configuration ``--config`` names, else ./hotline.toml if there is one."""
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load_config(path)


def run(coro: Coroutine[object, object, int]) -> int:
    return asyncio.run(coro)


def with_db(fn: Callable[[Database], Awaitable[int]], cfg: Config) -> int:
    """Run ``fn`` with the configured database, migrated to the current schema."""
    from hotline.storage.db import Database

    async def go() -> int:
        _running_config.set(cfg)
        db = Database(cfg.database_url())
        try:
            await db.migrate()
            return await fn(db)
        finally:
            await db.close()

    return run(go())


def print_json(value: object, *, ensure_ascii: bool) -> None:
    """``--json`` output: indented; ``ensure_ascii`` as each command has always printed it."""
    print(json.dumps(value, indent=2, ensure_ascii=ensure_ascii))


def fail(message: str, code: int = 1) -> int:
    """Print ``message`` to stderr and return the exit code."""
    print(message, file=sys.stderr)
    return code


def as_options(parser: argparse.ArgumentParser) -> None:
    """``--as NAME`` and ``--password-stdin``, for a command that calls :func:`actor`."""
    parser.add_argument("--as", dest="as_user", help="act as this named user (role enforced)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the --as user's password from stdin"
    )


async def actor(
    db: Database, as_user: str | None, cfg: Config | None = None, *, password_stdin: bool = False
) -> Actor:
    """Who a command acts as: ``--as NAME`` (a user, role enforced), else the host operator.

    Acting as NAME takes NAME's password: one line of stdin with
    ``password_stdin``, else ``$HOTLINE_PASSWORD``, else a prompt when stdin
    is a terminal.  Root may act as anyone without it, and the audit
    log then names both (``carol (root via --as)``).  Refused: a message, a
    ``denied`` entry in the audit log and exit status 2.
    """
    from hotline.records.users import Actor, Users, host_operator, os_user

    if as_user is None:
        return host_operator()
    users = Users(db)
    me = os_user()
    if os.geteuid() == 0:
        found = await users.actor(as_user)
        if found is None:
            await _refuse(
                db, cfg, as_user, me, "no such user", f"no user {as_user!r} (hotline users add)"
            )
        return Actor(found.name, found.roles, via=me)
    password = os.environ.get(PASSWORD_ENV)
    if password_stdin:
        password = (await asyncio.to_thread(sys.stdin.readline)).rstrip("\r\n")
    elif password is None and sys.stdin.isatty():
        import getpass

        password = await asyncio.to_thread(getpass.getpass, f"password for {as_user}: ")
    if not password:
        await _refuse(
            db,
            cfg,
            as_user,
            me,
            "no password",
            f"--as {as_user} needs {as_user}'s password: type it when asked (a terminal), "
            f"or set {PASSWORD_ENV}; only root acts as another user without it",
        )
    authenticated = await users.authenticate(as_user, password)
    if authenticated is None:
        await _refuse(
            db, cfg, as_user, me, "wrong password", f"--as {as_user}: wrong name or password"
        )
    return authenticated


async def _refuse(
    db: Database, cfg: Config | None, as_user: str, me: str, why: str, message: str
) -> NoReturn:
    """Audit a refused ``--as`` (``why``), print ``message``, leave with :data:`AS_REFUSED`."""
    from hotline.records.audit import AuditLog

    cfg = cfg if cfg is not None else _running_config.get()
    if cfg is not None:
        audit = await asyncio.to_thread(AuditLog.from_config, db, cfg)
        await audit.record(f"os:{me}", "act_as", as_user[:64], "denied", {"why": why})
    print(f"refused: {message} (this attempt is in the audit log)", file=sys.stderr)
    raise SystemExit(AS_REFUSED)


def parse_when(text: str | None) -> datetime | None:
    """An ISO date or time from the command line; UTC unless it names its zone."""
    from datetime import UTC

    if text is None:
        return None
    d = datetime.fromisoformat(text)
    return d if d.tzinfo else d.replace(tzinfo=UTC)
