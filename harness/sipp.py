"""Scripted callers and agents with sipp, for the demo and the tests.

A caller is a list of steps (``pause 2000``, ``dtmf 1``, ``audio FILE``) sent
over real SIP/RTP to Asterisk; agents are sipp UAS on 507N answering what the
queue rings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

PCAP_DIR = Path("/usr/share/sip-tester")
DTMF_PCAP = {d: PCAP_DIR / f"dtmf_2833_{d}.pcap" for d in "0123456789"} | {
    "*": PCAP_DIR / "dtmf_2833_star.pcap",
    "#": PCAP_DIR / "dtmf_2833_pound.pcap",
}


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Keys:
    """Several digits as SIP INFO (application/dtmf-relay), ``gap_ms`` apart.

    Replaying the same RFC 2833 pcap for consecutive digits repeats its RTP
    timestamps, and Asterisk drops the repeats as duplicates (seen here), so
    digit strings such as card numbers go as INFO.
    """

    digits: str
    gap_ms: int = 250
    # Note for single keys too: RFC 2833 (Dtmf) is what phones send, but sipp
    # replays each pcap with the same RTP sequence numbers and timestamps, so
    # a second key of a call is often dropped by Asterisk; Keys always arrives.


@dataclass(frozen=True)
class Audio:
    wav: Path  # 8 kHz mu-law WAV
    ms: int


Step = Pause | Dtmf | Keys | Audio


def _media_port() -> int:
    """An even RTP port for one sipp caller (several may run at once)."""
    return 20000 + 2 * random.randrange(4000)


_INVITE = """\
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:{number}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [auto_media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: sip:{number}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

_BYE = """\
  <send retrans="500">
    <![CDATA[
      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      Contact: sip:{number}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

_INFO = """\
  <send>
    <![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{name}" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: sip:{number}@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
"""

# When Asterisk hangs up first (the flow ended the call), answer its BYE.
_EXPECT_BYE = """\
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
"""


# An agent's phone rings: INVITE, 180 Ringing, a pause.
_RINGING = """\
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="{delay}"/>
"""

_AGENT_PHONE = (
    """\
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent phone: rings, answers after a delay, talks, waits for BYE">
"""
    + _RINGING
    + """\
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
{talk}
"""
    + _EXPECT_BYE
    + "</scenario>\n"
)


_AGENT_BUSY = (
    """\
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent phone: rings, then declines (486 Busy Here)">
"""
    + _RINGING
    + """\
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
"""
)


def caller_scenario(
    steps: list[Step],
    number: str = "5551234",
    name: str = "Test Caller",
    hangup: str = "caller",
) -> str:
    """A UAC scenario: call, then the steps, then hang up (or wait for Asterisk's BYE)."""
    body = [_INVITE.format(name=name, number=number)]
    cseq = 2
    for s in steps:
        match s:
            case Pause(ms):
                body.append(f'  <pause milliseconds="{int(ms)}"/>')
            case Dtmf(digit):
                pcap = DTMF_PCAP[digit]
                body.append(f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
                # each pcap lasts about 250 ms; keep digits apart
                body.append('  <pause milliseconds="400"/>')
            case Keys(digits, gap):
                for d in digits:
                    body.append(_INFO.format(name=name, number=number, cseq=cseq, digit=d))
                    body.append(f'  <pause milliseconds="{int(gap)}"/>')
                    cseq += 1
            case Audio(wav, ms):
                body.append(f'  <nop><action><exec rtp_stream="{wav},1,0"/></action></nop>')
                body.append(f'  <pause milliseconds="{int(ms)}"/>')
    body.append(
        (_BYE if hangup == "caller" else _EXPECT_BYE).format(name=name, number=number, cseq=cseq)
    )
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
        '<scenario name="hotline caller">\n' + "\n".join(body) + "\n</scenario>\n"
    )


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run_caller(
    steps: list[Step],
    *,
    service: str = "100",
    number: str = "5551234",
    name: str = "Test Caller",
    hangup: str = "caller",
    timeout: float = 120.0,
    local_port: int = 0,
    asterisk: str = "127.0.0.1:5060",
    calls: int = 1,
    rate: int = 10,
) -> SippResult:
    """Place ``calls`` calls (``rate`` per second, all at once at most) and wait for them.

    ``number`` may hold sipp's ``[call_number]`` to give each call its own caller ID.
    """
    xml = caller_scenario(steps, number=number, name=name, hangup=hangup)
    with tempfile.TemporaryDirectory(prefix="hotline-sipp-") as tmp:
        scen = Path(tmp) / "caller.xml"
        scen.write_text(xml)
        argv = [
            "sipp",
            asterisk,
            "-sf",
            str(scen),
            "-s",
            service,
            "-m",
            str(calls),
            "-l",
            str(calls),
            "-r",
            str(rate),
            "-i",
            "127.0.0.1",
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-mi",
            "127.0.0.1",
            "-mp",
            str(_media_port()),
        ]
        if local_port:
            argv += ["-p", str(local_port)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=tmp,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        out, err = await proc.communicate()
        errors = await asyncio.to_thread(_read_error_logs, Path(tmp))
        return SippResult(
            proc.returncode or 0,
            out.decode(errors="replace")[-2000:],
            err.decode(errors="replace")[-2000:] + errors[-2000:],
        )


def _read_error_logs(folder: Path) -> str:
    return "".join(f.read_text(errors="replace") for f in folder.glob("*_errors.log"))


def _udp_bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port/udp (from /proc/net/udp)."""
    needle = f":{port:04X} "
    with contextlib.suppress(OSError), open("/proc/net/udp") as f:
        return any(needle in line.split("00000000:0000")[0] for line in f)
    return False


class Agent:
    """A sipp UAS playing agent 100N's phone on 127.0.0.1:507N (answers, waits for BYE).

    With ``port`` it plays any phone there: the demo trunk's callers are on 5080.
    """

    def __init__(
        self,
        number: str,
        calls: int = 1,
        answer_delay_ms: int = 0,
        talk_wav: Path | None = None,
        decline_after_ms: int | None = None,
        port: int | None = None,
    ) -> None:
        self.decline_after_ms = decline_after_ms
        self.number = number
        self.talk_wav = talk_wav
        self.port = port or 5070 + int(number[-1])
        self.calls = calls
        self.answer_delay_ms = answer_delay_ms
        self.proc: asyncio.subprocess.Process | None = None
        self._dir = tempfile.TemporaryDirectory(prefix=f"hotline-agent{number}-")

    async def start(self) -> None:
        if self.decline_after_ms is not None:
            scen = Path(self._dir.name) / "agent.xml"
            scen.write_text(_AGENT_BUSY.format(delay=int(self.decline_after_ms)))
            scenario = ["-sf", str(scen)]
        elif self.answer_delay_ms or self.talk_wav:
            talk = ""
            if self.talk_wav is not None:
                talk = f'  <nop><action><exec rtp_stream="{self.talk_wav},-1,0"/></action></nop>'
            scen = Path(self._dir.name) / "agent.xml"
            scen.write_text(_AGENT_PHONE.format(delay=int(self.answer_delay_ms), talk=talk))
            scenario = ["-sf", str(scen)]
        else:
            scenario = ["-sn", "uas"]
        argv = [
            "sipp",
            *scenario,
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.calls),
            "-nostdin",
            "-trace_err",
            "-mi",
            "127.0.0.1",
            "-mp",
            str(31000 + 10 * (self.port - 5070)),
        ]
        for _attempt in range(3):
            err = (Path(self._dir.name) / "stderr.txt").open("wb")
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self._dir.name,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, "TERM": "dumb"},
            )
            err.close()
            # Ready once its SIP port is bound; a phone that died at start (port
            # still held by the previous test's phone, say) is started again.
            for _ in range(40):
                if self.proc.returncode is not None or await asyncio.to_thread(
                    _udp_bound, self.port
                ):
                    break
                await asyncio.sleep(0.05)
            if self.proc.returncode is None:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"agent {self.number}'s sipp would not start: {self.errors()}")

    def errors(self) -> str:
        """What sipp said on stderr and in its error log (for test failures)."""
        folder = Path(self._dir.name)
        text = ""
        for f in [folder / "stderr.txt", *folder.glob("*_errors.log")]:
            with contextlib.suppress(OSError):
                text += f.read_text(errors="replace")[-1500:]
        return text

    async def wait(self, timeout: float) -> int | None:
        """The UAS's exit code once it handled its calls, or None on timeout."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                await self.proc.wait()
        self._dir.cleanup()
