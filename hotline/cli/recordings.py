"""``hotline recordings ...``: the compliance recording store; every access is audited.

Exit codes: 0 done, 1 failed (no such recording, integrity, ...), 3 refused by role.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.cli._common import (
    actor,
    as_options,
    command,
    fail,
    group,
    parse_when,
    print_json,
    with_db,
)
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from hotline.recordings.store import RecordingStore
    from hotline.storage.db import Database

REFUSED = 3  # the role may not do this (and the attempt is in the audit log)


def register(sub: Subparsers) -> None:
    rec = group(sub, "recordings", "compliance recordings", dest="r")
    s = command(rec, "search", cmd_recordings_search, "find recordings (audited)")
    for opt in ("caller", "agent", "queue", "call-id", "since", "until"):
        s.add_argument(f"--{opt}")
    s.add_argument("--limit", type=_limit, default=100, help="1 to 1000 (default 100)")
    s.add_argument("--json", action="store_true")
    as_options(s)
    s = command(rec, "get", cmd_recordings_get, "export one recording to a file (audited)")
    s.add_argument("id")
    s.add_argument("--out", required=True)
    as_options(s)
    s = command(rec, "ingest", cmd_recordings_ingest, "store every finished spool file now")
    s.add_argument("--min-age", type=float, default=3.0)
    command(rec, "verify", cmd_recordings_verify, "re-hash every file; check the audit log")
    s = command(rec, "hold", cmd_recordings_hold, "put a recording under legal hold")
    s.add_argument("id")
    s.add_argument("--reason", required=True)
    as_options(s)
    s.set_defaults(hold=True)
    s = command(rec, "release", cmd_recordings_hold, "release a legal hold")
    s.add_argument("id")
    as_options(s)
    s.set_defaults(hold=False)
    s = command(
        rec, "purge", cmd_recordings_purge, "delete recordings past retention (not on hold)"
    )
    as_options(s)
    s = command(
        rec,
        "rotate-key",
        cmd_recordings_rotate_key,
        "new site key for encrypted recordings; re-wrap every data key (audio untouched)",
    )
    as_options(s)


def _limit(text: str) -> int:
    """``--limit``: a whole number from 1 to 1000, as the HTTP API takes it."""
    if not (text.isdecimal() and len(text) <= 4 and 1 <= int(text) <= 1000):
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to 1000, not {text[:20]!r}"
        )
    return int(text)


def _store(cfg: Config, db: Database) -> RecordingStore:
    from hotline.recordings.setup import build_store
    from hotline.records.audit import AuditLog
    from hotline.records.interactions import InteractionStore

    return build_store(cfg, db, InteractionStore(db), AuditLog.from_config(db, cfg))


def cmd_recordings_search(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.users import AccessDenied

    async def go(db: Database) -> int:
        store = _store(cfg, db)
        try:
            found = await store.search(
                await actor(db, args.as_user, cfg, password_stdin=args.password_stdin),
                caller=args.caller,
                agent=args.agent,
                queue=args.queue,
                call_id=args.call_id,
                since=parse_when(args.since),
                until=parse_when(args.until),
                limit=args.limit,
            )
        except AccessDenied as e:
            return fail(f"refused: {e} (this attempt is in the audit log)", REFUSED)
        if args.json:
            print_json([r.to_json() for r in found], ensure_ascii=True)
        else:
            for r in found:
                print(
                    f"{r.id}  {r.started_at:%Y-%m-%d %H:%M:%S}  {r.duration_s:6.1f}s  "
                    f"caller {r.caller:12} agent {r.agent:6} queue {r.queue:8} "
                    f"{'HOLD ' if r.legal_hold else ''}{r.call_id}"
                )
        return 0

    return with_db(go, cfg)


def cmd_recordings_get(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.recordings.store import RecordingError
    from hotline.records.users import AccessDenied

    async def go(db: Database) -> int:
        store = _store(cfg, db)
        try:
            rec = await store.export(
                await actor(db, args.as_user, cfg, password_stdin=args.password_stdin),
                args.id,
                Path(args.out),
            )
        except AccessDenied as e:
            return fail(f"refused: {e} (this attempt is in the audit log)", REFUSED)
        except RecordingError as e:  # RecordingNotFound, IntegrityError
            return fail(f"error: {e}")
        print(
            f"{args.out}: recording {rec.id} of call {rec.call_id}, {rec.size} bytes, "
            f"sha256 {rec.sha256} (verified)"
        )
        return 0

    return with_db(go, cfg)


def cmd_recordings_ingest(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Database) -> int:
        report = await _store(cfg, db).sweep(min_age_s=args.min_age)
        print(
            f"ingested {len(report.ingested)}, waiting {len(report.waiting)}, "
            f"failed {len(report.failed)}, not ours {len(report.quarantined)}"
        )
        for name in report.failed:
            print(f"  failed (kept in the spool): {name}")
        for name in report.quarantined:
            print(f"  names no call, quarantined: {name}")
        return 1 if report.failed else 0

    return with_db(go, cfg)


def cmd_recordings_verify(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Database) -> int:
        def progress(i: int, n: int) -> None:
            print(f"\rverifying {i}/{n}", end="", file=sys.stderr, flush=True)

        files, audit = await _store(cfg, db).check(progress)
        print(file=sys.stderr)
        problems = files + [p.message for p in audit.problems]
        for p in problems:
            print(p)
        print(audit.summary())
        print(
            "all recordings and the audit chain are intact"
            if not problems
            else f"{len(problems)} problem(s)"
        )
        return 1 if problems else 0

    return with_db(go, cfg)


def cmd_recordings_hold(cfg: Config, args: argparse.Namespace) -> int:
    """``hold`` and ``release`` (``args.hold`` tells which)."""
    from hotline.recordings.store import RecordingError
    from hotline.records.users import AccessDenied

    async def go(db: Database) -> int:
        try:
            await _store(cfg, db).set_hold(
                await actor(db, args.as_user, cfg, password_stdin=args.password_stdin),
                args.id,
                args.hold,
                getattr(args, "reason", ""),
            )
        except AccessDenied as e:
            return fail(f"error: {e}", REFUSED)
        except RecordingError as e:  # RecordingNotFound
            return fail(f"error: {e}")
        print(f"recording {args.id}: legal hold {'set' if args.hold else 'released'}")
        return 0

    return with_db(go, cfg)


def cmd_recordings_purge(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.users import AccessDenied

    async def go(db: Database) -> int:
        try:
            purged = await _store(cfg, db).purge(
                await actor(db, args.as_user, cfg, password_stdin=args.password_stdin)
            )
        except AccessDenied as e:
            return fail(f"error: {e}", REFUSED)
        print(f"{len(purged)} recording(s) past retention deleted (each in the audit log)")
        return 0

    return with_db(go, cfg)


def cmd_recordings_rotate_key(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.recordings.crypt import SiteKeys
    from hotline.recordings.store import RecordingError
    from hotline.records.users import AccessDenied

    if not cfg.recordings.encrypt:
        return fail("error: recordings are not encrypted here ([recordings] encrypt = false)")

    async def go(db: Database) -> int:
        who = await actor(db, args.as_user, cfg, password_stdin=args.password_stdin)
        who.require("retention")  # before a key is added: refused means nothing changed
        keys = SiteKeys.rotate(cfg.path(cfg.recordings.key_file))
        try:
            done, current = await _store(cfg, db).rewrap_all(who)
        except AccessDenied as e:
            return fail(f"error: {e}", REFUSED)
        except RecordingError as e:
            return fail(f"error: {e} (run it again to finish; the old keys stay in the file)")
        print(
            f"site key {keys.current} is current; re-wrapped {done} recording(s), "
            f"{current} already current"
        )
        return 0

    try:
        return with_db(go, cfg)
    except AccessDenied as e:
        return fail(f"error: {e}", REFUSED)
