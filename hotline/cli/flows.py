"""``hotline flow show``: a call flow as an outline or a graph."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hotline.cli._common import command, fail, group
from hotline.config import Config

if TYPE_CHECKING:
    from hotline.cli._common import Subparsers


def register(sub: Subparsers) -> None:
    flow = group(sub, "flow", "call flows", dest="flow_cmd")
    s = command(flow, "show", cmd_flow_show, "print a flow as an outline or a graph")
    s.add_argument("file")
    s.add_argument("--format", choices=["outline", "dot", "mermaid"], default="outline")
    s.add_argument("--language")


def cmd_flow_show(cfg: Config, args: argparse.Namespace) -> int:
    from ivr.flow import render
    from ivr.flow.loader import FlowError, load_flow

    try:
        flow = load_flow(Path(args.file))
    except FlowError as e:
        return fail(str(e))
    if args.format == "outline":
        text = render.outline(flow, args.language)
    elif args.format == "dot":
        text = render.dot(flow)
    else:
        text = render.mermaid(flow)
    sys.stdout.write(text)
    return 0
