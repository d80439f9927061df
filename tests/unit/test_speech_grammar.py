"""Speech menus without a model: the grammar, AudioSocket framing, how heard words pick an
option, and check-config naming a wrong model path."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.speech import DEMO_MENU


class _ModelWithUnk:
    def find_word(self, word: str) -> int:
        return 7 if word in ("[unk]", "billing") else -1


def test_grammar_keeps_unk_for_a_model_that_has_it() -> None:
    from ivr.speech import grammar_json

    grammar = grammar_json(_ModelWithUnk(), ["Billing ", "billing"])
    assert json.loads(grammar) == ["billing", "[unk]"]


def test_wrong_model_path_is_named_by_check_config(tmp_path: Path, repo: Path) -> None:
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


def test_audiosocket_frames_split_anywhere() -> None:
    from ivr.audiosocket import KIND_AUDIO, KIND_DTMF, KIND_UUID, frame, parse_frames

    data = (
        frame(KIND_UUID, b"u" * 16) + frame(KIND_AUDIO, b"\x01\x00" * 160) + frame(KIND_DTMF, b"5")
    )
    for cut in range(len(data)):
        first, rest = parse_frames(data[:cut])
        second, rest = parse_frames(rest + data[cut:])
        assert [k for k, _ in first + second] == [KIND_UUID, KIND_AUDIO, KIND_DTMF]
        assert rest == b""


def test_menu_reads_the_words_heard_not_their_order() -> None:
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


def test_the_short_pause_ends_only_an_utterance_that_names_an_option_whole() -> None:
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
