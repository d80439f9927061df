"""``hotline db upgrade`` and ``hotline customers import|list|set-pin``: the database and its
directory."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, print_json, with_db
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.storage.db import Database


def register(sub: Subparsers) -> None:
    db = group(sub, "db", "database", dest="d")
    command(db, "upgrade", cmd_db_upgrade, "apply migrations")

    cust = group(sub, "customers", "customer directory", dest="c")
    s = command(cust, "import", cmd_customers_import, "import customers from CSV")
    s.add_argument("file")
    s = command(cust, "list", cmd_customers_list, "list customers")
    s.add_argument("--json", action="store_true")
    s = command(
        cust, "set-pin", cmd_customers_set_pin, "set (or --clear) the PIN a caller verifies with"
    )
    s.add_argument("account")
    s.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input")
    s.add_argument("--clear", action="store_true", help="remove the PIN")


def cmd_db_upgrade(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Database) -> int:  # with_db has migrated it
        print("database schema is current")
        return 0

    return with_db(go, cfg)


def cmd_customers_import(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.customers import CustomerDirectory, CustomerImportError

    async def go(db: Database) -> int:
        try:
            added, updated = await CustomerDirectory(db).import_csv(Path(args.file))
        except (CustomerImportError, OSError) as e:
            return fail(f"import failed, nothing changed: {e}")
        print(f"{added} customers added, {updated} updated")
        return 0

    return with_db(go, cfg)


def cmd_customers_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.customers import CustomerDirectory

    async def go(db: Database) -> int:
        customers = await CustomerDirectory(db).list()
        if args.json:
            print_json([c.profile() for c in customers], ensure_ascii=False)
        else:
            for c in customers:
                print(
                    f"{c.id:4} {c.account:8} {c.phone:14} {c.name:24} {c.language} "
                    f"balance {c.balance_cents / 100:.2f}"
                )
        return 0

    return with_db(go, cfg)


def cmd_customers_set_pin(cfg: Config, args: argparse.Namespace) -> int:
    """The PIN is read from a prompt (or stdin), never from the command line: argv is
    visible to every user of the machine.  It is stored only as a salted hash."""
    from hotline.records.customers import PIN_PATTERN, CustomerDirectory

    pin: str | None = None
    if not args.clear:
        pin = sys.stdin.readline().strip() if args.pin_stdin else getpass.getpass("PIN: ")
        if not PIN_PATTERN.fullmatch(pin):
            return fail("a PIN is 4 to 8 digits")

    async def go(db: Database) -> int:
        if not await CustomerDirectory(db).set_pin(args.account, pin):
            return fail(f"no customer with account {args.account!r}")
        print(f"PIN {'removed' if pin is None else 'set'} for account {args.account}")
        return 0

    return with_db(go, cfg)
