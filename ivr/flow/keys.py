"""One try at keyed digits, the way every node that asks for keys takes them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.agi import DIGITS

if TYPE_CHECKING:
    from ivr.flow.session import Session


async def key_entry(
    session: Session,
    paths: list[str],
    *,
    first: bool,
    timeout_s: float,
    max_digits: int,
    min_more: int = 0,
) -> str:
    """The digits keyed in one try, without the closing ``#``.

    On the first try the prompt plays, and a key pressed during it is the
    entry's first digit (so is a key pressed during the step before,
    ``session.pending_digit``); a later try, or one that already has a digit,
    only waits.  Then up to ``max_digits`` in all are taken, at least
    ``min_more`` more.
    """
    channel = session.channel
    prefix, session.pending_digit = session.pending_digit or "", None
    if not first or prefix:
        lead, last = [], "silence/1"
    else:
        lead, last = paths[:-1], (paths[-1] if paths else "silence/1")
    for p in lead:
        d = await channel.stream_file(p, DIGITS)
        if d:
            prefix, last = d, "silence/1"
            break
    keyed, _ = await channel.get_data(
        last, int(timeout_s * 1000), max(max_digits - len(prefix), min_more)
    )
    return (prefix + keyed).rstrip("#")
