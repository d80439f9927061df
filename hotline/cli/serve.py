"""``hotline version``, ``check-config`` and ``serve``: running the server, and whether it can."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from hotline import __version__
from hotline.cli._common import command, fail, run
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers


def register(sub: Subparsers) -> None:
    command(sub, "version", cmd_version, "print the version")
    command(sub, "check-config", cmd_check_config, "validate the configuration and every flow file")
    s = command(sub, "serve", cmd_serve, "run the FastAGI server and the AMI client")
    s.add_argument("--role", choices=["all", "ivr", "cti"], default="all")


def cmd_version(cfg: Config, args: argparse.Namespace) -> int:
    print(f"hotline {__version__}")
    return 0


def cmd_check_config(cfg: Config, args: argparse.Namespace) -> int:
    from hotline.cli.speech import check_menu_words
    from ivr.flow.loader import FlowError, load_flows
    from ivr.speech import check_model_dir

    folder = cfg.path(cfg.paths.dialplans)
    try:
        flows = load_flows(folder)
    except FlowError as e:
        print(f"configuration {cfg.source}: flows are not valid:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    if not flows:
        return fail(f"{cfg.source}: paths.dialplans: no flow files (*.yaml) in {folder}")
    if cfg.ivr.default_flow not in flows:
        return fail(f"{cfg.source}: ivr.default_flow: no flow named {cfg.ivr.default_flow!r}")
    if cfg.ami.enabled:
        cfg.ami_secret()  # raises ConfigError naming the key when unreadable
    for lang, path in cfg.speech.models.items():
        problem = check_model_dir(cfg.path(path))
        if problem is not None:
            return fail(f"{cfg.source}: speech.models.{lang}: {problem}")
    if run(check_menu_words(cfg, flows)):
        return 1
    print(f"configuration {cfg.source}: ok")
    for name, f in sorted(flows.items()):
        print(f"  flow {name}: {len(f.nodes)} nodes, languages {', '.join(f.languages)} ({f.file})")
    return 0


def cmd_serve(cfg: Config, args: argparse.Namespace) -> int:
    # Before anything is created: every file and folder the server makes (the
    # database, its WAL, keys, checkpoints, the notification outbox) is its owner's only.
    os.umask(0o077)
    from hotline.app import serve
    from hotline.logs import setup_logging

    setup_logging(cfg.server.log_level, cfg.server.log_format)
    asyncio.run(serve(cfg, role=args.role))
    return 0
