"""Sample audio made with sox (the integration and live tiers have it)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_wav(path: Path, seconds: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "synth",
            str(seconds),
            "sine",
            "440",
        ],
        check=True,
    )
    return path
