"""``deflect``: before queueing, when the wait is long, offer a link, a callback, or waiting.

Links and callbacks go to the caller ID, which anyone can spoof: each number
gets at most ``[deflection] max_links_per_number`` links and
``max_callbacks_per_number`` callbacks per ``window_s``, counted in the
database; a refused request is told why and queued.  A link carries an
unguessable token (``{link.token}``), stored with the call's record.

See docs/deflection.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hotline.deflection.callbacks import CallbackLimitReached, InvalidNumber, dialable
from hotline.deflection.notify import LinkMessage, NotifyError
from hotline.erlang_c import spoken_minutes
from hotline.records.interactions import utcnow
from ivr.flow.node import Exit, Node, Step
from ivr.flow.parsing import NodeSource, YamlMap
from ivr.flow.placeholders import Resolver
from ivr.flow.prompt import Prompt

if TYPE_CHECKING:
    from ivr.flow.session import Session

log = logging.getLogger("hotline.ivr")

# The link's token: 16 random bytes (128 bits), URL-safe, 22 characters.
TOKEN_BYTES = 16


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
    # Said when the number has had its links / callbacks for the window
    # (default: the built-in link_limit / callback_limit messages).
    link_limited: Prompt = field(default_factory=Prompt)
    callback_limited: Prompt = field(default_factory=Prompt)
    retries: int = 2

    @classmethod
    def parse(cls, src: NodeSource) -> Deflect:
        src.take(
            {"queue", "next", "threshold", "say", "say_no_agents", "link", "callback", "timeout"},
            {"queue", "next", "say", "say_no_agents", "callback"},
        )
        q = src.queue_name()
        link = _section(src, "link", {"kind", "text", "sent", "failed"}, frozenset({"limited"}))
        callback = _section(src, "callback", {"booked", "exists"}, frozenset({"limited"}))
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
            link.prompt("limited") if link is not None else empty,
            callback.prompt("limited") if callback is not None else empty,
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
        it = session.interaction
        try:
            if svc.notifier is None:
                raise RuntimeError("no notifier configured ([deflection] notifier)")
            to = dialable(session.channel.caller_number, svc.number_pattern)
            if not await _reserve_link(session, to):
                step["result"] = "link_limited"
                _count(session, self.queue, "link_limited", metric=False)
                await self._refuse(session, self.link_limited, "link_limit")
                return self.next  # into the queue
            text = Resolver(session.scope()).format(self.link_text.get(lang, ""))
            msg = LinkMessage(
                to=to,
                text=text,
                call_id=it.call_id,
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
                limit=svc.limits.callbacks,
                window_s=svc.limits.window_s,
            )
        except InvalidNumber as e:
            log.warning("callback not booked: %s", e)
            step["result"] = "callback_bad_number"
            await session.say_builtin("bad_digits")
            return self.next
        except CallbackLimitReached as e:
            log.warning("callback not booked: %s", e)
            step["result"] = "callback_limited"
            _count(session, self.queue, "callback_limited", metric=False)
            await self._refuse(session, self.callback_limited, "callback_limit")
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

    async def _refuse(self, session: Session, prompt: Prompt, builtin: str) -> None:
        """Tell the caller why the link or callback is refused (they are queued next)."""
        if prompt:
            await session.play(prompt, "")
        else:
            await session.say_builtin(builtin)


async def _reserve_link(session: Session, to: str) -> bool:
    """Give the call a link token and count it against ``to``'s links in the window.

    The token, the number and the time are committed first, then the links to
    that number up to this one are counted: of calls from one number at the
    same moment, the earliest ``limits.links`` get through and the others see
    them, so a burst cannot slip past the limit.  A link over the limit is
    taken back, and False returned.
    """
    svc = session.services
    it = session.interaction
    limits = svc.limits
    if limits.links <= 0:
        return False
    it.link_token = secrets.token_urlsafe(TOKEN_BYTES)
    it.link_to = to
    it.link_sent_at = utcnow()
    await svc.interactions.save(it)
    sent = await svc.interactions.links_sent_to(to, limits.since(it.link_sent_at), up_to=it)
    if sent <= limits.links:
        return True
    it.link_token = it.link_to = it.link_sent_at = None
    await svc.interactions.save(it)
    log.warning("self-service link refused: %d links to this number in the window", sent - 1)
    return False


def _section(
    src: NodeSource, key: str, fields: set[str], optional: frozenset[str] = frozenset()
) -> NodeSource | None:
    """``link:`` or ``callback:``: a mapping of required ``fields`` and ``optional`` ones."""
    value = src.get(key)
    if value is None:
        return None
    if not isinstance(value, YamlMap):
        src.err(src.at(key), f"{key}: expected a mapping")
        return None
    section = src.within(value, key)
    section.take(fields | optional, fields)
    return section


def _count(session: Session, queue: str, what: str, *, metric: bool = True) -> None:
    """One deflection event: in the record, and to the metrics (``on_deflection``).

    Refusals over the limits (``metric=False``) are in the record only: the
    queue statistics' deflection kinds are a published schema (docs/mqtt.md).
    """
    session.interaction.self_service.append({"task": "deflection", "queue": queue, "outcome": what})
    if metric and session.services.on_deflection is not None:
        session.services.on_deflection(queue, what)
