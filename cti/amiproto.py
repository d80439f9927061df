"""The AMI wire format as pure functions: framing, parsing, encoding, replies.

No I/O here: :mod:`cti.ami` owns the socket.  Everything in this module can be
driven with bytes in a test, whatever way the bytes were cut into reads.

An AMI message is ``Key: Value`` lines ending in CRLF, closed by a blank line.
Repeated keys (``ChanVariable``, ``Output``) become lists.  The one exception
to the framing is the old (Asterisk ≤ 13) ``Response: Follows`` command
output, whose raw body may hold blank lines and ends with ``--END COMMAND--``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

EOL = b"\r\n"
EOM = b"\r\n\r\n"
FOLLOWS = b"Response: Follows"
END_COMMAND = b"--END COMMAND--"

# Real AMI lines are a few hundred bytes and messages a few KiB; anything far
# beyond is a broken or hostile peer and costs it its connection.
MAX_LINE = 64 * 1024
MAX_MESSAGE = 1 << 20

AmiEvent = dict[str, Any]
Action = Mapping[str, "str | Sequence[str]"]


class FrameTooLarge(ValueError):
    """The peer sent a line or a message over the limit: drop the connection.

    ``messages`` holds the complete messages that came before the offending
    one: they are good, and may be handled before the connection goes.
    """

    def __init__(self, reason: str, messages: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.messages: list[bytes] = messages or []


def _longest_line(data: bytes) -> int:
    # Bare LF counts as a line end too: old command output uses it.
    return max(map(len, data.split(b"\n")))


def _check(
    data: bytes,
    max_line: int | None,
    max_message: int | None,
    complete: bool,
    before: list[bytes],
) -> None:
    if max_message is not None and len(data) > max_message:
        what = "message" if complete else "unfinished message"
        raise FrameTooLarge(f"{what} of {len(data)} bytes (limit {max_message})", before)
    if max_line is not None and len(data) > max_line and _longest_line(data) > max_line:
        raise FrameTooLarge(f"line longer than {max_line} bytes", before)


def split_messages(
    buffer: bytes, *, max_line: int | None = None, max_message: int | None = None
) -> tuple[list[bytes], bytes]:
    """Cut complete AMI messages off the front of ``buffer``.

    Returns (messages, rest): feed ``rest + next_read`` to the next call.
    Blank blocks are skipped.  With limits, raises :class:`FrameTooLarge` when
    a message (complete or not) or one of its lines is over them, so a peer
    cannot make the buffer grow without end; the exception carries the
    complete messages before the offending one.
    """
    messages: list[bytes] = []
    start = 0
    while True:
        # Walk an index instead of re-slicing the rest: one read can carry
        # thousands of events, and copying the tail each time is quadratic.
        while buffer.startswith(EOL, start):
            start += len(EOL)
        end = buffer.find(EOM, start)
        if end < 0:
            break
        if buffer.startswith(FOLLOWS, start) and buffer.find(END_COMMAND, start, end) < 0:
            # Old-style command output: the body may hold blank lines; the
            # message ends with the blank line after --END COMMAND--.
            marker = buffer.find(END_COMMAND, end)
            end = buffer.find(EOM, marker) if marker >= 0 else -1
            if end < 0:
                break
        raw = buffer[start:end]
        _check(raw, max_line, max_message, True, messages)
        if raw.strip():
            messages.append(raw)
        start = end + len(EOM)
    rest = buffer[start:]
    _check(rest, max_line, max_message, False, messages)
    return messages, rest


_HEADER = re.compile(r"[A-Za-z0-9_-]+: ")


def _header(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(": ")
    if not sep:
        key, sep, value = line.partition(":")
        if not sep:
            return None  # banner line or body text: not a header
    key = key.strip()
    return (key, value) if key else None


def parse_message(raw: bytes) -> AmiEvent | None:
    """One AMI message to a dict; repeated keys become lists; None if not a message.

    Old-style command output (``Response: Follows`` … ``--END COMMAND--``)
    gets its body as ``Output``, a list of lines, as newer Asterisk sends it.
    """
    text = raw.decode("utf-8", "replace")
    body: list[str] | None = None
    lines = text.split("\r\n")
    if text.startswith("Response: Follows") and (cut := text.rfind("--END COMMAND--")) >= 0:
        lines = text[:cut].split("\r\n")
        n = 0
        while n < len(lines) and _HEADER.match(lines[n]):
            n += 1
        body = "\n".join(lines[n:]).replace("\r", "").split("\n")
        while body and not body[-1]:
            body.pop()
        lines = lines[:n]
    out: AmiEvent = {}
    for line in lines:
        header = _header(line)
        if header is None:
            continue
        key, value = header
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    if "Event" not in out and "Response" not in out:
        return None
    if body is not None:
        out["Output"] = body
    return out


def chan_variables(event: AmiEvent, prefix: str = "") -> dict[str, str]:
    """``ChanVariable: NAME=value`` headers (``DestChanVariable`` with prefix 'Dest')."""
    raw = event.get(f"{prefix}ChanVariable", [])
    items = raw if isinstance(raw, list) else [raw]
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if sep:
            out[name] = value
    return out


def encode_action(action: Action) -> bytes:
    """An action to bytes; a list value becomes repeated headers (``Variable``).

    Raises ValueError on a CR or LF in a key or value: it would let a value
    (a caller's name, a number) inject headers or a whole second action.
    """
    lines: list[str] = []
    for key, value in action.items():
        if not key or any(c in key for c in ":\r\n") or key != key.strip():
            raise ValueError(f"bad AMI header name {key!r}")
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            text = str(v)
            if "\r" in text or "\n" in text:
                raise ValueError(f"line break in AMI header {key}")
            lines.append(f"{key}: {text}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def header(message: AmiEvent, key: str) -> str:
    """A header as one string, whatever its case or repetition ('' when absent)."""
    value = message.get(key)
    if value is None:
        lower = key.lower()
        value = next((v for k, v in message.items() if k.lower() == lower), "")
    if isinstance(value, list):
        return str(value[-1]) if value else ""
    return str(value)


class Reply:
    """The messages answering one action (all with its ActionID), until complete.

    A plain action is answered by one ``Response``.  A list action
    (``EventList: start``, "... will follow") is answered by a response and
    events up to one whose name ends in ``Complete``.  An asynchronous
    ``Originate`` is answered by its response and the ``OriginateResponse``.
    """

    def __init__(self, action: Action) -> None:
        plain: AmiEvent = {k: v for k, v in action.items() if isinstance(v, str)}
        is_async = header(plain, "Async").lower() in ("true", "yes", "1")
        name = header(plain, "Action")
        self.originate = name.lower() == "originate" and is_async
        self.messages: list[AmiEvent] = []
        self.listing = False

    def add(self, message: AmiEvent) -> bool:
        """Add one message; True when the reply is complete."""
        self.messages.append(message)
        if len(self.messages) == 1:
            response = header(message, "Response")
            if response.lower() != "success":
                return True  # an error, a Follows, or an odd event: nothing more comes
            self.listing = (
                header(message, "EventList").lower() == "start"
                or "will follow" in header(message, "Message").lower()
                or self.originate
            )
            return not self.listing
        event = header(message, "Event")
        return (
            event.endswith("Complete")
            or header(message, "EventList").lower() == "complete"
            or event == "OriginateResponse"
            or "Response" in message
        )
