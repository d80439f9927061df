"""Streaming speech capture: Asterisk's AudioSocket, recognised while the caller speaks.

The flow runs ``EXEC AudioSocket(UUID,host:port)``; Asterisk connects here,
sends a UUID frame, then the caller's audio as 20 ms frames of 8 kHz 16-bit
PCM (and DTMF frames); what we send back is played to the caller.  So the
menu prompt is played *through the socket* while we listen: the caller can
speak over it (barge-in), and recognition runs incrementally, so the result
is ready as soon as they stop.  Closing the socket ends the AudioSocket
application and the flow's AGI command returns.

Wire format: 1 byte kind, 2 bytes big-endian length, payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
import time
import uuid
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.speech import MenuGrammar, grammar_json

log = logging.getLogger("hotline.audiosocket")

KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_AUDIO, KIND_ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
FRAME_BYTES = 320  # 20 ms of 8 kHz 16-bit mono


def parse_frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames off the front of ``buffer``; returns (frames, rest)."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while len(buffer) - pos >= 3:
        kind, length = buffer[pos], struct.unpack_from(">H", buffer, pos + 1)[0]
        if len(buffer) - pos - 3 < length:
            break
        frames.append((kind, buffer[pos + 3 : pos + 3 + length]))
        pos += 3 + length
    return frames, buffer[pos:]


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit little-endian samples (audioop is gone in 3.13)."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    return math.sqrt(sum(x * x for x in samples) / len(samples)) if samples else 0.0


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


@dataclass
class StreamResult:
    text: str = ""
    confidence: float = 0.0
    digit: str | None = None
    barged_in: bool = False
    # monotonic times, for latency measurements
    speech_end: float | None = None
    result_at: float | None = None
    audio_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class _Heard:
    """What the caller has sent so far on one AudioSocket (filled by the reader task)."""

    prompt_s: float
    audio: bytearray = field(default_factory=bytearray)
    voice: bool = False
    last_voice: float = 0.0  # monotonic time the last voiced frame arrived
    barged_in: bool = False
    digit: str | None = None
    more: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Pending:
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    created: float = field(default_factory=time.monotonic)


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and hands each to the call expecting it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4574) -> None:
        self.host, self.port = host, port
        self._pending: dict[uuid.UUID, _Pending] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def expect(
        self,
    ) -> tuple[uuid.UUID, asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
        key = uuid.uuid4()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(fut)
        return key, fut

    def forget(self, key: uuid.UUID) -> None:
        self._pending.pop(key, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readexactly(3), 5)
            kind, length = head[0], struct.unpack(">H", head[1:])[0]
            if kind != KIND_UUID or length != 16:
                raise ValueError("first frame is not a UUID")
            key = uuid.UUID(bytes=await asyncio.wait_for(reader.readexactly(16), 5))
        except (TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            log.warning("AudioSocket client rejected: %s", e)
            writer.close()
            return
        pending = self._pending.pop(key, None)
        if pending is None or pending.connected.done():
            log.warning("AudioSocket for an unknown stream", extra={"uuid": str(key)})
            writer.close()
            return
        pending.connected.set_result((reader, writer))


class StreamingListener:
    """One utterance over one AudioSocket connection: prompt out, caller in, Vosk on the fly."""

    CHUNK_S = 0.1  # audio handed to the recogniser at a time
    SPEECH_RMS = 500  # 16-bit RMS above which a 20 ms frame counts as voice
    # When has the caller finished?  As VoiceXML's completetimeout and
    # incompletetimeout: a short pause once the words so far name a menu option
    # whole ("요금 문의", "안녕하세요 상담원 연결 부탁드립니다", or both words of
    # "요금 문의" in the order the word-loop grammar gave them), a longer one
    # otherwise, so a caller pausing at a comma ("안녕하세요, ...": 160-280 ms in
    # the benchmark's speech) is not cut off before saying what they want.
    HANGOVER_S = 0.4  # this much quiet after speech ends the utterance...
    EARLY_S = 0.15  # ...or this much, when what was heard so far names an option whole
    RECHECK_S = 0.04  # during the pause, look again at the words every this much audio

    def __init__(
        self,
        model: Any,
        grammar: MenuGrammar | None,
        keys: str,
        run: Callable[..., Any],
        *,
        complete_timeout_s: float = EARLY_S,
        incomplete_timeout_s: float = HANGOVER_S,
    ) -> None:
        # [speech] complete_timeout_s / incomplete_timeout_s
        self.early_s = complete_timeout_s
        self.hangover_s = incomplete_timeout_s
        self._model = model
        self._grammar = grammar
        self._keys = keys
        self._run = run  # executor runner: run(fn, *args) -> awaitable

    def _recognizer(self) -> Any:
        import vosk

        if self._grammar is None:
            rec = vosk.KaldiRecognizer(self._model, 8000)
        else:
            grammar = grammar_json(self._model, self._grammar.phrases())
            rec = vosk.KaldiRecognizer(self._model, 8000, grammar)
        rec.SetWords(True)
        return rec

    async def listen(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        prompt_pcm: bytes,
        timeout_s: float,
    ) -> StreamResult:
        result = StreamResult()
        rec = await self._run(self._recognizer)
        stop_prompt = asyncio.Event()
        player = asyncio.create_task(self._play(writer, prompt_pcm, stop_prompt))
        # The socket is read by its own task, never held up by the decoder: under
        # load a decode can wait in the pool for longer than the quiet that ends
        # an utterance, and the end of speech must be judged on everything the
        # caller has sent, not on what the decoder has caught up with.
        heard = _Heard(prompt_s=len(prompt_pcm) / 16000)
        reading = asyncio.create_task(self._read(reader, heard, stop_prompt))
        segments: list[dict[str, Any]] = []  # words of utterances Vosk itself ended
        fed = 0  # bytes of heard.audio given to the recogniser
        early_voice, early_fed = -1.0, -1  # what the early rule last looked at
        deadline = time.monotonic() + timeout_s + len(prompt_pcm) / 16000
        try:
            while time.monotonic() < deadline and not reading.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(heard.more.wait(), 0.05)
                heard.more.clear()
                if heard.digit is not None and heard.digit in self._keys:
                    result.digit = heard.digit
                    return result
                if len(heard.audio) - fed >= int(self.CHUNK_S * 16000):
                    fed = await self._catch_up(rec, heard, fed, segments, result)
                if not heard.voice:
                    continue
                quiet = time.monotonic() - heard.last_voice
                if (
                    self._grammar is not None
                    and quiet >= self.early_s
                    and (
                        early_voice != heard.last_voice
                        or len(heard.audio) - early_fed >= int(self.RECHECK_S * 16000)
                    )
                ):
                    # A short pause after a whole option is the end: do not make the
                    # caller wait out the full hangover for "요금 문의".  Looked at
                    # again as more of the pause is decoded: the decoder's best
                    # guess for the last word often settles only 200-300 ms after
                    # it was said.
                    early_voice = heard.last_voice
                    fed = early_fed = await self._catch_up(rec, heard, fed, segments, result)
                    partial = json.loads(await self._run(rec.PartialResult)).get("partial", "")
                    so_far = " ".join([*(w["word"] for w in segments), partial]).split()
                    if early_voice == heard.last_voice and self._grammar.interpret(so_far).complete:
                        result.speech_end = time.monotonic()
                        break
                if heard.voice and time.monotonic() - heard.last_voice >= self.hangover_s:
                    # End of speech: finish decoding what is left; that is all the delay.
                    result.speech_end = time.monotonic()
                    break
            if heard.digit is not None and heard.digit in self._keys:
                result.digit = heard.digit
                return result
            fed = await self._catch_up(rec, heard, fed, segments, result)
            final = json.loads(await self._run(rec.FinalResult))
            words = [w for w in [*segments, *final.get("result", [])] if w.get("word") != "[unk]"]
            result.text = " ".join(w["word"] for w in words)
            result.confidence = (
                round(sum(float(w.get("conf", 0)) for w in words) / len(words), 3) if words else 0.0
            )
            result.barged_in = heard.barged_in
            result.result_at = time.monotonic()
            return result
        finally:
            stop_prompt.set()
            player.cancel()
            reading.cancel()
            with contextlib.suppress(Exception):
                writer.write(frame(KIND_HANGUP))
                await writer.drain()
            writer.close()

    async def _catch_up(
        self,
        rec: Any,
        heard: _Heard,
        fed: int,
        segments: list[dict[str, Any]],
        result: StreamResult,
    ) -> int:
        """Decode everything heard so far; returns the new count of bytes fed."""
        upto = len(heard.audio)
        if upto > fed:
            t = time.monotonic()
            await self._feed(rec, bytes(heard.audio[fed:upto]), segments)
            result.decode_s += time.monotonic() - t
            result.audio_s = upto / 16000
        return upto

    async def _read(
        self, reader: asyncio.StreamReader, heard: _Heard, stop_prompt: asyncio.Event
    ) -> None:
        """Everything the caller sends, as it arrives: audio, voice activity, keys."""
        buffer = b""
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    return
                frames, buffer = parse_frames(buffer + data)
                for kind, payload in frames:
                    if kind == KIND_DTMF:
                        digit = payload[:1].decode(errors="ignore")
                        if digit in self._keys:
                            heard.digit = digit
                            heard.more.set()
                            return
                        continue
                    if kind in (KIND_HANGUP, KIND_ERROR):
                        return
                    if kind != KIND_AUDIO:
                        continue
                    heard.audio += payload
                    if rms(payload) > self.SPEECH_RMS:
                        if not heard.voice:
                            heard.voice = True
                            stop_prompt.set()  # barge-in: the caller speaks over the prompt
                            heard.barged_in = len(heard.audio) / 16000 < heard.prompt_s
                        heard.last_voice = time.monotonic()
                heard.more.set()
        finally:
            heard.more.set()

    async def _feed(self, rec: Any, pcm: bytes, segments: list[dict[str, Any]]) -> None:
        """Decode more audio; when Vosk ends an utterance itself, keep its words."""
        if await self._run(rec.AcceptWaveform, pcm):
            segments.extend(json.loads(await self._run(rec.Result)).get("result", []))

    async def _play(self, writer: asyncio.StreamWriter, pcm: bytes, stop: asyncio.Event) -> None:
        """Send the prompt at real-time pace, 20 ms a frame, until done or barged in; then
        silence, because app_audiosocket hangs up after 2 s without audio from us."""
        start = time.monotonic()
        silence = frame(KIND_AUDIO, b"\0" * FRAME_BYTES)
        n = 0
        while True:
            chunk = pcm[n * FRAME_BYTES : (n + 1) * FRAME_BYTES]
            if stop.is_set() and chunk:
                chunk = b""  # barged in: the rest of the prompt becomes silence
            writer.write(frame(KIND_AUDIO, chunk.ljust(FRAME_BYTES, b"\0")) if chunk else silence)
            await writer.drain()
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))


def read_pcm(path: Path) -> bytes:
    """8 kHz 16-bit mono frames of a prompt WAV (what PromptCache renders)."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (8000, 2, 1):
            raise ValueError(f"{path}: prompt is not 8 kHz 16-bit mono")
        return w.readframes(w.getnframes())
