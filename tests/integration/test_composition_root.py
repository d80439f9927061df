"""`hotline serve` as one composition root: every part built once, served, and stopped."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

from hotline.app import running
from hotline.config import Config, load_config
from tests.support.fake_asterisk import FakeCall
from tests.support.paths import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def config(tmp_path: Path, **overrides: str) -> Config:
    return load_config(
        REPO / "hotline.toml",
        environ={
            "HOTLINE_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}",
            "HOTLINE_AGI__PORT": str(free_port()),
            "HOTLINE_HTTP__PORT": str(free_port()),
            "HOTLINE_SPEECH__ENABLED": "false",
            "HOTLINE_PATHS__ASR_HOST": str(tmp_path / "asr"),
            "HOTLINE_AUDIT__KEY_FILE": str(tmp_path / "audit.key"),
            "HOTLINE_AUDIT__CHECKPOINT_FILE": str(tmp_path / "audit-checkpoints.jsonl"),
            **overrides,
        },
    )


async def refused(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_without_ami_the_ivr_serves_calls_health_answers_and_no_callback_is_offered(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path, HOTLINE_AMI__ENABLED="false", HOTLINE_DEFLECTION__ENABLED="true")
    async with running(cfg, "all") as server:
        assert server.cti is None and server.recordings is None
        assert server.ivr is not None and server.deflection is not None
        # Nothing in this process would dial a callback: the IVR must not offer one.
        assert server.ivr.services.callbacks is None

        call = await asyncio.wait_for(FakeCall(keys=["0"]).run(cfg.agi.port), 20)
        assert call.variables["HOTLINE_QUEUE"] == "support"
        record = await server.interactions.get(call.linkedid)
        assert record is not None and record.outcome == "queued"

        # /health lives in the web application, not in a feature: it answers
        # with recordings and the CTI both off.
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{cfg.http.port}/health") as r,
        ):
            body = await r.json()
        assert r.status == 200 and body["ok"] is True
        assert body["fastagi"]["served"] >= 1
    # Stopped in reverse: nothing listens any more.
    assert await refused(cfg.agi.port)
    assert await refused(cfg.http.port)


async def test_the_ivr_role_alone_offers_callbacks_for_a_cti_beside_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, HOTLINE_DEFLECTION__ENABLED="true", HOTLINE_HTTP__ENABLED="false")
    async with running(cfg, "ivr") as server:
        assert server.cti is None
        assert server.ivr is not None and server.deflection is not None
        assert server.ivr.services.callbacks is server.deflection.callbacks
    assert await refused(cfg.agi.port)
