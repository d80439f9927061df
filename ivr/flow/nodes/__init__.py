"""Every node type a flow file may use: ``type: NAME`` -> the class in its own module.

A new node type is one module here (a :class:`ivr.flow.node.Node` subclass
with ``parse``, ``targets``, ``describe`` and ``run``) plus one line in
``NODES``.  The loader, the renderers and the engine look types up here
and know nothing about any of them.
"""

from __future__ import annotations

from ivr.flow.node import Node
from ivr.flow.nodes import (
    action,
    branch,
    collect,
    deflect,
    goto,
    hangup,
    listen,
    lookup,
    menu,
    queue,
    return_,
    say,
    set_vars,
    subflow,
    transfer,
    verify,
)

NODES: dict[str, type[Node]] = {
    "say": say.Say,
    "menu": menu.Menu,
    "collect": collect.Collect,
    "lookup": lookup.Lookup,
    "branch": branch.Branch,
    "set": set_vars.SetVars,
    "queue": queue.Queue,
    "deflect": deflect.Deflect,
    "hangup": hangup.Hangup,
    "goto": goto.Goto,
    "subflow": subflow.SubFlow,
    "return": return_.Return,
    "action": action.Action,
    "listen": listen.Listen,
    "transfer": transfer.Transfer,
    "verify": verify.Verify,
}

# Named in the design, built by later issues; a flow using them is told so.
PLANNED = {"callback"}  # callbacks are offered by `deflect`
