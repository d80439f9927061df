"""A Korean caller's voice (espeak-ng, then sox) and the installed Korean Vosk model."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

from ivr.speech import SpeechRecognizer, installed_model

DEMO_MENU = {"1": ["요금 문의"], "2": ["기술 지원"], "0": ["상담원 연결"]}


def korean_speech(tmp: Path, text: str) -> tuple[Path, int]:
    raw, out = tmp / "raw.wav", tmp / "speech-8k-ulaw.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law", str(out)], check=True)
    with wave.open(str(raw)) as w:
        ms = int(1000 * w.getnframes() / w.getframerate())
    return out, ms


async def korean_model() -> object:
    """The installed Korean Vosk model, loaded as the server loads it."""
    path = installed_model("ko")
    assert path is not None
    speech = SpeechRecognizer({"ko": path})
    try:
        return await speech.model("ko")
    finally:
        speech.close()
