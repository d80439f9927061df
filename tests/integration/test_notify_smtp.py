"""The SMTP notifier against a real SMTP server (aiosmtpd, in this process)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from hotline.deflection.notify import NotifyError, SmtpNotifier
from tests.support.notify import KOREAN, PASSWORD, message

# --- SMTP ----------------------------------------------------------------------------------


class MailSink:
    """An aiosmtpd handler that keeps the envelopes; ``replies`` scripts the DATA answers."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self.replies = list(replies or [])
        self.data_calls = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.replies:
            return self.replies.pop(0)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def refuse_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    assert isinstance(data, LoginPassword)
    return AuthResult(success=data.password == b"right-password", handled=False)


@pytest.fixture
async def smtp_server() -> AsyncIterator[Callable[[MailSink], Awaitable[int]]]:
    """Start an aiosmtpd server on 127.0.0.1, port 0, in this loop; returns its port."""
    servers: list[asyncio.Server] = []

    async def start(sink: MailSink) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                sink,
                hostname="hotline.test",
                auth_require_tls=False,
                authenticator=refuse_login,
            ),
            "127.0.0.1",
            0,
        )
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_smtp_delivers_korean_to_gateway(
    smtp_server: Callable[[MailSink], Awaitable[int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.notify")
    sink = MailSink()
    port = await smtp_server(sink)
    notifier = SmtpNotifier(
        "127.0.0.1", port, sender="ivr@hotline.test", domain="sms.example", backoff_s=0.01
    )
    await notifier.send(message(KOREAN))

    assert len(sink.envelopes) == 1
    envelope = sink.envelopes[0]
    assert envelope.mail_from == "ivr@hotline.test"
    assert envelope.rcpt_tos == ["821012345678@sms.example"]
    assert isinstance(envelope.original_content, bytes)
    assert envelope.original_content.isascii()  # 7-bit clean on the wire
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["From"] == "ivr@hotline.test"
    assert mail["To"] == "821012345678@sms.example"
    assert mail["X-Hotline-Call-Id"] == "call-1"
    assert len(str(mail["Subject"])) <= 20
    assert mail.get_content_charset() == "utf-8"
    assert mail.get_content().rstrip("\n") == KOREAN
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.__dict__["notifier"] for r in infos] == ["smtp"]


async def test_smtp_retries_transient_4xx(
    smtp_server: Callable[[MailSink], Awaitable[int]],
) -> None:
    sink = MailSink(replies=["451 4.3.0 Try again later"])
    port = await smtp_server(sink)
    notifier = SmtpNotifier(
        "127.0.0.1", port, sender="ivr@hotline.test", domain="sms.example", backoff_s=0.01
    )
    await notifier.send(message())
    assert sink.data_calls == 2
    assert len(sink.envelopes) == 1


async def test_smtp_5xx_fails_at_once(smtp_server: Callable[[MailSink], Awaitable[int]]) -> None:
    sink = MailSink(replies=["554 5.7.1 Rejected"] * 5)
    port = await smtp_server(sink)
    notifier = SmtpNotifier(
        "127.0.0.1", port, sender="ivr@hotline.test", domain="sms.example", backoff_s=0.01
    )
    with pytest.raises(NotifyError, match="554") as info:
        await notifier.send(message())
    assert info.value.attempts == 1
    assert sink.data_calls == 1


async def test_smtp_bad_login_fails_without_leaking_password(
    smtp_server: Callable[[MailSink], Awaitable[int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.notify")
    sink = MailSink()
    port = await smtp_server(sink)
    notifier = SmtpNotifier(
        "127.0.0.1",
        port,
        sender="ivr@hotline.test",
        domain="sms.example",
        username="ivr",
        password=PASSWORD,
        backoff_s=0.01,
    )
    with pytest.raises(NotifyError) as info:
        await notifier.send(message())
    assert info.value.attempts == 1  # 535 is permanent
    assert "535" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert not sink.envelopes
    for record in caplog.records:
        assert PASSWORD not in str(vars(record))


async def test_smtp_good_login_delivers(smtp_server: Callable[[MailSink], Awaitable[int]]) -> None:
    sink = MailSink()
    port = await smtp_server(sink)
    notifier = SmtpNotifier(
        "127.0.0.1",
        port,
        sender="ivr@hotline.test",
        domain="sms.example",
        username="ivr",
        password="right-password",
    )
    await notifier.send(message())
    assert len(sink.envelopes) == 1
