"""The ``hotline`` command: this module only assembles it.

Each feature's commands are in a module of their own with ``register(sub)``,
which adds its subcommands to the top-level subparsers.  Imports of feature
code stay inside the command functions, so ``hotline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from hotline.cli import (
    callbacks,
    calls,
    flows,
    mqtt,
    prompts,
    recordings,
    records,
    serve,
    speech,
    users,
)
from hotline.cli._common import load
from hotline.config import DEFAULT_CONFIG, ConfigError

# In the order `hotline --help` lists their commands.
FEATURES = (
    serve,  # version, check-config, serve
    flows,  # flow show
    prompts,  # prompts build
    records,  # db upgrade, customers import|list
    mqtt,  # mqtt users
    recordings,  # recordings search|get|ingest|verify|hold|release|purge
    users,  # users add, audit show
    speech,  # models list|install, asr test
    calls,  # calls show|list
    callbacks,  # callbacks list|cancel
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="IVR and CTI server for Asterisk")
    p.add_argument(
        "--config", "-c", help=f"TOML file (default: $HOTLINE_CONFIG or ./{DEFAULT_CONFIG})"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for feature in FEATURES:
        feature.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load(args)
        code: int = args.fn(cfg, args)
    except ConfigError as e:
        print(f"configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
