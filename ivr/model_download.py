"""Download and install the official Vosk small model for a language.

Backs ``hotline models install LANG``: a site admin gets a working speech
model without hunting for URLs.  The official list
(https://alphacephei.com/vosk/models/model-list.json, the same one the
``vosk`` package reads) names every model with its language, type
("small", "big", "big-lgraph", ...), version, zip URL, size, MD5 and an
``obsolete`` flag (the strings "true"/"false").  We take the newest
non-obsolete *small* model for the language: small models load in seconds,
need little memory and support the per-menu grammars that ``ivr.speech``
uses.

The zip is streamed to a temporary file inside the destination folder (never
held in memory), checked against the MD5 the list publishes (we also record
its SHA-256), unpacked in a worker thread with zip-slip protection into a
temporary folder beside the target, checked to look like a Vosk model, and
only then renamed into place: a failed or interrupted install leaves nothing
behind that could be mistaken for a model.  Without internet access the
error says how to install a model by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, TextIO
from urllib.parse import urljoin, urlsplit

import aiohttp

MODEL_LIST_URL = "https://alphacephei.com/vosk/models/model-list.json"
MODELS_PAGE_URL = "https://alphacephei.com/vosk/models"

# Common names people type that the official list spells differently.
LANGUAGE_ALIASES = {"en": "en-us"}

# Written into the installed model folder: what was downloaded, and its hashes.
RECORD_FILE = "hotline-model.json"

CHUNK_BYTES = 64 * 1024
# Small models unpack to a few hundred MB; refuse a zip bomb well before the disk fills.
MAX_UNPACKED_BYTES = 8 * 1024**3

_TEMP_PREFIX = ".hotline-"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_USER_AGENT = "hotline-model-install/1"


class ModelDownloadError(Exception):
    """Why a model could not be installed, worded for the person running the command."""


@dataclass(frozen=True)
class ModelEntry:
    lang: str
    name: str
    url: str
    size: int
    md5: str
    version: str
    type: str
    obsolete: bool = False
    lang_text: str = ""


@dataclass(frozen=True)
class InstalledModel:
    path: Path
    entry: ModelEntry
    # SHA-256 of the zip; for a model already present, the one recorded when
    # hotline installed it ("" if it was put there some other way).
    sha256: str
    already_present: bool


# -- the official list -------------------------------------------------------


async def fetch_model_list(
    list_url: str = MODEL_LIST_URL, *, timeout_s: float = 20
) -> list[ModelEntry]:
    """Every usable entry of the official model list (malformed entries are skipped)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": _USER_AGENT}) as session,
            session.get(list_url) as resp,
        ):
            if resp.status != 200:
                raise ModelDownloadError(f"cannot get {list_url}: {_status(resp)}")
            raw = await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ModelDownloadError(f"cannot reach {list_url} (offline?): {_describe(exc)}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ModelDownloadError(f"{list_url} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ModelDownloadError(f"{list_url} is not a JSON array of models")
    entries = [e for e in (_parse_entry(item, list_url) for item in data) if e is not None]
    if not entries:
        raise ModelDownloadError(f"{list_url} lists no model in a format we understand")
    return entries


def _parse_entry(item: object, list_url: str) -> ModelEntry | None:
    if not isinstance(item, dict):
        return None
    try:
        lang = str(item["lang"]).strip().lower()
        name = str(item["name"]).strip()
        url = urljoin(list_url, str(item["url"]).strip())
        size = int(item.get("size") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    # The name becomes a folder name: nothing that could point elsewhere.
    if not lang or not _SAFE_NAME.match(name) or urlsplit(url).scheme not in ("http", "https"):
        return None
    obsolete = item.get("obsolete", "false")
    return ModelEntry(
        lang=lang,
        name=name,
        url=url,
        size=max(size, 0),
        md5=str(item.get("md5") or "").strip().lower(),
        version=str(item.get("version") or ""),
        type=str(item.get("type") or "").strip().lower(),
        obsolete=obsolete is True or str(obsolete).strip().lower() == "true",
        lang_text=str(item.get("lang_text") or ""),
    )


def _version_key(version: str) -> tuple[int, ...]:
    """Order: "0.22" > "0.4" > "0.3"; suffixes such as "-linto" or "-rhasspy" are ignored."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def choose_model(entries: Iterable[ModelEntry], lang: str) -> ModelEntry:
    """The newest non-obsolete small model for ``lang`` ("en" means "en-us")."""
    entries = list(entries)
    wanted = lang.strip().lower().replace("_", "-")
    code = LANGUAGE_ALIASES.get(wanted, wanted)
    small = [e for e in entries if e.type == "small" and not e.obsolete]
    candidates = [e for e in small if e.lang == code]
    if not candidates and "-" in code:  # "ko-kr" -> "ko"
        candidates = [e for e in small if e.lang == code.split("-", 1)[0]]
    if not candidates:
        known = sorted({e.lang for e in small})
        raise ModelDownloadError(
            f"no small model for language {lang!r} in the official list "
            f"(languages: {', '.join(known) or 'none'})"
        )
    # Newest version; on a tie, the later entry in the list.
    _, best = max(enumerate(candidates), key=lambda p: (_version_key(p[1].version), p[0]))
    return best


# -- install -------------------------------------------------------------------


async def install_model(
    lang: str,
    dest_dir: Path,
    *,
    list_url: str = MODEL_LIST_URL,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 20,
) -> InstalledModel:
    """Install the small Vosk model for ``lang`` as ``dest_dir/<model name>``.

    Does nothing (``already_present=True``) when that folder exists, unless
    ``force``.  ``progress(done_bytes, total_bytes)`` is called per chunk
    downloaded (``total_bytes`` is 0 when the size is unknown).
    """
    dest_dir = Path(dest_dir)
    try:
        entries = await fetch_model_list(list_url, timeout_s=timeout_s)
    except ModelDownloadError as exc:
        raise ModelDownloadError(
            f"{exc}. Install a model by hand: download the small model for {lang!r} from "
            f"{MODELS_PAGE_URL}, unzip it into {dest_dir} and set "
            f'[speech.models] {lang} = "{dest_dir}/<model folder>" in hotline.toml'
        ) from exc
    entry = choose_model(entries, lang)
    if not _MD5_HEX.match(entry.md5):
        raise ModelDownloadError(
            f"the official list gives no usable md5 for {entry.name} ({entry.md5!r}): "
            "refusing to install a download that cannot be checked"
        )
    target = dest_dir / entry.name
    await asyncio.to_thread(dest_dir.mkdir, parents=True, exist_ok=True)

    if not force:
        present = await asyncio.to_thread(_already_installed, target, entry, lang)
        if present is not None:
            return present

    zip_path: Path | None = None
    try:
        zip_path, md5, sha256 = await _download(entry, dest_dir, progress, timeout_s)
        if md5 != entry.md5:
            raise ModelDownloadError(
                f"checksum mismatch for {entry.name}: expected md5 {entry.md5}, got {md5} "
                "(download discarded)"
            )
        record = {
            **asdict(entry),
            "sha256": sha256,
            "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        await asyncio.to_thread(_unpack_and_install, zip_path, target, record, force)
    finally:
        if zip_path is not None:
            await asyncio.to_thread(zip_path.unlink, missing_ok=True)
    return InstalledModel(path=target, entry=entry, sha256=sha256, already_present=False)


def _already_installed(target: Path, entry: ModelEntry, lang: str) -> InstalledModel | None:
    if not target.exists() and not target.is_symlink():
        return None
    problem = model_problem(target)
    if problem is not None:
        raise ModelDownloadError(
            f"{target} already exists but is not a usable Vosk model ({problem}); "
            f"remove it or install {lang!r} again with force"
        )
    sha256 = ""
    try:
        recorded = json.loads((target / RECORD_FILE).read_text(encoding="utf-8"))
        if isinstance(recorded, dict):
            sha256 = str(recorded.get("sha256") or "")
    except (OSError, ValueError):
        pass
    return InstalledModel(path=target, entry=entry, sha256=sha256, already_present=True)


async def _download(
    entry: ModelEntry,
    dest_dir: Path,
    progress: Callable[[int, int], None] | None,
    timeout_s: float,
) -> tuple[Path, str, str]:
    """Stream the zip into a temp file in ``dest_dir``: (path, md5, sha256).

    The temp file is removed if anything goes wrong.
    """
    # No total timeout: 80 MB on a slow line takes a while.  Stalls still fail.
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    fh, path = await asyncio.to_thread(_temp_file, dest_dir, entry.name)
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    ok = False
    try:
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=headers) as session,
                session.get(entry.url) as resp,
            ):
                if resp.status != 200:
                    raise ModelDownloadError(
                        f"download of {entry.url} failed: {_status(resp)} (nothing installed)"
                    )
                total = resp.content_length or entry.size
                done = 0
                # Chunks are small: hashing and writing one costs well under a millisecond.
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    fh.write(chunk)
                    md5.update(chunk)
                    sha256.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, max(total, done) if total > 0 else 0)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ModelDownloadError(
                f"download of {entry.url} failed: {_describe(exc)} (nothing installed)"
            ) from exc
        await asyncio.to_thread(fh.close)
        ok = True
    finally:
        if not ok:
            fh.close()
            path.unlink(missing_ok=True)
    return path, md5.hexdigest(), sha256.hexdigest()


def _temp_file(dest_dir: Path, name: str) -> tuple[IO[bytes], Path]:
    fd, raw = tempfile.mkstemp(dir=dest_dir, prefix=f"{_TEMP_PREFIX}{name}-", suffix=".zip.part")
    return os.fdopen(fd, "wb"), Path(raw)


def _unpack_and_install(zip_path: Path, target: Path, record: dict[str, Any], force: bool) -> None:
    """Unpack beside ``target``, check, then rename into place (runs in a thread)."""
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{_TEMP_PREFIX}{target.name}-"))
    old: Path | None = None
    try:
        _safe_extract(zip_path, work, target.name)
        # Official zips hold one top folder named like the model; accept a flat zip too.
        children = list(work.iterdir())
        root = children[0] if len(children) == 1 and children[0].is_dir() else work
        problem = model_problem(root)
        if problem is not None:
            raise ModelDownloadError(
                f"the download of {target.name} does not look like a Vosk model ({problem}); "
                "nothing installed"
            )
        (root / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        root.chmod(0o755)  # mkdtemp makes 0700; the speech worker may run as another user
        if target.exists() or target.is_symlink():
            if not force:
                raise ModelDownloadError(f"{target} appeared during the install; left as it is")
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{_TEMP_PREFIX}old-"))
            os.rename(target, old / target.name)
        try:
            os.rename(root, target)
        except OSError as exc:
            if old is not None:  # put the previous model back
                os.rename(old / target.name, target)
                shutil.rmtree(old, ignore_errors=True)
                old = None
            raise ModelDownloadError(f"cannot move the model into {target}: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _unsafe_member(name: str) -> bool:
    """True for zip entries that could land outside the folder they are unpacked into."""
    if not name or "\x00" in name:
        return True
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return True
    return ".." in PurePosixPath(unified).parts


def _safe_extract(zip_path: Path, dest: Path, model_name: str) -> None:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            for info in infos:
                if _unsafe_member(info.filename):
                    raise ModelDownloadError(
                        f"refusing to unpack {model_name}: zip entry {info.filename!r} points "
                        "outside the model folder (zip-slip); nothing installed"
                    )
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise ModelDownloadError(
                    f"refusing to unpack {model_name}: it would unpack to more than "
                    f"{MAX_UNPACKED_BYTES // 1024**3} GB; nothing installed"
                )
            base = dest.resolve()
            for info in infos:
                out = (base / info.filename).resolve()
                if out != base and base not in out.parents:  # belt and braces
                    raise ModelDownloadError(
                        f"refusing to unpack {model_name}: zip entry {info.filename!r} points "
                        "outside the model folder (zip-slip); nothing installed"
                    )
                zf.extract(info, base)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelDownloadError(
            f"the download of {model_name} is not a readable zip ({exc}); nothing installed"
        ) from exc
    except OSError as exc:
        raise ModelDownloadError(f"cannot unpack {model_name}: {exc}") from exc


def model_problem(path: Path) -> str | None:
    """Why ``path`` does not look like a Vosk model, or None when it does."""
    if not path.is_dir():
        return "not a folder"
    has_model = (path / "am" / "final.mdl").is_file() or any(
        p.is_file() for p in path.rglob("final.mdl")
    )
    if not has_model:
        return "no am/final.mdl"
    if not (path / "conf").is_dir():
        return "no conf/ folder"
    return None


def _status(resp: aiohttp.ClientResponse) -> str:
    return f"HTTP {resp.status} {resp.reason or ''}".rstrip()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- terminal progress ---------------------------------------------------------


class ProgressBar:
    """``[#####     ]  42% 18.3/43.5 MB`` on a terminal; a line per 10% otherwise.

    Use as the ``progress`` callback of :func:`install_model`, then call
    :meth:`finish` (or use it as a context manager).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        width: int = 30,
        min_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval_s = min_interval_s
        self._clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self._last_draw: float | None = None
        self._last_decile = 0
        self._done = 0
        self._total = 0
        self._finished = False

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def update(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        if self.tty:
            now = self._clock()
            complete = total > 0 and done >= total
            if complete or self._last_draw is None or now - self._last_draw >= self.min_interval_s:
                self._last_draw = now
                self.stream.write("\r" + self.render(done, total))
                self.stream.flush()
        elif total > 0:
            decile = min(10, done * 10 // total)
            if decile > self._last_decile:
                self._last_decile = decile
                self.stream.write(self.render(done, total, bar=False).strip() + "\n")
                self.stream.flush()

    def finish(self) -> None:
        """End the bar with a newline (once)."""
        if self._finished:
            return
        self._finished = True
        if self.tty:
            if self._last_draw is not None:
                self.stream.write("\r" + self.render(self._done, self._total) + "\n")
                self.stream.flush()
        elif self._total <= 0 and self._done > 0:
            self.stream.write(self.render(self._done, self._total, bar=False).strip() + "\n")
            self.stream.flush()

    def render(self, done: int, total: int, *, bar: bool = True) -> str:
        if total <= 0:
            return f"{done / 1e6:.1f} MB"
        frac = min(max(done / total, 0.0), 1.0)
        text = f"{int(frac * 100):3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        if not bar:
            return text
        filled = int(frac * self.width)
        return f"[{'#' * filled}{' ' * (self.width - filled)}] {text}"
