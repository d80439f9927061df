"""Files Hotline writes that hold secrets or records are its owner's only, whatever the umask.

Each command runs in a process of its own with the permissive umask 022 a
login shell has, as an operator would run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.support.paths import REPO

HOTLINE = str(REPO / ".venv/bin/hotline")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def hotline(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    run = subprocess.run(
        [HOTLINE, *argv],
        cwd=cwd,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        umask=0o022,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def site(folder: Path) -> Path:
    conf = folder / "hotline.toml"
    conf.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{folder / "var" / "hotline.db"}"\n'
        "[ami]\nenabled = false\n"
    )
    return conf


def test_the_database_hotline_creates_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    conf = site(tmp_path)
    hotline("-c", str(conf), "db", "upgrade", cwd=tmp_path)
    db = tmp_path / "var" / "hotline.db"
    assert mode(db) == 0o600
    assert mode(db.parent) == 0o700
    for companion in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if companion.exists():
            assert mode(companion) == 0o600, companion


def test_a_database_found_readable_by_others_is_made_0600(tmp_path: Path) -> None:
    conf = site(tmp_path)
    hotline("-c", str(conf), "db", "upgrade", cwd=tmp_path)
    db = tmp_path / "var" / "hotline.db"
    db.chmod(0o644)  # restored from a backup, copied with cp, ...
    hotline("-c", str(conf), "users", "add", "carol", "--role", "compliance", cwd=tmp_path)
    assert mode(db) == 0o600


def test_broker_passwords_are_0600_and_an_old_file_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mosquitto"
    out.mkdir()
    creds = out / "credentials.json"
    creds.write_text("{}")
    creds.chmod(0o644)  # an older run, or a copy made readable by mistake
    with creds.open() as reader:  # someone who opened it while they could
        hotline("mqtt", "users", "--out", str(out), "--agent", "1001", cwd=tmp_path)
        assert reader.read() == "{}", "the new passwords went into a file others hold open"
    assert mode(creds) == 0o600
    assert mode(out / "passwd") == 0o600
    assert set(json.loads(creds.read_text())) == {"hotline-server", "1001"}
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_hotline_serve_creates_its_files_for_its_owner_only(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "HOTLINE_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}",
        "HOTLINE_AMI__ENABLED": "false",
        "HOTLINE_HTTP__PORT": str(port),
        "HOTLINE_AUDIT__KEY_FILE": str(tmp_path / "keys" / "audit.key"),
        "HOTLINE_AUDIT__CHECKPOINT_FILE": str(tmp_path / "audit" / "checkpoints.jsonl"),
        "HOTLINE_SERVER__LOG_FORMAT": "text",
    }
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    server = await asyncio.create_subprocess_exec(
        HOTLINE,
        "-c",
        str(REPO / "hotline.toml"),
        "serve",
        "--role",
        "cti",  # the web application and the records only: no FastAGI, no AMI
        env={**environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        umask=0o022,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    assert server.returncode is None, "hotline serve exited"
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("hotline serve did not answer /health within 30 s")
            # A failed login is audited: the server appends to its checkpoint file.
            body = {"name": "mallory", "password": "guess-guess-1"}
            async with http.post(f"http://127.0.0.1:{port}/api/session", json=body) as r:
                assert r.status == 401
        checkpoints = tmp_path / "audit" / "checkpoints.jsonl"
        assert mode(checkpoints) == 0o600  # created by the server, under its umask
        assert mode(checkpoints.parent) == 0o700
        assert mode(tmp_path / "hotline.db") == 0o600
        assert mode(tmp_path / "keys" / "audit.key") == 0o600
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(server.communicate(), 30)
    assert server.returncode == 0, stderr.decode()[-2000:]
