"""``listen``: free-form speech ("tell us briefly why you are calling") into a variable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session


@dataclass(frozen=True, slots=True)
class Listen(Node):
    """Free-form speech: "tell us briefly why you are calling" -> a transcript in ``var``."""

    prompt: Prompt
    var: str
    next: str
    timeout_s: float = 10.0

    @classmethod
    def parse(cls, src: NodeSource) -> Listen:
        src.take({"say", "var", "next", "timeout"}, {"say", "var", "next"})
        var = src.var_name()
        return cls(
            src.id,
            src.line,
            src.prompt("say"),
            var,
            src.word("next"),
            src.number("timeout", 10, 2, 60),
        )

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next)]

    def describe(self, language: str) -> str:
        return f'listen (free form) into {self.var}: "{self.prompt.first_text(language)}"'

    async def run(self, session: Session, step: Step) -> str | None:
        """Without a speech model for the caller's language the step is skipped."""
        await session.play(self.prompt, "")
        speech = session.services.speech
        if speech is None or not speech.available(session.language):
            if speech is not None:
                speech.warn_once(session.language, "listen step without a model: skipped")
            step["result"] = "no_model"
            return self.next
        # "#" ends the recording; what was said before it is still recognised.
        _, heard = await session.record_and_recognise(
            "#", self.timeout_s, silence_s=2, phrases=None, key_is_choice=False
        )
        text = heard.text if heard else ""
        session.vars[self.var] = text
        session.interaction.inputs[self.var] = text
        if heard is not None:
            session.interaction.transcripts.append(
                {
                    "node": self.id,
                    "text": text,
                    "confidence": heard.confidence,
                    "language": heard.language,
                    "option": None,
                }
            )
        step["result"] = "heard" if text else "nothing"
        return self.next
