"""What every command module shares: the handler type, adding a command, running one.

Only cheap modules are imported here: ``hotline --help`` imports every command
module, so feature code is imported inside the command functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hotline.config import DEFAULT_CONFIG, Config, load_config

if TYPE_CHECKING:
    from hotline.records.users import Actor
    from hotline.storage.db import Database

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler: TypeAlias = Callable[[Config, argparse.Namespace], int]


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


async def actor(db: Database, as_user: str | None) -> Actor:
    """Who a command acts as: ``--as NAME`` (a user, role enforced), else the host operator."""
    from hotline.records.users import Users, host_operator

    if as_user is None:
        return host_operator()
    found = await Users(db).actor(as_user)
    if found is None:
        raise SystemExit(f"no user {as_user!r} (hotline users add)")
    return found


def parse_when(text: str | None) -> datetime | None:
    """An ISO date or time from the command line; UTC unless it names its zone."""
    from datetime import UTC

    if text is None:
        return None
    d = datetime.fromisoformat(text)
    return d if d.tzinfo else d.replace(tzinfo=UTC)
