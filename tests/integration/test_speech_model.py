"""The real Korean Vosk model on espeak-ng's Korean voice, without Asterisk.

Decoding a file, the grammar, the `hotline asr test` and check-config tools, and
the streaming listener's end-of-speech pause over a real AudioSocket.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import wave
from pathlib import Path

import pytest

from ivr.flow.engine import Services
from ivr.speech import SpeechRecognizer, check_model_dir, installed_model, match_option
from tests.support.speech import DEMO_MENU, korean_model, korean_speech


async def test_model_file_decodes_korean_with_menu_grammar(tmp_path: Path) -> None:
    model = installed_model("ko")
    assert model is not None and check_model_dir(model) is None
    speech = SpeechRecognizer({"ko": model})
    wav, _ = korean_speech(tmp_path, "상담원 연결")
    pcm = tmp_path / "pcm.wav"
    subprocess.run(["sox", str(wav), "-e", "signed-integer", "-b", "16", str(pcm)], check=True)
    heard = await speech.recognize_file(pcm, "ko", ["요금 문의", "기술 지원", "상담원 연결"])
    assert heard.text == "상담원 연결" and heard.confidence > 0.5
    assert match_option(heard.text, {"1": ["요금 문의"], "0": ["상담원 연결"]}) == "0"
    speech.close()


async def test_grammar_asks_for_unk_only_of_a_model_that_has_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import vosk

    from ivr.speech import grammar_json

    model = await korean_model()
    capfd.readouterr()
    grammar = grammar_json(model, ["요금 문의", "상담원 연결"])
    assert json.loads(grammar) == ["상담원 연결", "요금 문의"]  # the Korean model has no [unk]
    vosk.KaldiRecognizer(model, 8000, grammar)
    # Asked for a word it lacks, Vosk writes a warning to the server's log on
    # every recogniser, i.e. for every utterance of every caller.
    assert "Ignoring word missing" not in capfd.readouterr().err
    vosk.KaldiRecognizer(model, 8000, json.dumps(["요금 문의", "[unk]"]))
    assert "Ignoring word missing in vocabulary: '[unk]'" in capfd.readouterr().err


async def test_free_form_decoding_gives_a_transcript(tmp_path: Path) -> None:
    model = installed_model("ko")
    assert model is not None
    speech = SpeechRecognizer({"ko": model})
    wav, _ = korean_speech(tmp_path, "요금 문의")
    pcm = tmp_path / "pcm.wav"
    subprocess.run(["sox", str(wav), "-e", "signed-integer", "-b", "16", str(pcm)], check=True)
    heard = await speech.recognize_file(pcm, "ko", None)  # no grammar
    assert heard.text and heard.language == "ko"
    speech.close()


def test_asr_test_tool_names_the_option(tmp_path: Path, repo: Path) -> None:
    wav, _ = korean_speech(tmp_path, "상담원 연결")
    r = subprocess.run(
        [
            str(repo / ".venv/bin/hotline"),
            "asr",
            "test",
            str(wav),
            "--lang",
            "ko",
            "--flow",
            str(repo / "dialplans/hotline.yaml"),
            "--node",
            "korean_menu",
        ],
        capture_output=True,
        text=True,
        cwd=repo,
    )
    assert r.returncode == 0, r.stderr
    assert "heard:      '상담원 연결'" in r.stdout
    assert "would pick: option 0 (상담원 연결)" in r.stdout
    assert "words:      option 0: whole phrase" in r.stdout
    assert "streaming:  ends 0.15 s after the caller stops (the words name an option whole)" in (
        r.stdout
    )


def test_check_config_names_menu_words_the_model_does_not_know(tmp_path: Path, repo: Path) -> None:
    demo = (repo / "dialplans/hotline.yaml").read_text()
    (tmp_path / "dialplans").mkdir()
    conf = tmp_path / "hotline.toml"
    conf.write_text("[ami]\nenabled = false\n")

    def check(flow: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "dialplans" / "hotline.yaml").write_text(flow)
        return subprocess.run(
            [str(repo / ".venv/bin/hotline"), "-c", str(conf), "check-config"],
            capture_output=True,
            text=True,
        )

    assert check(demo).returncode == 0  # the demo's Korean menu: every word known
    # Written without its space, the billing phrase is one word the model lacks:
    # Vosk would drop it from the grammar and nobody could ever say it.
    lines = demo.splitlines()
    phrase_at = next(i for i, ln in enumerate(lines) if '["요금 문의"]' in ln)
    option_at = max(i for i in range(phrase_at) if lines[i].strip() == '- key: "1"') + 1
    r = check(demo.replace('phrases: {ko: ["요금 문의"]}', 'phrases: {ko: ["요금문의"]}'))
    assert r.returncode == 1
    assert (
        f"hotline.yaml:{option_at}: node 'korean_menu': option 1: ko phrase '요금문의': "
        "'요금문의' is not a word of the ko model"
    ) in r.stderr
    # A phrase made only of another option's words is legal, but pointed out.
    r = check(demo.replace('phrases: {ko: ["기술 지원"]}', 'phrases: {ko: ["상담원"]}'))
    assert r.returncode == 0, r.stderr
    assert "option 2: ko phrase '상담원' has no word the other options do not use" in r.stderr


async def test_listen_without_model_is_skipped_not_an_error(services: Services) -> None:
    from ivr.flow.engine import CallRouter
    from ivr.flow.loader import parse_flow
    from ivr.server import FastAgiServer
    from tests.support.fake_asterisk import FakeCall

    flow = parse_flow(
        "flow: why\nlanguages: [en]\nstart: ask\nnodes:\n"
        "  ask:\n    type: listen\n    say: {en: 'Tell us briefly why you are calling.'}\n"
        "    var: reason\n    next: agent\n"
        "  agent:\n    type: queue\n    queue: support\n",
        "why.yaml",
    )
    services.flows = {"why": flow}
    srv = FastAgiServer(CallRouter(services), "127.0.0.1", 0)
    await srv.start()
    try:
        call = await FakeCall(script="why").run(srv.port)
    finally:
        await srv.stop()
    assert call.variables["HOTLINE_QUEUE"] == "support"


async def _quiet_before_the_end(model: object, speech_pcm: bytes, **pauses: float) -> float:
    """Play a caller into a StreamingListener over a real socket (20 ms frames, on
    the clock) and return how long after their last loud frame it decided they
    had finished."""
    from ivr.audiosocket import (
        FRAME_BYTES,
        KIND_AUDIO,
        KIND_UUID,
        AudioSocketServer,
        StreamingListener,
        frame,
        rms,
    )

    server = AudioSocketServer("127.0.0.1", 0)
    await server.start()
    speech = SpeechRecognizer({})
    key, connected = server.expect()
    line = b"\0" * 4800 + speech_pcm + b"\0" * 32000  # 0.3 s, the words, 2 s quiet
    frames = [line[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0") for i in range(0, len(line), 320)]
    last_loud = 0.0

    async def caller() -> None:
        nonlocal last_loud
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(frame(KIND_UUID, key.bytes))
        start = time.monotonic()
        for n, f in enumerate(frames):
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))
            writer.write(frame(KIND_AUDIO, f))
            if rms(f) > StreamingListener.SPEECH_RMS:
                last_loud = time.monotonic()
        writer.close()

    peer = asyncio.create_task(caller())
    reader, writer = await connected
    from ivr.speech import MenuGrammar

    listener = StreamingListener(model, MenuGrammar(DEMO_MENU), "", speech.run, **pauses)
    result = await listener.listen(reader, writer, b"", timeout_s=5)
    peer.cancel()
    await server.stop()
    speech.close()
    assert result.speech_end is not None
    return result.speech_end - last_loud


async def test_streaming_end_of_speech_pause_is_the_configured_one(tmp_path: Path) -> None:
    model = await korean_model()
    wav, _ = korean_speech(tmp_path, "안녕하세요")
    pcm = tmp_path / "pcm.wav"
    subprocess.run(["sox", str(wav), "-e", "signed-integer", "-b", "16", str(pcm)], check=True)
    with wave.open(str(pcm)) as w:
        said = w.readframes(w.getnframes())
    # Both pauses set alike: whether or not the words name an option, that pause
    # ends the utterance ([speech] complete_timeout_s / incomplete_timeout_s).
    short, long = [
        await _quiet_before_the_end(model, said, complete_timeout_s=t, incomplete_timeout_s=t)
        for t in (0.25, 0.8)
    ]
    assert 0.25 <= short < 0.4, short
    assert 0.8 <= long < 0.95, long
