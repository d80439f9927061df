"""Speech menus through real Asterisk with the real Korean Vosk model.

The caller's voice is espeak-ng's Korean voice, sent as RTP by sipp; Asterisk
records it (AGI RECORD FILE, silence detection); Vosk decodes it with a
grammar built from the menu's phrases.  The model without Asterisk:
tests/integration/test_speech_model.py.
"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from harness.sipp import Audio, Keys, Pause, run_caller
from harness.wait import wait_for
from hotline.config import SpeechMode
from hotline.records.interactions import Interaction
from ivr.flow.engine import Services
from tests.support.speech import korean_speech

MENU_PROMPT = "요금 문의, 기술 지원, 상담원 연결 중에서 말씀하시거나 1번, 2번, 0번을 누르세요."


async def finished(services: Services, caller: str) -> Interaction:
    async def done() -> Interaction | None:
        calls = await services.interactions.recent(limit=5, caller=caller)
        return calls[0] if calls and calls[0].ended_at is not None else None

    return await wait_for(done, timeout=20, interval=0.25, what=f"{caller}'s finished interaction")


@pytest.mark.asterisk
@pytest.mark.parametrize("mode", ["record", "stream"])
@pytest.mark.parametrize(
    ("said", "node", "queue"),
    [("요금 문의", "billing_agent", "billing"), ("상담원 연결", "support_agent", "support")],
)
async def test_caller_says_choice_in_korean(
    live_server: Services, tmp_path: Path, said: str, node: str, queue: str, mode: SpeechMode
) -> None:
    live_server.speech_mode = mode
    prompt = await live_server.prompts.ensure(MENU_PROMPT, "ko")
    assert prompt
    with wave.open(str(live_server.prompts.host_path(MENU_PROMPT, "ko"))) as w:
        prompt_ms = int(1000 * w.getnframes() / w.getframerate())
    assert live_server.speech is not None, "the live server has a speech recogniser"
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
async def test_streaming_caller_can_speak_over_the_prompt(
    live_server: Services, tmp_path: Path
) -> None:
    live_server.speech_mode = "stream"
    assert live_server.speech is not None, "the live server has a speech recogniser"
    await live_server.speech.model("ko")
    speech, speech_ms = korean_speech(tmp_path, "상담원 연결")
    caller = "5550799"
    # 9 (Korean), then speak 2.5 s into the ~6 s menu prompt.
    result = await run_caller(
        [Pause(1500), Keys("9"), Pause(2500), Audio(speech, speech_ms + 8000)], number=caller
    )
    assert result.ok, result.stderr
    it = await finished(live_server, caller)
    assert it is not None
    assert it.path[-2:] == ["korean_menu", "support_agent"], it.steps
    assert it.transcripts[0]["text"] == "상담원 연결" and it.transcripts[0]["barged_in"] is True
