"""Prompt audio: text rendered once by TTS, cached, and found by Asterisk.

A prompt's file name is a hash of (text, language, voice, rate), so the same
words are synthesised once however many calls or flows use them.  Files are
8 kHz 16-bit mono WAV, which Asterisk plays without transcoding.  Rendering
runs in a child process (pyttsx3 + sox), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("hotline.prompts")
TTS_ATTEMPTS = 4


class PromptRenderError(Exception):
    """TTS or resampling failed for a prompt."""


class PromptCache:
    def __init__(
        self,
        host_dir: Path,
        asterisk_dir: str,
        voices: dict[str, str],
        rate: int = 160,
        timeout: float = 30.0,
        concurrency: int = 2,
    ) -> None:
        self.host_dir = host_dir
        self.asterisk_dir = asterisk_dir.rstrip("/")
        self.voices = voices
        self.rate = rate
        self.timeout = timeout
        self._known: set[str] = set()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self.rendered = 0

    def voice(self, language: str) -> str:
        return self.voices.get(language, language)

    def key(self, text: str, language: str) -> str:
        material = f"{text}\0{language}\0{self.voice(language)}\0{self.rate}"
        return hashlib.sha256(material.encode()).hexdigest()[:24]

    def _relative(self, key: str, language: str) -> str:
        return f"tts/{language}/{key}"

    def host_path(self, text: str, language: str) -> Path:
        return self.host_dir / (self._relative(self.key(text, language), language) + ".wav")

    def asterisk_path(self, text: str, language: str) -> str:
        """The name to give STREAM FILE (Asterisk adds the extension)."""
        return f"{self.asterisk_dir}/{self._relative(self.key(text, language), language)}"

    def file_path(self, relative: str) -> str:
        """A recorded prompt under prompts/, as Asterisk sees it (no extension)."""
        return f"{self.asterisk_dir}/{relative}"

    async def ensure(self, text: str, language: str) -> str:
        """Render the prompt if needed; return the path to give Asterisk."""
        key = self.key(text, language)
        if key not in self._known:
            fut = self._inflight.get(key)
            if fut is None:
                fut = asyncio.get_running_loop().create_future()
                self._inflight[key] = fut
                try:
                    await self._render(text, language)
                    self._known.add(key)
                    fut.set_result(None)
                except BaseException as e:
                    fut.set_exception(e)
                    raise
                finally:
                    del self._inflight[key]
                    if fut.done() and not fut.cancelled():
                        fut.exception()  # mark retrieved: waiters re-raise it
            else:
                await asyncio.shield(fut)
        return self.asterisk_path(text, language)

    async def _render(self, text: str, language: str) -> None:
        out = self.host_path(text, language)
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, out.exists):
            return
        await loop.run_in_executor(None, lambda: out.parent.mkdir(parents=True, exist_ok=True))
        raw = out.with_suffix(f".{os.getpid()}.raw.wav")
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wav")
        async with self._slots:
            try:
                await self._synthesise(text, language, raw)
                await self._run(
                    [
                        "sox",
                        str(raw),
                        "-r",
                        "8000",
                        "-c",
                        "1",
                        "-b",
                        "16",
                        "-e",
                        "signed-integer",
                        str(tmp),
                    ]
                )
                await loop.run_in_executor(None, os.replace, tmp, out)
            finally:
                for f in (raw, tmp):
                    with contextlib.suppress(FileNotFoundError):
                        await loop.run_in_executor(None, f.unlink)
        self.rendered += 1
        log.info("prompt rendered", extra={"language": language, "file": out.name})

    async def _synthesise(self, text: str, language: str, raw: Path) -> None:
        argv = [
            sys.executable,
            "-m",
            "ivr.tts_worker",
            str(raw),
            self.voice(language),
            str(self.rate),
        ]
        for attempt in range(1, TTS_ATTEMPTS + 1):
            try:
                await self._run(argv, stdin=text.encode("utf-8"))
                return
            except PromptRenderError:
                # pyttsx3 now and then writes nothing; a fresh process succeeds.
                if attempt == TTS_ATTEMPTS:
                    raise
                log.warning("TTS produced no audio, retrying", extra={"attempt": attempt})

    async def _run(self, argv: list[str], stdin: bytes | None = None) -> None:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise PromptRenderError(f"{argv[2] if len(argv) > 2 else argv[0]} timed out") from None
        if proc.returncode != 0:
            detail = err.decode(errors="replace")[-300:]
            raise PromptRenderError(f"{' '.join(argv[:3])} failed ({proc.returncode}): {detail}")
