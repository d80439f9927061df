"""``deflect``: before queueing, when the wait is long, offer a link, a callback, or waiting.

See docs/deflection.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hotline.deflection.callbacks import InvalidNumber, dialable
from hotline.deflection.notify import LinkMessage, NotifyError
from hotline.erlang_c import spoken_minutes
from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource, YamlMap
from ivr.flow.placeholders import Resolver
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session

log = logging.getLogger("hotline.ivr")


@dataclass(frozen=True, slots=True)
class Deflect(Node):
    """Before queueing: when the wait is long, offer a link, a callback, or waiting.

    Keys: 1 = link by text message (when ``link_kind`` is set), 2 = callback,
    3 = keep waiting (so does silence).  ``next`` is where waiting goes: the
    queue node.
    """

    queue: str
    next: str
    threshold_s: float
    offer: Prompt  # {queue.wait_minutes}
    offer_no_agents: Prompt
    link_kind: str | None = None
    link_text: dict[str, str] = field(default_factory=dict)
    link_sent: Prompt = field(default_factory=Prompt)
    link_failed: Prompt = field(default_factory=Prompt)
    callback_booked: Prompt = field(default_factory=Prompt)
    callback_exists: Prompt = field(default_factory=Prompt)
    timeout_s: float = 6.0
    retries: int = 2

    @classmethod
    def parse(cls, src: NodeSource) -> Deflect:
        src.take(
            {"queue", "next", "threshold", "say", "say_no_agents", "link", "callback", "timeout"},
            {"queue", "next", "say", "say_no_agents", "callback"},
        )
        q = src.queue_name()
        link = _section(src, "link", {"kind", "text", "sent", "failed"})
        callback = _section(src, "callback", {"booked", "exists"})
        link_text: dict[str, str] = {}
        if link is not None:
            text = link.get("text")
            line = link.at("text")
            if not isinstance(text, dict):
                src.err(line, "link.text: expected the message per language")
            else:
                for lang in src.languages:
                    if lang not in text:
                        src.err(line, f"link.text: message missing for language {lang!r}")
                for lang, t in text.items():
                    src.template(str(t), line, f"link.text.{lang}")
                    link_text[str(lang)] = str(t)
        empty = Prompt()
        return cls(
            src.id,
            src.line,
            q,
            src.word("next"),
            src.number("threshold", 120, 0, 7200),
            src.prompt("say"),
            src.prompt("say_no_agents"),
            link.text("kind") if link is not None else None,
            link_text,
            link.prompt("sent") if link is not None else empty,
            link.prompt("failed") if link is not None else empty,
            callback.prompt("booked") if callback is not None else empty,
            callback.prompt("exists") if callback is not None else empty,
            src.number("timeout", 6, 2, 30),
        )

    def targets(self) -> list[Exit]:
        return [Exit("next", self.next)]

    def describe(self, language: str) -> str:
        offers = ([f"1 link ({self.link_kind})"] if self.link_kind else []) + [
            "2 callback",
            "3 keep waiting",
        ]
        return (
            f"deflect from queue {self.queue} when the wait is over "
            f"{self.threshold_s:g} s or closed: " + ", ".join(offers)
        )

    async def run(self, session: Session, step: Step) -> str | None:
        svc = session.services
        number = session.channel.caller_number
        if svc.callbacks is not None and number:
            booked = await svc.callbacks.open_for(number)
            if booked is not None:
                # Called again while waiting for a callback: not queued twice.
                step["result"] = "callback_pending"
                session.interaction.outcome = "deflected"
                await session.play(self.callback_exists, "")
                await session.channel.hangup()
                return None
        estimate = svc.wait_estimate(self.queue) if svc.wait_estimate is not None else None
        open_now = session.open_now()
        if estimate is None and open_now:
            step["result"] = "no_estimate"
            return self.next
        if estimate is not None:
            step["estimate_s"] = None if math.isinf(estimate.seconds) else round(estimate.seconds)
            step["estimate_method"] = estimate.method
        if open_now and estimate is not None and estimate.seconds <= self.threshold_s:
            step["result"] = "short_wait"
            return self.next
        _count(session, self.queue, "offered")
        keys = ("1" if self.link_kind else "") + "23"
        if estimate is None or math.isinf(estimate.seconds):
            offer = self.offer_no_agents
        else:
            session.queue_info = {"wait_minutes": spoken_minutes(estimate.seconds)}
            offer = self.offer
        digit: str | None = None
        for _ in range(self.retries):
            digit = await session.play(offer, keys + "0")
            if digit is None:
                digit = await session.channel.wait_for_digit(int(self.timeout_s * 1000))
            if digit is None or digit in keys + "0":
                break
            await session.say_builtin("invalid")
        session.record_input(self.id, digit or "")
        if digit == "1" and self.link_kind:
            return await self._send_link(session, step)
        if digit == "2":
            return await self._book_callback(session, step)
        step["result"] = "agent" if digit == "0" else "keep_waiting"
        _count(session, self.queue, "declined")
        return self.next

    async def _send_link(self, session: Session, step: Step) -> str | None:
        svc = session.services
        lang = session.language
        if lang not in self.link_text:
            lang = session.flow.default_language
        text = Resolver(session.scope()).format(self.link_text.get(lang, ""))
        try:
            if svc.notifier is None:
                raise RuntimeError("no notifier configured ([deflection] notifier)")
            msg = LinkMessage(
                to=dialable(session.channel.caller_number, svc.number_pattern),
                text=text,
                call_id=session.interaction.call_id,
                language=lang,
                kind=self.link_kind or "link",
            )
            await asyncio.wait_for(svc.notifier.send(msg), svc.notify_timeout_s)
        except (InvalidNumber, NotifyError, RuntimeError, TimeoutError, ValueError) as e:
            log.warning("self-service link not sent: %s", e)
            step["result"] = "link_failed"
            _count(session, self.queue, "link_failed")
            await session.play(self.link_failed, "")
            return self.next  # into the queue after all
        step["result"] = "link_sent"
        _count(session, self.queue, "link_sent")
        session.interaction.outcome = "deflected"
        await session.play(self.link_sent, "")
        await session.channel.hangup()
        return None

    async def _book_callback(self, session: Session, step: Step) -> str | None:
        svc = session.services
        if svc.callbacks is None:
            step["result"] = "callback_unavailable"
            return self.next
        it = session.interaction
        try:
            cb = await svc.callbacks.book(
                queue=self.queue,
                number=session.channel.caller_number,
                call_id=it.call_id,
                requested_at=it.started_at,
                interaction_id=it.id,
                customer_id=session.customer.id if session.customer else None,
                language=session.language,
            )
        except InvalidNumber as e:
            log.warning("callback not booked: %s", e)
            step["result"] = "callback_bad_number"
            await session.say_builtin("bad_digits")
            return self.next
        step["result"] = "callback_booked"
        step["callback"] = cb.id
        it.queue = self.queue
        _count(session, self.queue, "callback_booked")
        # Saved now: the agent's screen pop for the callback shows this record.
        it.outcome = "deflected"
        await svc.interactions.save(it, wait=False)
        if svc.on_callback_booked is not None:
            svc.on_callback_booked()
        await session.play(self.callback_booked, "")
        await session.channel.hangup()
        return None


def _section(src: NodeSource, key: str, fields: set[str]) -> NodeSource | None:
    """``link:`` or ``callback:``: a mapping whose fields are all required."""
    value = src.get(key)
    if value is None:
        return None
    if not isinstance(value, YamlMap):
        src.err(src.at(key), f"{key}: expected a mapping")
        return None
    section = src.within(value, key)
    section.take(fields, fields)
    return section


def _count(session: Session, queue: str, what: str) -> None:
    """One deflection event: in the record, and to the metrics (``on_deflection``)."""
    session.interaction.self_service.append({"task": "deflection", "queue": queue, "outcome": what})
    if session.services.on_deflection is not None:
        session.services.on_deflection(queue, what)
