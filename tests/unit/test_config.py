"""Configuration: errors name the key; env overrides; secrets never shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hotline.config import ConfigError, load_config


def write(tmp_path: Path, text: str, name: str = "hotline.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agi]\nport = 'abc'\n", "agi.port: Input should be a valid integer"),
        ("[agi]\nport = 70000\n", "agi.port: Input should be less than or equal to 65535"),
        ("[agi]\nprot = 4573\n", "agi.prot: unknown key"),
        ("[agii]\nport = 1\n", "agii: unknown key"),
        ("[server]\nlog_level = 'LOUD'\n", "server.log_level: Input should be"),
        ("[agi\n", "not valid TOML"),
        (
            "[speech]\ncomplete_timeout_s = 0.5\nincomplete_timeout_s = 0.3\n",
            "complete_timeout_s (0.5) must not be longer than incomplete_timeout_s (0.3)",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), environ={})
    assert message in str(e.value)
    assert str(tmp_path / "hotline.toml") in str(e.value)


def test_env_overrides_and_type_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "[agi]\nport = 4573\n")
    assert load_config(p, environ={"HOTLINE_AGI__PORT": "4600"}).agi.port == 4600
    with pytest.raises(ConfigError, match=r"agi\.port"):
        load_config(p, environ={"HOTLINE_AGI__PORT": "many"})


def test_secret_is_never_shown(tmp_path: Path, repo: Path) -> None:
    p = write(tmp_path, "[ami]\nport = 'x'\n", "broken.toml")
    cfg = load_config(
        write(tmp_path, "[ami]\nusername = 'hotline'\n"),
        environ={"HOTLINE_AMI__SECRET": "s3cr3t-value"},
    )
    assert cfg.ami_secret() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(cfg) and "s3cr3t-value" not in str(cfg.model_dump())
    r = subprocess.run(
        [str(repo / ".venv/bin/hotline"), "-c", str(p), "check-config"],
        capture_output=True,
        text=True,
        env={"HOTLINE_AMI__SECRET": "s3cr3t-value", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 2
    assert "ami.port" in r.stderr and "s3cr3t-value" not in r.stderr + r.stdout


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[ami]\nsecret_file = 'missing'\n"), environ={})
    with pytest.raises(ConfigError, match=r"ami\.secret_file: cannot read"):
        cfg.ami_secret()
