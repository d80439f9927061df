"""``hotline prompts build``: render every prompt of every flow ahead of the first call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hotline.cli._common import command, group, run
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers
    from ivr.flow.model import Flow


def register(sub: Subparsers) -> None:
    prompts = group(sub, "prompts", "prompt audio", dest="p")
    command(prompts, "build", cmd_prompts_build, "render every prompt of every flow (TTS, cached)")


def cmd_prompts_build(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.flow.loader import load_flows

    todo = _texts(load_flows(cfg.path(cfg.paths.dialplans)).values())

    async def build() -> int:
        from ivr.setup import build_prompts

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

    return run(build())


def _texts(flows: Iterable[Flow]) -> set[tuple[str, str]]:
    """Every (text, language) the flows can say that is the same for every caller."""
    from ivr.flow.engine import BUILTIN
    from ivr.flow.model import Prompt

    todo: set[tuple[str, str]] = set()
    for flow in flows:
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
    return todo
