"""Render one prompt with pyttsx3 (espeak-ng) in a fresh process.

Run as ``python -m ivr.tts_worker OUT.wav VOICE RATE`` with the text on stdin.
A fresh engine per render, in its own process, because pyttsx3's espeak
driver is known to hang on repeated ``runAndWait`` in one process.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    out, voice, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = sys.stdin.read()
    import pyttsx3

    engine = pyttsx3.init("espeak")
    engine.setProperty("voice", voice)
    engine.setProperty("rate", rate)
    engine.save_to_file(text, out)
    engine.runAndWait()
    # pyttsx3's espeak driver can return from runAndWait before espeak's
    # synthesis thread has delivered the audio (its loop ends on a busy-flag
    # race, seen here); the file is written from that thread once synthesis
    # ends, so wait for it instead of exiting and losing it.
    driver = getattr(getattr(engine, "proxy", None), "_driver", None)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        getattr(driver, "_speaking", False) or not os.path.exists(out)
    ):
        time.sleep(0.01)
    if not os.path.exists(out) or os.path.getsize(out) <= 44:
        print("pyttsx3 wrote no audio", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
