"""Browser sessions: the one login page, HttpOnly SameSite=Strict cookies, CSRF on
every change, the idle timeout, logout, and what features keep per session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from hotline.records.audit import AuditLog
from hotline.records.users import Users
from hotline.storage.db import Database
from hotline.web import Session, build_web_app

SQLITE = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


class Hooks:
    """A feature that keeps something per session, as the agent desktop does."""

    def __init__(self) -> None:
        self.opened_for: list[str] = []
        self.closed_for: list[str] = []

    async def opened(self, session: Session) -> None:
        self.opened_for.append(session.actor.name)

    def closed(self, session: Session) -> None:
        self.closed_for.append(session.actor.name)


@pytest.fixture
async def site(db: Database, tmp_path: Path) -> AsyncIterator[tuple[TestServer, Hooks, AuditLog]]:
    users = Users(db)
    await users.add("ann", "agent", "ann-password-1", agent="1001")
    await users.add("carol", "compliance", "carol-password-1")
    audit = AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl")
    hooks = Hooks()
    app = build_web_app(users, audit, idle_s=1.0, session_hooks=[hooks])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, hooks, audit
    await server.close()


def client() -> aiohttp.ClientSession:
    # A cookie jar that keeps cookies for an IP address host, as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, server: TestServer, name: str, pw: str) -> str:
    """Sign in through the login form; the page it lands on."""
    async with http.post(
        server.make_url("/login"), data={"name": name, "password": pw}, allow_redirects=False
    ) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"]


@SQLITE
async def test_the_login_page_has_the_documented_fields(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, _, _ = site
    async with client() as http, http.get(server.make_url("/login")) as r:
        page = await r.text()
        assert r.status == 200 and r.content_type == "text/html"
        assert 'name="name"' in page and 'name="password"' in page and 'type="submit"' in page
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    async with (
        client() as http,
        http.get(server.make_url("/login"), headers={"Accept-Language": "ko-KR,ko;q=0.9"}) as r,
    ):
        assert "비밀번호" in await r.text()


@SQLITE
async def test_an_agent_lands_on_the_agent_page_with_a_strict_httponly_cookie(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, hooks, _ = site
    async with client() as http:
        async with http.post(
            server.make_url("/login"),
            data={"name": "ann", "password": "ann-password-1"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/agent"
            cookie = r.headers["Set-Cookie"]
        assert "hotline_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie and "Path=/" in cookie
        async with http.get(server.make_url("/api/me")) as r:
            me = await r.json()
        assert (me["name"], me["role"], me["agent"]) == ("ann", "agent", "1001")
        assert len(me["csrf"]) >= 24
    assert hooks.opened_for == ["ann"]
    # A compliance officer (no page yet) lands on the shared home page.
    async with client() as http:
        assert await sign_in(http, server, "carol", "carol-password-1") == "/"
        async with http.get(server.make_url("/")) as r:
            assert "carol" in await r.text()


@SQLITE
async def test_a_change_without_the_csrf_token_is_refused_and_audited(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, hooks, audit = site
    async with client() as http:
        await sign_in(http, server, "ann", "ann-password-1")
        async with http.get(server.make_url("/api/me")) as r:
            csrf = (await r.json())["csrf"]
        # What a hostile page could make the browser send: the cookie, no token.
        async with http.post(server.make_url("/logout"), allow_redirects=False) as r:
            assert r.status == 403
        async with http.post(
            server.make_url("/logout"),
            headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
        assert hooks.closed_for == []
        async with http.post(
            server.make_url("/logout"), headers={"X-CSRF-Token": csrf}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        async with http.get(server.make_url("/api/me")) as r:
            assert r.status == 401
    assert hooks.closed_for == ["ann"]
    denied = [e for e in await audit.entries(20) if e.action == "http" and e.result == "denied"]
    assert [e.detail.get("why") for e in denied if e.actor == "ann"] == ["csrf", "csrf"]


@SQLITE
async def test_login_from_another_site_and_wrong_passwords_are_refused(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, hooks, _ = site
    async with client() as http:
        async with http.post(
            server.make_url("/login"),
            data={"name": "ann", "password": "ann-password-1"},
            headers={"Origin": "http://evil.example"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403 and "Set-Cookie" not in r.headers
        async with http.post(
            server.make_url("/login"),
            data={"name": "ann", "password": "wrong-password"},
            allow_redirects=False,
        ) as r:
            assert r.status == 401 and 'data-testid="login-error"' in await r.text()
    assert hooks.opened_for == []


@SQLITE
async def test_an_idle_session_ends_and_its_pages_send_the_browser_to_login(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, hooks, _ = site
    async with client() as http:
        await sign_in(http, server, "ann", "ann-password-1")
        for _ in range(3):  # activity keeps it alive past the idle time
            await asyncio.sleep(0.5)
            async with http.get(server.make_url("/api/me")) as r:
                assert r.status == 200
        await asyncio.sleep(1.3)
        async with http.get(server.make_url("/api/me")) as r:
            assert r.status == 401 and "session expired" in (await r.json())["error"]
        async with http.get(server.make_url("/"), allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
    assert hooks.closed_for == ["ann"]


@SQLITE
async def test_a_bearer_client_needs_no_csrf_token(
    site: tuple[TestServer, Hooks, AuditLog],
) -> None:
    server, _, _ = site
    async with aiohttp.ClientSession() as http:
        async with http.post(
            server.make_url("/api/session"), json={"name": "ann", "password": "ann-password-1"}
        ) as r:
            token = (await r.json())["token"]
        async with http.post(
            server.make_url("/logout"),
            headers={"Authorization": f"Bearer {token}"},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with http.get(
            server.make_url("/api/me"), headers={"Authorization": f"Bearer {token}"}
        ) as r:
            assert r.status == 401
