"""What the caller hears: prompts as data (text per language, or recorded files)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PromptPart:
    """One thing the caller hears: text per language, or a recorded file.

    ``file`` (relative to prompts/, no extension) overrides the text; ``speak_in``
    fixes the language (a language picker says "한국어는 9번" in Korean to
    everyone).
    """

    text: dict[str, str] = field(default_factory=dict)
    file: dict[str, str] = field(default_factory=dict)
    speak_in: str | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    parts: tuple[PromptPart, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.parts)

    def first_text(self, language: str) -> str:
        """What the first part says in ``language`` (for outlines and graphs)."""
        for part in self.parts:
            lang = part.speak_in or language
            if lang in part.text:
                return part.text[lang]
            if lang in part.file:
                return f"[file {part.file[lang]}]"
        return ""
