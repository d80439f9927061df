"""Render one prompt with pyttsx3 (espeak-ng) in a fresh process.

Run as ``python -m ivr.tts_worker OUT.wav VOICE RATE`` with the text on stdin.
A fresh engine per render, in its own process, because pyttsx3's espeak
driver is known to hang on repeated ``runAndWait`` in one process.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    out, voice, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = sys.stdin.read()
    import pyttsx3

    engine = pyttsx3.init("espeak")
    engine.setProperty("voice", voice)
    engine.setProperty("rate", rate)
    engine.save_to_file(text, out)
    engine.runAndWait()
    # pyttsx3's espeak driver sometimes returns from runAndWait without having
    # written anything (seen here); say so, and the caller retries.
    if not os.path.exists(out) or os.path.getsize(out) <= 44:
        print("pyttsx3 wrote no audio", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
