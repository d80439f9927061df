"""Notifiers: text a caller a self-service link instead of making them wait ("call deflection").

When the queue is long the IVR offers to send the caller a link (pay a bill, track an order)
and hangs up; the call is "deflected" only if the link actually arrives.  This module is the
delivery side, pluggable because every deployment reaches phones differently:

* :class:`WebhookNotifier` POSTs JSON to an SMS provider or an in-house gateway;
* :class:`SmtpNotifier` mails an email-to-SMS gateway (``<digits>@<domain>``);
* :class:`FileNotifier` appends to a JSON-lines "outbox" (the demo, tests).

All of them are async and never block the event loop (blocking libraries run in a thread),
retry transient failures with exponential backoff and raise one :class:`NotifyError` when
delivery finally fails.  Phone numbers are personal data and tokens and passwords are secrets:
log lines show only the last four digits, and no repr, log line or error message shows a
secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import smtplib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

import aiohttp
from yarl import URL

log = logging.getLogger("hotline.notify")

# Upper bound on one backoff pause, also for a server's Retry-After.
_MAX_BACKOFF_S = 30.0
_PHONE = re.compile(r"\+?[0-9]{3,15}")


@dataclass(frozen=True, slots=True)
class LinkMessage:
    """One link to send: ``to`` is the caller's number, digits with an optional leading +."""

    to: str
    text: str
    call_id: str
    language: str
    kind: str

    def __post_init__(self) -> None:
        if not _PHONE.fullmatch(self.to):
            # The number itself stays out of the message: it is personal data.
            raise ValueError(
                f"LinkMessage.to must be 3-15 digits with an optional +: {mask(self.to)}"
            )

    @property
    def digits(self) -> str:
        return self.to.removeprefix("+")


@runtime_checkable
class Notifier(Protocol):
    """Sends a :class:`LinkMessage`; raises :class:`NotifyError` when it could not be delivered."""

    name: str

    async def send(self, msg: LinkMessage) -> None: ...


class NotifyError(Exception):
    """Delivery failed for good (after retries, or at once for a permanent error)."""

    def __init__(self, notifier: str, attempts: int, cause: str) -> None:
        super().__init__(f"{notifier}: delivery failed after {attempts} attempt(s): {cause}")
        self.notifier = notifier
        self.attempts = attempts
        self.cause = cause


def mask(number: str) -> str:
    """A phone number as it may appear in logs: only the last four digits are kept."""
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def _payload(msg: LinkMessage) -> dict[str, str]:
    return {
        "to": msg.to,
        "text": msg.text,
        "call_id": msg.call_id,
        "language": msg.language,
        "kind": msg.kind,
        "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def _check_retry(attempts: int, backoff_s: float, timeout_s: float) -> None:
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    if backoff_s < 0:
        raise ValueError(f"backoff_s must not be negative, not {backoff_s}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")


class _Transient(Exception):
    """One attempt failed in a way worth retrying; ``retry_after`` is the server's hint."""

    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class _Permanent(Exception):
    """One attempt failed in a way retrying cannot fix."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _backoff(attempt: int, backoff_s: float, retry_after: float | None) -> float:
    delay = backoff_s * 2.0 ** (attempt - 1)
    delay += random.uniform(0, delay * 0.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, _MAX_BACKOFF_S)


async def _deliver(
    notifier: str,
    msg: LinkMessage,
    attempt_once: Callable[[], Awaitable[None]],
    *,
    attempts: int,
    backoff_s: float,
    secrets: tuple[str, ...] = (),
) -> None:
    """Run ``attempt_once`` until it succeeds, fails permanently or runs out of attempts."""
    fields = {"notifier": notifier, "call_id": msg.call_id, "kind": msg.kind, "to": mask(msg.to)}
    for attempt in range(1, attempts + 1):
        try:
            await attempt_once()
        except _Permanent as exc:
            cause = _redact(exc.cause, secrets)
            log.warning(
                "notify attempt failed (permanent)",
                extra={**fields, "attempt": attempt, "error": cause},
            )
            raise NotifyError(notifier, attempt, cause) from None
        except _Transient as exc:
            cause = _redact(exc.cause, secrets)
            last = attempt == attempts
            log.warning(
                "notify attempt failed" + (", giving up" if last else ", will retry"),
                extra={**fields, "attempt": attempt, "error": cause},
            )
            if last:
                raise NotifyError(notifier, attempt, cause) from None
            await asyncio.sleep(_backoff(attempt, backoff_s, exc.retry_after))
        else:
            log.info("notify sent", extra={**fields, "attempt": attempt})
            return


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare enough to ignore
    return seconds if seconds >= 0 else None


class _Closing:
    """``async with notifier:`` closes it on the way out (each notifier has ``close``)."""

    async def close(self) -> None:
        """Release what the notifier holds; nothing by default."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class WebhookNotifier(_Closing):
    """POSTs the message as JSON; ``Authorization: Bearer <token>`` when a token is set.

    Connection errors, timeouts, 429 and 5xx are retried with exponential backoff; any other
    4xx fails at once (the request itself is wrong).  ``timeout_s`` bounds each attempt.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        session: aiohttp.ClientSession | None = None,
        name: str = "webhook",
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("webhook url must be an absolute http(s) URL")
        if token is not None and (not token or any(c in token for c in "\r\n")):
            raise ValueError("webhook token must be non-empty and on one line")
        _check_retry(attempts, backoff_s, timeout_s)
        self.name = name
        self.url = url
        self._token = token
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._session = session
        self._owns_session = session is None
        # What may appear in logs and errors: no credentials in the URL, no query string.
        self._safe_url = str(parsed.with_user(None).with_query(None).with_fragment(None))
        self._secrets = tuple(
            s for s in (token, parsed.password, *parsed.query.values(), parsed.query_string) if s
        )

    def __repr__(self) -> str:
        token = "***" if self._token else None
        return f"WebhookNotifier(name={self.name!r}, url={self._safe_url!r}, token={token!r})"

    async def send(self, msg: LinkMessage) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        session = self._session
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        body = _payload(msg)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)

        async def attempt_once() -> None:
            try:
                async with session.post(
                    self.url, json=body, headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    if status < 400:
                        await resp.read()
                        return
                    cause = f"HTTP {status} {resp.reason or ''} from {self._safe_url}".strip()
                    if status == 429 or status >= 500:
                        raise _Transient(cause, _retry_after(resp.headers.get("Retry-After")))
                    raise _Permanent(cause)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise _Transient(_describe(exc)) from exc
            except TimeoutError as exc:
                raise _Transient(f"timed out after {self.timeout_s:g} s") from exc
            except aiohttp.ClientError as exc:
                raise _Permanent(_describe(exc)) from exc

        await _deliver(
            self.name,
            msg,
            attempt_once,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            secrets=self._secrets,
        )

    async def close(self) -> None:
        """Close the HTTP session if this notifier created it (a given session is the caller's)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


class SmtpNotifier(_Closing):
    """Mails an email-to-SMS gateway: the message goes to ``<digits>@<domain>``.

    ``smtplib`` blocks, so each attempt runs in a thread; ``timeout_s`` is the socket timeout.
    Connection errors and 4xx (transient) replies are retried; 5xx replies fail at once.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        domain: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_s: float = 10,
        attempts: int = 3,
        backoff_s: float = 0.5,
        subject: str = "Link",
        name: str = "smtp",
    ) -> None:
        if not host:
            raise ValueError("smtp host must not be empty")
        if not 1 <= port <= 65535:
            raise ValueError(f"smtp port must be 1-65535, not {port}")
        if not re.fullmatch(r"[A-Za-z0-9.-]+", domain):
            raise ValueError(f"smtp domain must be a bare domain name, not {domain!r}")
        if not sender or any(c in sender for c in "\r\n"):
            raise ValueError("smtp sender must be non-empty and on one line")
        if (username is None) != (password is None):
            raise ValueError("smtp username and password go together")
        _check_retry(attempts, backoff_s, timeout_s)
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.domain = domain
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.subject = subject
        if username is not None and not starttls:
            log.warning(
                "SMTP login without STARTTLS: the password crosses the network in clear",
                extra={"notifier": name, "host": host},
            )

    def __repr__(self) -> str:
        password = "***" if self._password else None
        return (
            f"SmtpNotifier(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"sender={self.sender!r}, domain={self.domain!r}, username={self.username!r}, "
            f"password={password!r}, starttls={self.starttls})"
        )

    def _message(self, msg: LinkMessage, msgid: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = f"{msg.digits}@{self.domain}"
        mail["Subject"] = self.subject
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = msgid
        mail["X-Hotline-Call-Id"] = msg.call_id
        mail["Content-Language"] = msg.language
        # 7-bit clean on the wire (not every gateway speaks 8BITMIME): Korean goes as base64.
        mail.set_content(msg.text, charset="utf-8", cte="7bit" if msg.text.isascii() else "base64")
        return mail

    def _send_blocking(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(mail)

    async def send(self, msg: LinkMessage) -> None:
        # One Message-ID for all attempts, so a gateway can drop a duplicate.
        msgid = make_msgid(domain=self.domain)

        async def attempt_once() -> None:
            try:
                # Built here so a bad header (a line break in call_id) is a NotifyError too.
                mail = self._message(msg, msgid)
                await asyncio.to_thread(self._send_blocking, mail)
            except Exception as exc:
                raise _classify_smtp(exc) from exc

        await _deliver(
            self.name,
            msg,
            attempt_once,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            secrets=(self._password,) if self._password else (),
        )


def _smtp_reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"SMTP {code} {text}".strip()


def _classify_smtp(exc: Exception) -> _Transient | _Permanent:
    """4xx replies and network trouble are transient; 5xx replies and the rest are not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        cause = "recipient refused: " + "; ".join(_smtp_reply(c, t) for c, t in replies)
        if replies and all(400 <= code < 500 for code, _ in replies):
            return _Transient(cause)
        return _Permanent(cause)
    if isinstance(exc, smtplib.SMTPResponseException):
        cause = f"{type(exc).__name__}: {_smtp_reply(exc.smtp_code, exc.smtp_error)}"
        if 400 <= exc.smtp_code < 500:
            return _Transient(cause)
        return _Permanent(cause)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return _Transient(_describe(exc))
    if isinstance(exc, smtplib.SMTPException | ssl.SSLCertVerificationError):
        return _Permanent(_describe(exc))
    if isinstance(exc, OSError):  # refused, reset, unreachable, socket timeout
        return _Transient(_describe(exc))
    return _Permanent(_describe(exc))


class FileNotifier(_Closing):
    """Appends one JSON line per message to ``path`` (the demo's outbox); never retries."""

    def __init__(self, path: str | Path, *, name: str = "file") -> None:
        self.name = name
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileNotifier(name={self.name!r}, path={str(self.path)!r})"

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)

    async def send(self, msg: LinkMessage) -> None:
        line = json.dumps(_payload(msg), ensure_ascii=False) + "\n"

        async def attempt_once() -> None:
            try:
                # One write per line, serialised: concurrent sends never interleave.
                async with self._lock:
                    await asyncio.to_thread(self._append, line)
            except OSError as exc:
                raise _Permanent(_describe(exc)) from exc

        await _deliver(self.name, msg, attempt_once, attempts=1, backoff_s=0)


async def close_notifier(notifier: Notifier) -> None:
    """Release what a notifier holds (the webhook's HTTP session), if it has a ``close``."""
    close = getattr(notifier, "close", None)
    if close is not None:
        await close()


# --- configuration ------------------------------------------------------------------------

_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # kind: (required, optional)
    "webhook": (
        frozenset({"url"}),
        frozenset({"token", "timeout_s", "attempts", "backoff_s", "name"}),
    ),
    "smtp": (
        frozenset({"host", "sender", "domain"}),
        frozenset(
            {
                "port",
                "username",
                "password",
                "starttls",
                "timeout_s",
                "attempts",
                "backoff_s",
                "subject",
                "name",
            }
        ),
    ),
    "file": (frozenset({"path"}), frozenset({"name"})),
}
_SECRET_OPTIONS = frozenset({"token", "password"})


class _Options:
    """Typed reads from an options mapping; errors name the kind and the option, not secrets."""

    def __init__(self, kind: str, options: Mapping[str, Any]) -> None:
        self.kind = kind
        self.options = options

    def _bad(self, key: str, expected: str) -> ValueError:
        value = self.options[key]
        shown = "***" if key in _SECRET_OPTIONS else repr(value)
        return ValueError(f"notifier {self.kind!r}: option {key!r} must be {expected}, not {shown}")

    def get_str(self, key: str) -> str | None:
        value = self.options.get(key)
        if value is None:
            return None
        get_secret = getattr(value, "get_secret_value", None)  # pydantic SecretStr
        if callable(get_secret):
            value = get_secret()
        if isinstance(value, Path) and key == "path":
            value = str(value)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def required_str(self, key: str) -> str:
        value = self.get_str(key)
        if not value:
            raise ValueError(f"notifier {self.kind!r}: option {key!r} is missing or empty")
        return value

    def get_float(self, key: str, default: float) -> float:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "a number")
        return float(value)

    def get_int(self, key: str, default: int) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "an integer")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value


def build_notifier(kind: str, options: Mapping[str, Any]) -> Notifier:
    """Make a notifier from configuration, e.g. a ``[notify]`` TOML table.

    ``kind`` is ``"webhook"``, ``"smtp"`` or ``"file"``.  Unknown kinds, unknown or missing
    options and wrong types raise :class:`ValueError` naming the kind and the option.
    Secrets (``token``, ``password``) may be plain strings or pydantic ``SecretStr``.
    """
    if kind not in _OPTIONS:
        raise ValueError(f"unknown notifier kind {kind!r}: expected one of {sorted(_OPTIONS)}")
    required, optional = _OPTIONS[kind]
    unknown = sorted(set(options) - required - optional)
    if unknown:
        raise ValueError(f"notifier {kind!r}: unknown option(s) {', '.join(map(repr, unknown))}")
    missing = sorted(key for key in required if options.get(key) in (None, ""))
    if missing:
        raise ValueError(f"notifier {kind!r}: missing option(s) {', '.join(map(repr, missing))}")
    opts = _Options(kind, options)
    try:
        if kind == "webhook":
            return WebhookNotifier(
                opts.required_str("url"),
                token=opts.get_str("token"),
                timeout_s=opts.get_float("timeout_s", 5.0),
                attempts=opts.get_int("attempts", 3),
                backoff_s=opts.get_float("backoff_s", 0.5),
                name=opts.get_str("name") or "webhook",
            )
        if kind == "smtp":
            starttls = opts.get_bool("starttls", False)
            return SmtpNotifier(
                opts.required_str("host"),
                opts.get_int("port", 587 if starttls else 25),
                sender=opts.required_str("sender"),
                domain=opts.required_str("domain"),
                username=opts.get_str("username"),
                password=opts.get_str("password"),
                starttls=starttls,
                timeout_s=opts.get_float("timeout_s", 10.0),
                attempts=opts.get_int("attempts", 3),
                backoff_s=opts.get_float("backoff_s", 0.5),
                subject=opts.get_str("subject") or "Link",
                name=opts.get_str("name") or "smtp",
            )
        return FileNotifier(opts.required_str("path"), name=opts.get_str("name") or "file")
    except ValueError as exc:
        if str(exc).startswith(f"notifier {kind!r}"):
            raise
        raise ValueError(f"notifier {kind!r}: {exc}") from None
