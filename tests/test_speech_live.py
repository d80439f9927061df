"""Speech menus through real Asterisk with the real Korean Vosk model.

The caller's voice is espeak-ng's Korean voice, sent as RTP by sipp; Asterisk
records it (AGI RECORD FILE, silence detection); Vosk decodes it with a
grammar built from the menu's phrases.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import wave
from pathlib import Path

import pytest

from harness.sipp import Audio, Keys, Pause, run_caller
from hotline.records.interactions import Interaction
from ivr.flow.engine import Services
from ivr.speech import SpeechRecognizer, check_model_dir, installed_model, match_option
from tests.conftest import wait_for

MENU_PROMPT = "요금 문의, 기술 지원, 상담원 연결 중에서 말씀하시거나 1번, 2번, 0번을 누르세요."


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


async def finished(services: Services, caller: str) -> Interaction | None:
    async def done() -> Interaction | None:
        calls = await services.interactions.recent(limit=5, caller=caller)
        return calls[0] if calls and calls[0].ended_at is not None else None

    return await wait_for(done, timeout=20, interval=0.25)


async def test_model_file_decodes_korean_with_menu_grammar(tmp_path):
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


async def test_grammar_asks_for_unk_only_of_a_model_that_has_it(capfd):
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


class _ModelWithUnk:
    def find_word(self, word: str) -> int:
        return 7 if word in ("[unk]", "billing") else -1


def test_grammar_keeps_unk_for_a_model_that_has_it():
    from ivr.speech import grammar_json

    grammar = grammar_json(_ModelWithUnk(), ["Billing ", "billing"])
    assert json.loads(grammar) == ["billing", "[unk]"]


@pytest.mark.asterisk
@pytest.mark.parametrize("mode", ["record", "stream"])
@pytest.mark.parametrize(
    ("said", "node", "queue"),
    [("요금 문의", "billing_agent", "billing"), ("상담원 연결", "support_agent", "support")],
)
async def test_caller_says_choice_in_korean(
    live_server: Services, tmp_path, said, node, queue, mode
):
    live_server.speech_mode = mode
    prompt = await live_server.prompts.ensure(MENU_PROMPT, "ko")
    assert prompt
    with wave.open(str(live_server.prompts.host_path(MENU_PROMPT, "ko"))) as w:
        prompt_ms = int(1000 * w.getnframes() / w.getframerate())
    await live_server.speech.model("ko")  # loaded once, shared by every call
    speech, speech_ms = korean_speech(tmp_path, said)
    caller = "55507" + str(len(said)) + str(len(mode))
    result = await run_caller(
        [Pause(1500), Keys("9"), Pause(prompt_ms + 1500), Audio(speech, speech_ms + 8000)],
        number=caller,
    )
    assert result.ok, result.stderr
    it = await finished(live_server, caller)
    assert it is not None
    assert it.path[-2:] == ["korean_menu", node], it.steps
    assert it.queue == queue and it.language == "ko"
    assert it.transcripts and it.transcripts[0]["text"] == said
    assert it.transcripts[0]["mode"] == mode
    # The utterance itself is not kept.
    assert list(live_server.asr_host.glob("*.wav")) == []


@pytest.mark.asterisk
async def test_streaming_caller_can_speak_over_the_prompt(live_server: Services, tmp_path):
    live_server.speech_mode = "stream"
    await live_server.speech.model("ko")
    speech, speech_ms = korean_speech(tmp_path, "상담원 연결")
    caller = "5550799"
    # 9 (Korean), then speak 2.5 s into the ~6 s menu prompt.
    result = await run_caller(
        [Pause(1500), Keys("9"), Pause(2500), Audio(speech, speech_ms + 8000)], number=caller
    )
    assert result.ok, result.stderr
    it = await finished(live_server, caller)
    assert it is not None and it.path[-2:] == ["korean_menu", "support_agent"], it.steps
    assert it.transcripts[0]["text"] == "상담원 연결" and it.transcripts[0]["barged_in"] is True


async def test_free_form_decoding_gives_a_transcript(tmp_path):
    speech = SpeechRecognizer({"ko": installed_model("ko")})
    wav, _ = korean_speech(tmp_path, "요금 문의")
    pcm = tmp_path / "pcm.wav"
    subprocess.run(["sox", str(wav), "-e", "signed-integer", "-b", "16", str(pcm)], check=True)
    heard = await speech.recognize_file(pcm, "ko", None)  # no grammar
    assert heard.text and heard.language == "ko"
    speech.close()


def test_asr_test_tool_names_the_option(tmp_path, repo):
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


def test_wrong_model_path_is_named_by_check_config(tmp_path, repo):
    (tmp_path / "dialplans").mkdir()
    (tmp_path / "dialplans" / "hotline.yaml").write_text(
        (repo / "dialplans/hotline.yaml").read_text()
    )
    conf = tmp_path / "hotline.toml"
    conf.write_text('[ami]\nenabled = false\n[speech.models]\nko = "/nonexistent/vosk-ko"\n')
    r = subprocess.run(
        [str(repo / ".venv/bin/hotline"), "-c", str(conf), "check-config"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "speech.models.ko: /nonexistent/vosk-ko does not exist" in r.stderr
    conf.write_text(f'[ami]\nenabled = false\n[speech.models]\nko = "{tmp_path}"\n')
    r = subprocess.run(
        [str(repo / ".venv/bin/hotline"), "-c", str(conf), "check-config"],
        capture_output=True,
        text=True,
    )
    assert "not a Vosk model" in r.stderr


def test_check_config_names_menu_words_the_model_does_not_know(tmp_path, repo):
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


async def test_listen_without_model_is_skipped_not_an_error(services):
    from ivr.flow.engine import CallRouter
    from ivr.flow.loader import parse_flow
    from ivr.server import FastAgiServer
    from tests.fake_asterisk import FakeCall

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


async def test_streaming_end_of_speech_pause_is_the_configured_one(tmp_path):
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


def test_audiosocket_frames_split_anywhere():
    from ivr.audiosocket import KIND_AUDIO, KIND_DTMF, KIND_UUID, frame, parse_frames

    data = (
        frame(KIND_UUID, b"u" * 16) + frame(KIND_AUDIO, b"\x01\x00" * 160) + frame(KIND_DTMF, b"5")
    )
    for cut in range(len(data)):
        first, rest = parse_frames(data[:cut])
        second, rest = parse_frames(rest + data[cut:])
        assert [k for k, _ in first + second] == [KIND_UUID, KIND_AUDIO, KIND_DTMF]
        assert rest == b""


DEMO_MENU = {"1": ["요금 문의"], "2": ["기술 지원"], "0": ["상담원 연결"]}


def test_menu_reads_the_words_heard_not_their_order():
    from ivr.speech import MenuGrammar, match_option

    menu = MenuGrammar(DEMO_MENU)
    # Vosk's grammar is a loop over the menu's words: "요금 문의" comes back
    # reordered or with a word of another phrase; the words still choose billing.
    assert match_option("요금 문의", DEMO_MENU) == "1"
    assert match_option("연결 문의 요금", DEMO_MENU) == "1"
    assert match_option("안녕하세요 상담원 연결 부탁드립니다", DEMO_MENU) == "0"
    # A whole phrase in order beats loose words of another option.
    assert match_option("상담원 연결 지원", DEMO_MENU) == "0"
    # One word of a phrase still points at its option, once the caller stopped...
    assert menu.interpret(["지원"]).option == "2"
    # ...but equal evidence for two options, or two whole phrases, is no match.
    assert match_option("연결 요금", DEMO_MENU) is None
    assert match_option("요금 문의 상담원 연결", DEMO_MENU) is None
    assert match_option("", DEMO_MENU) is None
    assert match_option("날씨", DEMO_MENU) is None
    # A word two options share tells them apart for neither.
    shared = {"1": ["요금 문의"], "2": ["기술 문의"]}
    assert match_option("문의", shared) is None
    assert match_option("문의 기술", shared) == "2"


def test_the_short_pause_ends_only_an_utterance_that_names_an_option_whole():
    from ivr.speech import MenuGrammar

    menu = MenuGrammar(DEMO_MENU)
    assert menu.interpret(["요금", "문의"]).complete
    # Said inside a sentence: the option is known, no need to wait out the hangover.
    assert menu.interpret(["안녕하세요", "상담원", "연결", "부탁드립니다"]).complete
    assert menu.interpret(["문의", "기술", "지원"]).complete
    # Every word of one option, in the order the word loop gave them.
    assert menu.interpret(["연결", "문의", "요금"]).complete
    # Half a phrase or nothing yet: the caller may go on.
    assert not menu.interpret(["상담원"]).complete
    assert not menu.interpret(["지원"]).complete
    assert not menu.interpret([]).complete
    assert not MenuGrammar({}).interpret(["요금", "문의"]).complete
    assert menu.phrases() == ["기술 지원", "상담원 연결", "요금 문의"]
