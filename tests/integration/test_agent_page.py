"""The agent page in a real browser (Debian's Chromium via Playwright) against the real
web application: login, the page's hooks, the session's broker login, CSRF on
changes.  The desk and the broker login issuer are recording stand-ins here; the
page against real Asterisk and the project's broker is tests/live."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from cti.desk import UnknownAgent
from cti.desktop.http import DesktopSessions, DesktopSettings, desktop_routes
from harness.browser import chromium
from hotline.records.audit import AuditLog
from hotline.records.users import Users
from hotline.storage.db import Database
from hotline.web import build_web_app

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@dataclass
class Login:
    username: str
    password: str
    client_id_prefix: str


@dataclass
class Issuer:
    issued: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)

    async def issue(self, agent: str, queues: Sequence[str]) -> Login:
        n = len(self.issued)
        self.issued.append(agent)
        return Login(f"web-{agent}-{n}", f"secret-password-{n}", f"desk-{agent}")

    async def revoke(self, username: str) -> None:
        self.revoked.append(username)


@dataclass
class Desk:
    changes: list[tuple[str, ...]] = field(default_factory=list)

    async def set_state(self, agent: str, state: Any, reason: str | None = None) -> None:
        self.changes.append(("state", agent, state, reason or ""))

    async def finish_wrapup(self, agent: str) -> None:
        self.changes.append(("finish", agent))

    async def extend_wrapup(self, agent: str, seconds: float) -> None:
        self.changes.append(("extend", agent, str(seconds)))

    async def dispose(self, agent: str, call_id: str, disposition: str, note: str = "") -> None:
        self.changes.append(("dispose", agent, call_id, disposition, note))

    def snapshot(self, agent: str) -> Mapping[str, Any]:
        if agent not in ("1001", "1002"):
            raise UnknownAgent(f"no agent {agent}")
        return {"state": {"agent": agent, "state": "available", "phase": "ready"}}


@pytest.fixture
async def site(db: Database, tmp_path: Path) -> AsyncIterator[tuple[TestServer, Issuer, Desk]]:
    users = Users(db)
    await users.add("ann", "agent", "ann-password-1", agent="1001")
    await users.add("carol", "compliance", "carol-password-1")
    await users.add("zed", "agent", "zed-password-1", agent="1009")  # Asterisk has no 1009
    audit = AuditLog.open(db, tmp_path / "keys" / "audit.key", tmp_path / "audit.jsonl")
    issuer, desk = Issuer(), Desk()
    settings = DesktopSettings(
        ws_url="ws://127.0.0.1:9",  # nothing listens: the page shows it is reconnecting
        prefix="hotline",
        pause_reasons=["Break", "Lunch"],
        dispositions={"billing": ["Paid", "Dispute"]},
        wrapup_s=30,
        queues_of=lambda agent: ["billing", "support"],
    )
    sessions = DesktopSessions(issuer, settings.queues_of)
    app = build_web_app(
        users,
        audit,
        session_hooks=[sessions],
        routes=[desktop_routes(desk, sessions, settings)],
        connect_src=["ws://127.0.0.1:9"],
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, issuer, desk
    await server.close()


async def test_an_agent_signs_in_and_drives_the_page(
    site: tuple[TestServer, Issuer, Desk], tmp_path: Path
) -> None:
    server, issuer, desk = site
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(str(server.make_url("/agent")))
        assert page.url.endswith("/login")  # no session: the login page first
        await page.fill('input[name="name"]', "ann")
        await page.fill('input[name="password"]', "ann-password-1")
        await page.click('button[type="submit"]')
        await page.wait_for_url("**/agent")
        await page.get_by_test_id("agent-state").filter(has_text="available").wait_for()
        assert await page.get_by_test_id("connection").inner_text() == "reconnecting"
        assert issuer.issued == ["1001"]
        # The broker password is nowhere in the page or its address.
        assert "secret-password" not in await page.content() and "secret" not in page.url
        await page.select_option('select[name="reason"]', "Lunch")
        await page.get_by_test_id("state-pause").click()
        await page.get_by_test_id("state-ready").click()
        await page.keyboard.press("Alt+p")
        await page.wait_for_function("document.readyState === 'complete'")
        await page.screenshot(path=str(tmp_path / "agent.png"))
        for _ in range(50):
            if len(desk.changes) >= 3:
                break
            await page.wait_for_timeout(100)
        assert desk.changes == [
            ("state", "1001", "pause", "Lunch"),
            ("state", "1001", "ready", ""),
            ("state", "1001", "pause", "Lunch"),
        ]
        await page.get_by_test_id("signout").click()
        await page.wait_for_url("**/login")
        assert errors == []
    assert issuer.revoked == ["web-1001-0"]


async def test_a_forged_change_without_the_token_never_reaches_the_desk(
    site: tuple[TestServer, Issuer, Desk],
) -> None:
    server, _issuer, desk = site
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/login")))
        await page.fill('input[name="name"]', "ann")
        await page.fill('input[name="password"]', "ann-password-1")
        await page.click('button[type="submit"]')
        await page.wait_for_url("**/agent")
        status = await page.evaluate(
            """async () => (await fetch('/api/agent/state', {method: 'POST',
                 headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({state: 'logout'})})).status"""
        )
        assert status == 403
    assert desk.changes == []


async def test_a_compliance_officer_cannot_open_the_agent_page(
    site: tuple[TestServer, Issuer, Desk],
) -> None:
    server, issuer, _desk = site
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url("/login")))
        await page.fill('input[name="name"]', "carol")
        await page.fill('input[name="password"]', "carol-password-1")
        await page.click('button[type="submit"]')
        await page.wait_for_url(str(server.make_url("/")))
        response = await page.goto(str(server.make_url("/agent")))
        assert response is not None and response.status == 403
    assert issuer.issued == []


async def test_an_agent_asterisk_does_not_know_still_gets_the_page(
    site: tuple[TestServer, Issuer, Desk],
) -> None:
    server, issuer, _desk = site
    async with chromium() as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(str(server.make_url("/login")))
        await page.fill('input[name="name"]', "zed")
        await page.fill('input[name="password"]', "zed-password-1")
        await page.click('button[type="submit"]')
        await page.wait_for_url("**/agent")
        await page.get_by_test_id("connection").filter(has_text="reconnecting").wait_for()
        assert "1009" in await page.locator("#who").inner_text()
        assert await page.locator("#notice").is_hidden()  # no error shown
        assert errors == []
    assert issuer.issued == ["1009"]
