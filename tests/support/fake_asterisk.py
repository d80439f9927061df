"""A scripted AGI peer: plays Asterisk's side of a FastAGI session over real TCP.

For unit tests of the engine (fast, every path, hangup at any step).  The
end-to-end tests use the real Asterisk instead.

``keys`` is what the caller does, consumed in order by the commands that wait
for input: a digit ("1") answers WAIT FOR DIGIT, a digit string ("411...#")
answers GET DATA, "!1" presses 1 during the prompt being played (barge-in),
None lets the command time out.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FakeCall:
    keys: list[str | None] = field(default_factory=list)
    caller: str = "5559999"
    hangup_after: int | None = None  # commands answered before the caller hangs up
    missing_files: set[str] = field(default_factory=set)
    script: str = "hotline"
    linkedid: str = "1700000000.1"
    # The demo dialplan passes linkedid=... as AGI(...) argument 1; others do not.
    linkedid_argument: bool = False
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    played: list[str] = field(default_factory=list)
    hung_up_by_server: bool = False
    # RECORD FILE writes an (empty) WAV here, as Asterisk would into the shared folder.
    record_dir: Path | None = None
    closed_by_server: bool = False

    def env(self) -> bytes:
        lines = {
            "agi_network": "yes",
            "agi_network_script": self.script,
            "agi_request": f"agi://127.0.0.1/{self.script}",
            "agi_channel": "PJSIP/callers-00000001",
            "agi_language": "en",
            "agi_type": "PJSIP",
            "agi_uniqueid": self.linkedid,
            "agi_callerid": self.caller,
            "agi_calleridname": "Test",
            "agi_context": "from-callers",
            "agi_extension": "100",
            "agi_priority": "4",
            **({"agi_arg_1": f"linkedid={self.linkedid}"} if self.linkedid_argument else {}),
        }
        return ("".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n").encode()

    def _next_key(self) -> str | None:
        return self.keys.pop(0) if self.keys else None

    def reply(self, line: str) -> str:
        words = shlex.split(line)
        cmd = " ".join(w for w in words[:3] if w.isupper() and not w.isdigit())
        if line.startswith("STREAM FILE"):
            path, escape = words[2], words[3]
            self.played.append(path)
            if path in self.missing_files:
                return "200 result=-1 endpos=0"
            if self.keys and self.keys[0] is not None and self.keys[0].startswith("!"):
                digit = self.keys[0][1]
                if digit in escape:
                    self.keys.pop(0)
                    return f"200 result={ord(digit)} endpos=800"
            return "200 result=0 endpos=8000"
        if line.startswith("WAIT FOR DIGIT"):
            k = self._next_key()
            return f"200 result={ord(k)}" if k else "200 result=0"
        if line.startswith("GET DATA"):
            self.played.append(words[2])
            k = self._next_key()
            if not k:
                return "200 result= (timeout)"
            return f"200 result={k.rstrip('#')}"
        if line.startswith("RECORD FILE"):
            if self.record_dir is not None:
                (self.record_dir / (Path(words[2]).name + ".wav")).write_bytes(b"RIFF")
            return "200 result=0 (timeout) endpos=8000"
        if line.startswith("SET VARIABLE"):
            self.variables[words[2]] = words[3]
            return "200 result=1"
        if line.startswith("GET FULL VARIABLE"):
            return f"200 result=1 ({self.linkedid})" if "linkedid" in line else "200 result=0"
        if line == "NOOP":
            return "200 result=0"
        if line.startswith("HANGUP"):
            self.hung_up_by_server = True
            return "200 result=1"
        if cmd.startswith(("ANSWER", "CHANNEL STATUS", "VERBOSE", "EXEC")):
            return "200 result=6" if "CHANNEL" in cmd else "200 result=0"
        return "510 Invalid or unknown command"

    async def run(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> FakeCall:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(self.env())
        await writer.drain()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await reader.readline()
                    if not raw:
                        self.closed_by_server = True
                        break
                    line = raw.decode().rstrip("\n")
                    self.commands.append(line)
                    if self.hangup_after is not None and len(self.commands) > self.hangup_after:
                        writer.write(b"HANGUP\n")
                        await writer.drain()
                        break
                    writer.write((self.reply(line) + "\n").encode())
                    await writer.drain()
                    if self.hung_up_by_server:
                        break
        finally:
            writer.close()
        return self

    @property
    def digits_collected(self) -> list[str]:
        return [c for c in self.commands if re.match(r"GET DATA", c)]
