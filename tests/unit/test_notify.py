"""Notifiers against real sockets: an aiohttp web server (SMTP: tests/integration)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hotline.deflection.notify import (
    FileNotifier,
    Notifier,
    NotifyError,
    SmtpNotifier,
    WebhookNotifier,
    build_notifier,
    close_notifier,
)
from tests.support.notify import KOREAN, NUMBER, PASSWORD, TOKEN, message

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def http_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start an aiohttp server on 127.0.0.1, port 0; returns its URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/hook", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- webhook -------------------------------------------------------------------------------


async def test_webhook_posts_json_with_bearer(
    http_server: Callable[[Handler], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.notify")
    seen: list[tuple[dict[str, Any], str | None, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(
            (await request.json(), request.headers.get("Authorization"), request.content_type)
        )
        return web.json_response({"ok": True})

    url = await http_server(hook)
    async with WebhookNotifier(url, token=TOKEN, backoff_s=0.01) as notifier:
        await notifier.send(message(KOREAN))

    assert len(seen) == 1
    body, auth, ctype = seen[0]
    assert auth == f"Bearer {TOKEN}"
    assert ctype == "application/json"
    sent_at = datetime.fromisoformat(body.pop("sent_at"))
    assert sent_at.tzinfo is not None
    assert body == {
        "to": NUMBER,
        "text": KOREAN,
        "call_id": "call-1",
        "language": "ko",
        "kind": "pay_bill",
    }
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert infos[0].__dict__["notifier"] == "webhook"
    assert infos[0].__dict__["to"] == "********5678"


async def test_webhook_without_token_sends_no_authorization(
    http_server: Callable[[Handler], Awaitable[str]],
) -> None:
    headers: list[str | None] = []

    async def hook(request: web.Request) -> web.Response:
        headers.append(request.headers.get("Authorization"))
        return web.Response(status=204)

    async with WebhookNotifier(await http_server(hook)) as notifier:
        await notifier.send(message())
    assert headers == [None]


async def test_webhook_retries_503_then_delivers(
    http_server: Callable[[Handler], Awaitable[str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.notify")
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=503 if hits <= 2 else 200)

    async with WebhookNotifier(await http_server(hook), backoff_s=0.01) as notifier:
        await notifier.send(message())

    assert hits == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.__dict__["attempt"] for r in warnings] == [1, 2]
    assert all("503" in r.__dict__["error"] for r in warnings)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.__dict__["attempt"] for r in infos] == [3]


async def test_webhook_retries_429_honouring_retry_after(
    http_server: Callable[[Handler], Awaitable[str]],
) -> None:
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        if hits == 1:
            return web.Response(status=429, headers={"Retry-After": "0"})
        return web.Response(status=200)

    async with WebhookNotifier(await http_server(hook), backoff_s=0.01) as notifier:
        await notifier.send(message())
    assert hits == 2


async def test_webhook_400_fails_at_once(http_server: Callable[[Handler], Awaitable[str]]) -> None:
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=400, text=f"bad request, you sent {request.headers}")

    async with WebhookNotifier(
        await http_server(hook), token=TOKEN, attempts=5, backoff_s=0.01
    ) as notifier:
        with pytest.raises(NotifyError) as info:
            await notifier.send(message())

    assert hits == 1
    err = info.value
    assert err.attempts == 1
    assert err.notifier == "webhook"
    assert "400" in str(err)
    assert "after 1 attempt" in str(err)
    assert TOKEN not in str(err)


async def test_webhook_connection_refused_uses_all_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hotline.notify")
    url = f"http://127.0.0.1:{free_port()}/hook?key={TOKEN}"
    async with WebhookNotifier(url, token=TOKEN, attempts=3, backoff_s=0.01) as notifier:
        with pytest.raises(NotifyError) as info:
            await notifier.send(message())

    assert info.value.attempts == 3
    assert "after 3 attempt(s)" in str(info.value)
    assert "connect" in str(info.value).lower()
    assert TOKEN not in str(info.value)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.__dict__["attempt"] for r in warnings] == [1, 2, 3]
    assert "giving up" in warnings[-1].getMessage()
    assert not [r for r in caplog.records if r.levelno == logging.INFO]
    for record in caplog.records:
        assert TOKEN not in str(vars(record))


async def test_webhook_timeout_is_retried(http_server: Callable[[Handler], Awaitable[str]]) -> None:
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await asyncio.sleep(2)
        return web.Response(status=200)

    url = await http_server(hook)
    async with WebhookNotifier(url, timeout_s=0.2, attempts=2, backoff_s=0.01) as notifier:
        with pytest.raises(NotifyError, match="timed out") as info:
            await notifier.send(message())
    assert info.value.attempts == 2
    assert hits == 2


async def test_webhook_uses_a_given_session_and_leaves_it_open(
    http_server: Callable[[Handler], Awaitable[str]],
) -> None:
    import aiohttp

    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=200)

    url = await http_server(hook)
    async with aiohttp.ClientSession() as session:
        notifier = WebhookNotifier(url, session=session)
        await notifier.send(message())
        await notifier.close()
        assert not session.closed


# --- SMTP without a server ----------------------------------------------------------------


async def test_smtp_connection_refused_uses_all_attempts() -> None:
    notifier = SmtpNotifier(
        "127.0.0.1",
        free_port(),
        sender="ivr@hotline.test",
        domain="sms.example",
        timeout_s=2,
        attempts=2,
        backoff_s=0.01,
    )
    with pytest.raises(NotifyError, match="ConnectionRefused") as info:
        await notifier.send(message())
    assert info.value.attempts == 2


# --- file ----------------------------------------------------------------------------------


async def test_file_notifier_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "deep" / "links.jsonl"
    notifier = FileNotifier(path)
    await notifier.send(message(KOREAN))
    await asyncio.gather(*(notifier.send(message(f"link {i}\nsecond line")) for i in range(20)))

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 21
    records = [json.loads(line) for line in lines]
    assert records[0]["text"] == KOREAN
    assert records[0]["to"] == NUMBER
    assert set(records[0]) == {"to", "text", "call_id", "language", "kind", "sent_at"}
    assert sorted(r["text"] for r in records[1:]) == sorted(
        f"link {i}\nsecond line" for i in range(20)
    )


# --- secrets, masking, configuration -------------------------------------------------------


def test_reprs_hide_secrets(tmp_path: Path) -> None:
    webhook = WebhookNotifier(f"https://user:{PASSWORD}@sms.example/send?key={TOKEN}", token=TOKEN)
    smtp = SmtpNotifier(
        "mail.example",
        587,
        sender="ivr@example.com",
        domain="sms.example",
        username="ivr",
        password=PASSWORD,
        starttls=True,
    )
    for notifier in (webhook, smtp):
        text = repr(notifier)
        assert TOKEN not in text
        assert PASSWORD not in text
        assert "***" in text
    assert "sms.example/send" in repr(webhook)
    assert "ivr" in repr(smtp)
    assert "links.jsonl" in repr(FileNotifier(tmp_path / "links.jsonl"))


async def test_number_is_masked_in_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hotline.notify")
    await FileNotifier(tmp_path / "out.jsonl").send(message())
    url = f"http://127.0.0.1:{free_port()}/"
    async with WebhookNotifier(url, attempts=2, backoff_s=0.01) as webhook:
        with pytest.raises(NotifyError) as info:
            await webhook.send(message())
    assert NUMBER not in str(info.value)

    assert {r.levelname for r in caplog.records} == {"INFO", "WARNING"}
    digits = NUMBER.removeprefix("+")
    for record in caplog.records:
        dump = str(vars(record)) + record.getMessage()
        assert digits not in dump
        assert "12345678" not in dump
        assert record.__dict__["to"] == "********5678"


def test_link_message_validates_number() -> None:
    assert message(to="01012345678").to == "01012345678"
    with pytest.raises(ValueError, match=r"\*+5678") as info:
        message(to="010-1234-5678")
    assert "1234" not in str(info.value)
    with pytest.raises(ValueError):
        message(to="+82 10 1234 5678")


async def test_build_notifier(tmp_path: Path) -> None:
    webhook = build_notifier("webhook", {"url": "https://sms.example/send", "token": TOKEN})
    assert isinstance(webhook, WebhookNotifier)
    assert webhook.name == "webhook"
    smtp = build_notifier(
        "smtp",
        {"host": "mail.example", "sender": "ivr@x.example", "domain": "sms.example"},
    )
    assert isinstance(smtp, SmtpNotifier)
    assert smtp.port == 25
    tls = build_notifier(
        "smtp",
        {
            "host": "mail.example",
            "sender": "ivr@x.example",
            "domain": "sms.example",
            "starttls": True,
            "username": "ivr",
            "password": PASSWORD,
            "attempts": 5,
        },
    )
    assert isinstance(tls, SmtpNotifier)
    assert (tls.port, tls.attempts) == (587, 5)
    outbox = build_notifier("file", {"path": str(tmp_path / "o.jsonl")})
    assert isinstance(outbox, FileNotifier)
    for notifier in (webhook, smtp, tls, outbox):
        assert isinstance(notifier, Notifier)
        await close_notifier(notifier)


@pytest.mark.parametrize(
    ("kind", "options", "words"),
    [
        ("sms", {}, ["'sms'"]),
        ("webhook", {}, ["'webhook'", "'url'"]),
        ("webhook", {"url": ""}, ["'webhook'", "'url'"]),
        ("smtp", {"host": "h", "sender": "s@x"}, ["'smtp'", "'domain'"]),
        ("file", {}, ["'file'", "'path'"]),
        ("webhook", {"url": "https://x.example", "tokn": "t"}, ["'webhook'", "'tokn'"]),
        ("webhook", {"url": "https://x.example", "attempts": "3"}, ["'webhook'", "'attempts'"]),
        ("webhook", {"url": "https://x.example", "attempts": 0}, ["'webhook'", "attempts"]),
        ("webhook", {"url": "ftp://x.example"}, ["'webhook'", "url"]),
        ("smtp", {"host": "h", "sender": "s@x", "domain": "d", "starttls": "yes"}, ["'starttls'"]),
    ],
)
def test_build_notifier_rejects_bad_config(
    kind: str, options: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        build_notifier(kind, options)
    for word in words:
        assert word in str(info.value)


def test_build_notifier_errors_hide_secrets() -> None:
    options = {"url": "https://x.example", "token": 12345}
    with pytest.raises(ValueError, match="'token'") as info:
        build_notifier("webhook", options)
    assert "12345" not in str(info.value)
