"""The AGI protocol, and nothing else: environment, commands, replies, hangup.

Wire format (Asterisk's res_agi): on connect Asterisk sends ``agi_key: value``
lines ended by an empty line; then we send one command line at a time and
read one reply line (``200 result=1 (data) endpos=1234``; ``510`` invalid
command; ``511`` dead channel; ``520-`` usage, several lines).  When the
caller hangs up during FastAGI, Asterisk sends the line ``HANGUP``.

Every way a call can end under us (``HANGUP``, ``511``, ``result=-1`` where
that means hangup, EOF) becomes one exception, :class:`AgiHangup`, and after
it nothing more is written to the channel.

Every read is bounded in bytes and in time, so a peer that is not Asterisk
(or an Asterisk gone wrong) costs at most one connection's small buffers for a
bounded time: the environment (lines, bytes, ``header_timeout``), each reply
(one line, all its lines, all its bytes: a ``520-`` usage text that never
ends is :class:`AgiReplyTooLarge`), and the wait for each reply
(:data:`WAITS_ON_CALLER` commands may take ``command_timeout``; every other
command is one Asterisk answers at once, within ``reply_timeout``).  A
connection's first command that may wait on the caller is preceded by a
``NOOP`` answered within ``reply_timeout``: a peer that sends an environment
and then nothing is dropped that soon, whatever the flow's first step.  Over a
bound the channel raises an :class:`AgiProtocolError` subclass, keeps it in
:attr:`AgiChannel.failure` and says nothing more on that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

MAX_ENV_LINES = 200
MAX_ENV_BYTES = 64 * 1024  # a real environment is about 1 KB, arguments included
MAX_LINE = 4096
# Defaults of [agi] max_reply_lines and max_reply_bytes (hotline.config).
MAX_REPLY_LINES = 200
MAX_REPLY_BYTES = 64 * 1024
DIGITS = "0123456789*#"


class AgiError(Exception):
    """Base of everything this module raises."""


class AgiHangup(AgiError):
    """The channel is gone: the caller hung up (or Asterisk dropped the call)."""


class AgiProtocolError(AgiError):
    """The peer sent something that is not AGI (garbage, over-long, timed out)."""


class AgiTooLarge(AgiProtocolError):
    """The peer sent more than a bound allows: a line, or a block's lines or bytes."""


class AgiEnvironmentTooLarge(AgiTooLarge):
    """The AGI environment is over its bound (one line, lines or bytes)."""


class AgiReplyTooLarge(AgiTooLarge):
    """One reply is over its bound (one line, lines or bytes): e.g. a ``520-`` without end."""


class AgiTimeout(AgiProtocolError):
    """The peer stayed silent longer than the phase allows (environment or one reply)."""


class AgiInvalidCommand(AgiError):
    """510: Asterisk does not know the command."""


class AgiUsageError(AgiError):
    """520: the command's arguments are wrong; the message has Asterisk's usage text."""


class AgiCommandFailed(AgiError):
    """The command ran and failed (e.g. result=-1 for a prompt file that is missing)."""


@dataclass(frozen=True, slots=True)
class AgiReply:
    code: int
    result: str = ""
    data: str | None = None
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> int:
        try:
            return int(self.result)
        except ValueError:
            return 0


_REPLY = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -])(?P<rest>.*)$")
_RESULT = re.compile(
    r"^result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<extras>(?: [\w-]+=\S*)*)\s*$"
)


def parse_reply(line: str) -> AgiReply:
    """Parse one reply line.  Raises AgiHangup for ``HANGUP``, AgiProtocolError for garbage."""
    if line == "HANGUP":
        raise AgiHangup("HANGUP received")
    m = _REPLY.match(line)
    if m is None:
        raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
    code = int(m["code"])
    rest = m["rest"]
    if code != 200:
        return AgiReply(code=code, data=rest)
    r = _RESULT.match(rest)
    if r is None:
        raise AgiProtocolError(f"malformed 200 reply: {line[:80]!r}")
    extras = dict(kv.split("=", 1) for kv in r["extras"].split())
    return AgiReply(code=200, result=r["result"], data=r["data"], extras=extras)


def parse_environment(lines: list[str]) -> dict[str, str]:
    """``agi_key: value`` lines to a dict.  Strict: anything else is a protocol error."""
    env: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_") or not re.fullmatch(r"agi_\w+", key):
            raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
        env[key] = value.removeprefix(" ")
    if "agi_channel" not in env and "agi_network_script" not in env:
        raise AgiProtocolError("AGI environment without agi_channel or agi_network_script")
    return env


def quote(arg: str) -> str:
    """Quote one command argument.  Newlines would inject a second command: refused."""
    if any(c in arg for c in "\r\n\0"):
        raise ValueError(f"AGI argument contains a line break: {arg!r}")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Commands whose reply waits on the caller (playing, listening, recording, another
# dialplan application such as AudioSocket): Asterisk answers when the caller is
# done, so they may take [agi] command_timeout_s.  Every other command (GET/SET
# VARIABLE, GET FULL VARIABLE, ANSWER, HANGUP, CHANNEL STATUS, VERBOSE, SET MUSIC,
# SET ..., DATABASE ..., NOOP, ...) is answered at once and gets [agi]
# reply_timeout_s: a peer that stops answering is dropped that soon.  Matched
# on the command's leading words, case-insensitively; "SAY" covers every SAY
# command and "SPEECH" every speech command.  This is the one list: add here.
WAITS_ON_CALLER: tuple[str, ...] = (
    "STREAM FILE",
    "CONTROL STREAM FILE",
    "WAIT FOR DIGIT",
    "GET DATA",
    "GET OPTION",
    "RECORD FILE",
    "SAY",
    "EXEC",
    "SPEECH",
    "GOSUB",
    "RECEIVE CHAR",
    "RECEIVE TEXT",
)
_WAITS_ON_CALLER = tuple(tuple(c.split()) for c in WAITS_ON_CALLER)


def waits_on_caller(command: str) -> bool:
    """Whether ``command`` (a command line, or its first words) waits on the caller."""
    words = tuple(w.upper() for w in command.split(maxsplit=3)[:3])
    return any(words[: len(c)] == c for c in _WAITS_ON_CALLER)


async def _readline(
    reader: asyncio.StreamReader, max_line: int, too_large: type[AgiTooLarge]
) -> bytes:
    """One line (its newline included), at most ``max_line`` bytes; EOF is AgiHangup."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as e:
        raise AgiHangup("connection closed by Asterisk") from e
    except asyncio.LimitOverrunError as e:
        # The stream's own limit: the line was never buffered whole.
        raise too_large(f"line longer than {max_line} bytes") from e
    if len(raw) > max_line:
        raise too_large(f"line longer than {max_line} bytes")
    return raw


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise AgiProtocolError("line is not UTF-8") from e


async def read_environment(
    reader: asyncio.StreamReader,
    timeout: float,
    max_lines: int = MAX_ENV_LINES,
    max_bytes: int = MAX_ENV_BYTES,
) -> dict[str, str]:
    """Read the AGI environment block, bounded in lines, bytes and time.

    Over a size bound: :class:`AgiEnvironmentTooLarge`; not complete within
    ``timeout``: :class:`AgiTimeout`; anything else not AGI: AgiProtocolError.
    """

    async def read() -> dict[str, str]:
        lines: list[str] = []
        size = 0
        while True:
            try:
                raw = await _readline(reader, MAX_LINE, AgiEnvironmentTooLarge)
            except AgiHangup as e:
                raise AgiProtocolError("connection closed before the AGI environment ended") from e
            size += len(raw)
            if size > max_bytes:
                raise AgiEnvironmentTooLarge(f"AGI environment longer than {max_bytes} bytes")
            line = _decode(raw)
            if line == "":
                return parse_environment(lines)
            lines.append(line)
            if len(lines) > max_lines:
                raise AgiEnvironmentTooLarge(f"AGI environment longer than {max_lines} lines")

    try:
        async with asyncio.timeout(timeout):
            return await read()
    except TimeoutError:
        raise AgiTimeout(f"no complete AGI environment within {timeout:g} s") from None


class AgiChannel:
    """One call's AGI session: typed commands over a FastAGI connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: dict[str, str],
        command_timeout: float = 120.0,
        *,
        reply_timeout: float = 5.0,
        max_reply_lines: int = MAX_REPLY_LINES,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.env = env
        # WAITS_ON_CALLER commands get command_timeout, every other one reply_timeout.
        self.command_timeout = command_timeout
        self.reply_timeout = reply_timeout
        self.max_reply_lines = max_reply_lines
        self.max_reply_bytes = max_reply_bytes
        self.hung_up = False
        # Whether the peer has answered anything yet (see _probe).
        self._heard = False
        self._reply_lines = 0
        self._reply_bytes = 0
        # Why the connection was given up, when the peer broke the protocol or a
        # bound (the engine may swallow the exception; the server reads it here).
        self.failure: AgiProtocolError | None = None

    # -- what Asterisk told us --------------------------------------------
    @property
    def script(self) -> str:
        """The FastAGI path (``agi://host/hotline?x=1`` gives ``hotline``)."""
        return self.env.get("agi_network_script", "").split("?", 1)[0].strip("/")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    def argument(self, name: str) -> str | None:
        """The value of a ``name=value`` argument of the AGI() application, if given.

        ``AGI(agi://host/hotline,linkedid=${CHANNEL(linkedid)})`` sends
        ``agi_arg_1: linkedid=1700000000.1``: what the dialplan hands over this way
        costs no command round trip.
        """
        prefix = f"{name}="
        for i in range(1, 64):
            value = self.env.get(f"agi_arg_{i}")
            if value is None:
                return None
            if value.startswith(prefix):
                return value[len(prefix) :]
        return None

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def caller_number(self) -> str:
        n = self.env.get("agi_callerid", "")
        return "" if n == "unknown" else n

    @property
    def caller_name(self) -> str:
        n = self.env.get("agi_calleridname", "")
        return "" if n == "unknown" else n

    @property
    def language(self) -> str:
        return self.env.get("agi_language", "en") or "en"

    # -- the protocol ---------------------------------------------------------
    async def command(self, *words: str) -> AgiReply:
        """Send one command (words already quoted as needed), return its reply."""
        if self.hung_up:
            raise AgiHangup("channel already hung up")
        line = " ".join(words)
        if "\n" in line or "\r" in line:
            raise ValueError("AGI command contains a line break")
        long = waits_on_caller(line)
        if long and not self._heard:
            # A peer that has said nothing since its environment must not hold
            # the slot for a whole command_timeout: Asterisk answers NOOP at once.
            await self.command("NOOP")
        timeout = self.command_timeout if long else self.reply_timeout
        self._writer.write(line.encode("utf-8") + b"\n")
        try:
            await self._writer.drain()
            # asyncio.timeout, not wait_for: wait_for wraps the read in a new task,
            # one more task and loop pass per command for every call.
            async with asyncio.timeout(timeout):
                reply = await self._read_reply()
        except (ConnectionError, AgiHangup) as e:
            self.hung_up = True
            raise AgiHangup(str(e) or "connection lost") from e
        except TimeoutError:
            self.hung_up = True
            self.failure = AgiTimeout(f"no reply to {words[0]} within {timeout:g} s")
            raise self.failure from None
        except AgiProtocolError as e:
            # The stream is out of step: nothing more can be said on it safely.
            self.hung_up = True
            self.failure = e
            raise
        self._heard = True
        if reply.code == 511:
            self.hung_up = True
            raise AgiHangup("dead channel (511)")
        if reply.code == 510:
            raise AgiInvalidCommand(f"{line}: {reply.data}")
        if reply.code == 520:
            raise AgiUsageError(f"{line}: {reply.data}")
        if reply.code != 200:
            raise AgiProtocolError(f"unexpected reply code {reply.code} to {words[0]}")
        return reply

    async def _read_reply(self) -> AgiReply:
        # Every line read for this one command counts against one budget (a 520-
        # usage text and "100 Trying..." lines included): never more is buffered.
        self._reply_lines = 0
        self._reply_bytes = 0
        while True:
            line = await self._reply_line()
            reply = parse_reply(line)
            if reply.code == 520 and line.startswith("520-"):
                # Multi-line usage: read up to "520 End of proper usage."
                usage = [reply.data or ""]
                while not (line := await self._reply_line()).startswith("520 "):
                    usage.append(line)
                return AgiReply(code=520, data="\n".join(usage))
            if reply.code == 100:  # "100 result=0 Trying..." precedes the real reply
                continue
            return reply

    async def _reply_line(self) -> str:
        raw = await _readline(self._reader, min(MAX_LINE, self.max_reply_bytes), AgiReplyTooLarge)
        self._reply_lines += 1
        self._reply_bytes += len(raw)
        if self._reply_lines > self.max_reply_lines:
            raise AgiReplyTooLarge(f"reply longer than {self.max_reply_lines} lines")
        if self._reply_bytes > self.max_reply_bytes:
            raise AgiReplyTooLarge(f"reply longer than {self.max_reply_bytes} bytes")
        return _decode(raw)

    def _hangup_on_minus_one(self, reply: AgiReply, what: str) -> AgiReply:
        if reply.result == "-1":
            self.hung_up = True
            raise AgiHangup(f"{what}: result=-1")
        return reply

    # -- typed commands -------------------------------------------------------
    async def answer(self) -> None:
        self._hangup_on_minus_one(await self.command("ANSWER"), "ANSWER")

    async def stream_file(self, path: str, escape_digits: str = "") -> str | None:
        """Play a file (no extension); return the digit that interrupted it, if any."""
        reply = await self.command("STREAM FILE", quote(path), quote(escape_digits))
        if reply.result == "-1":
            if reply.extras.get("endpos", "0") == "0":
                # Asterisk answers -1/endpos=0 when the file cannot be opened.
                # Tell that apart from a hangup by asking about the channel.
                await self.channel_status()
                raise AgiCommandFailed(f"cannot play {path}")
            self.hung_up = True
            raise AgiHangup("STREAM FILE: result=-1")
        return chr(reply.value) if reply.value > 0 else None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        reply = self._hangup_on_minus_one(
            await self.command("WAIT FOR DIGIT", str(int(timeout_ms))), "WAIT FOR DIGIT"
        )
        return chr(reply.value) if reply.value > 0 else None

    async def get_data(self, path: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play a prompt and collect up to ``max_digits`` (``#`` ends early).

        Returns (digits, timed_out).
        """
        reply = self._hangup_on_minus_one(
            await self.command("GET DATA", quote(path), str(int(timeout_ms)), str(int(max_digits))),
            "GET DATA",
        )
        return reply.result, reply.data == "timeout"

    async def record_file(
        self,
        path: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = 10000,
        silence_s: int = 2,
        beep: bool = False,
    ) -> AgiReply:
        words = ["RECORD FILE", quote(path), fmt, quote(escape_digits), str(int(timeout_ms))]
        if beep:
            words.append("BEEP")
        words.append(f"s={int(silence_s)}")
        return self._hangup_on_minus_one(await self.command(*words), "RECORD FILE")

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        reply = self._hangup_on_minus_one(
            await self.command("SAY NUMBER", str(int(number)), quote(escape_digits)), "SAY NUMBER"
        )
        return chr(reply.value) if reply.value > 0 else None

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        if not digits.isdigit():
            raise ValueError("SAY DIGITS takes digits only")
        reply = self._hangup_on_minus_one(
            await self.command("SAY DIGITS", digits, quote(escape_digits)), "SAY DIGITS"
        )
        return chr(reply.value) if reply.value > 0 else None

    async def set_variable(self, name: str, value: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][\w()]*", name):
            raise ValueError(f"bad channel variable name {name!r}")
        await self.command("SET VARIABLE", name, quote(value))

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", quote(name))
        return reply.data if reply.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        reply = await self.command("GET FULL VARIABLE", quote(expression))
        return reply.data if reply.result == "1" else None

    async def exec(self, application: str, args: str = "") -> int:
        if not re.fullmatch(r"\w+", application):
            raise ValueError(f"bad application name {application!r}")
        reply = self._hangup_on_minus_one(
            await self.command("EXEC", application, quote(args)), f"EXEC {application}"
        )
        return reply.value

    async def channel_status(self) -> int:
        reply = self._hangup_on_minus_one(await self.command("CHANNEL STATUS"), "CHANNEL STATUS")
        return reply.value

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", quote(message), str(level))

    async def hangup(self) -> None:
        """Hang up the call.  Quietly does nothing if it is already gone."""
        if self.hung_up:
            return
        with contextlib.suppress(AgiHangup):
            await self.command("HANGUP")
        self.hung_up = True
