"""The agent desktop in a real browser (Debian's Chromium, Playwright) against real
Asterisk, the project's Mosquitto over WebSockets with per-session logins, and sipp
phones: the pop card while the phone rings, pause and ready through AMI, wrap-up
with a disposition that ``hotline calls show`` shows, a reload mid-call, a page of
another agent refused by the broker, and a broker restart.

The screenshots of the ringing card and the wrap-up form go to docs/images/
(docs/agent-desktop.md shows them).  Run only as
``flock /tmp/hotline-live.lock .venv/bin/pytest tests/live/…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Page

from cti import setup as cti_feature
from cti.desktop import setup as desktop_feature
from harness.browser import chromium
from harness.mqtt import broker_down, broker_up, project_broker_env
from harness.sipp import Agent, Keys, Pause, Step, run_caller
from harness.wait import wait_for
from hotline.config import Config
from hotline.records.audit import AuditLog
from hotline.records.customers import CustomerDirectory
from hotline.records.interactions import InteractionStore
from hotline.records.users import Users
from hotline.storage.db import Database
from hotline.web import build_web_app, serving
from tests.live.conftest import live_config
from tests.support.paths import REPO

pytestmark = pytest.mark.asterisk

IMAGES = REPO / "docs" / "images"
WRAPUP_S = 60.0  # long enough to fill in the form; the agent finishes it early
PASSWORDS = {"ann": "ann-password-1", "bob": "bob-password-1"}
# An unknown caller (no PIN asked): 1 for billing, then 0 for an agent; then
# stays on the line while the agent's phone rings (answer delay) and talks.
BILLING_CALL: list[Step] = [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(9000)]
# Alice (a known customer, demo PIN 2468): her PIN, "something else" at the bill
# offer, billing, an agent; then on the line while the phone rings and she talks.
ALICE = "5551234"
ALICE_CALL: list[Step] = [
    Pause(3500),
    Keys("2468#"),
    Pause(9000),
    Keys("2"),
    Pause(1500),
    Keys("1"),
    Pause(2500),
    Keys("0"),
    Pause(9000),
]


@dataclass
class Site:
    url: str
    cti: cti_feature.Cti
    cfg: Config
    db: Database


@pytest.fixture
async def site(
    live_records: tuple[Database, CustomerDirectory, InteractionStore],
    live_server: object,
    project_broker: Config,
    tmp_path: object,
) -> AsyncIterator[Site]:
    """``hotline serve``'s CTI, agent desktop and web application on the demo's HTTP
    address (the broker's WebSockets listener accepts pages from that origin)."""
    db, directory, interactions = live_records
    users = Users(db)
    existing = {name for name, _role in await users.list()}
    for name, agent in (("ann", "1001"), ("bob", "1002")):
        if name not in existing:
            await users.add(name, "agent", PASSWORDS[name], agent=agent)
    tag = uuid.uuid4().hex[:8]
    cfg = live_config(
        **project_broker_env(project_broker),
        HOTLINE_MQTT__PREFIX=f"hotline/test-web-{tag}",
        HOTLINE_MQTT__CLIENT_ID=f"hotline-test-web-{tag}",
        HOTLINE_AMI__RECONNECT_MIN_S="0.2",
        HOTLINE_DESK__WRAPUP_S=str(WRAPUP_S),
    )
    secret = (REPO / ".run" / "ami_secret").read_text().strip()
    audit = await asyncio.to_thread(AuditLog.from_config, db, cfg)
    async with contextlib.AsyncExitStack() as stack:
        cti = await stack.enter_async_context(
            cti_feature.setup(cfg, cti_feature.CtiDeps(directory, interactions, secret))
        )
        desktop = await stack.enter_async_context(desktop_feature.setup(cfg, cti))
        app = build_web_app(
            users,
            audit,
            routes=[desktop.routes],
            session_hooks=[desktop.sessions],
            connect_src=desktop.connect_src,
        )
        await stack.enter_async_context(serving(app, cfg.http.host, cfg.http.port))
        await cti.connect()
        await wait_for(
            lambda: cti.ami.logged_in and {"1001", "1002"} <= set(cti.state.agents),
            timeout=10,
            what="the CTI logged in, agents known",
        )
        try:
            yield Site(f"http://{cfg.http.host}:{cfg.http.port}", cti, cfg, db)
        finally:
            for agent in ("1001", "1002"):
                with contextlib.suppress(Exception):
                    await cti.ami.queue_pause(f"PJSIP/agent{agent}", False)


async def sign_in(page: Page, site: Site, name: str) -> None:
    await page.goto(f"{site.url}/login")
    await page.fill('input[name="name"]', name)
    await page.fill('input[name="password"]', PASSWORDS[name])
    await page.click('button[type="submit"]')
    await page.wait_for_url("**/agent")
    await page.get_by_test_id("connection").filter(has_text="live").wait_for(timeout=15_000)


async def paused(site: Site, agent: str) -> tuple[str, str]:
    """(Paused, PausedReason) as Asterisk reports the agent (QueueStatus)."""
    reply = await site.cti.ami.action({"Action": "QueueStatus", "Member": f"PJSIP/agent{agent}"})
    member = next(m for m in reply if m.get("Event") == "QueueMember")
    return str(member.get("Paused")), str(member.get("PausedReason", ""))


def calls_show(site: Site, call_id: str) -> dict[str, object]:
    shown = subprocess.run(
        [str(REPO / ".venv/bin/hotline"), "calls", "show", call_id, "--json"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOTLINE_DATABASE__URL": site.db.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    data: dict[str, object] = json.loads(shown.stdout)
    return data


async def test_the_card_shows_while_the_phone_rings_then_wrap_up_is_stored(site: Site) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    await site.cti.desk.set_state("1002", "pause", "Break")  # only 1001 is rung
    caller = ALICE
    phone = Agent("1001", answer_delay_ms=5000)
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await sign_in(page, site, "ann")
        await phone.start()
        try:
            call = asyncio.create_task(run_caller(ALICE_CALL, number=caller))
            card = page.locator(f'[data-testid="screenpop"][data-caller="{caller}"]')
            await card.wait_for(timeout=40_000)
            # While the phone rings: before the sipp phone answers (5 s after it rang).
            state = await page.get_by_test_id("agent-state").inner_text()
            assert site.cti.state.agents["1001"].phase == "ringing", state
            timeline = await page.get_by_test_id("ivr-timeline").inner_text()
            assert "verify_caller → ****" in timeline and "billing_menu" in timeline
            assert "2468" not in await card.inner_text()  # the PIN, masked
            assert "Alice Martin" in await card.inner_text()
            await page.screenshot(path=str(IMAGES / "agent-desktop-ringing.png"))
            call_id = await card.get_attribute("data-call-id")
            assert call_id
            result = await call
            assert result.ok, result.stderr
        finally:
            await phone.stop()
        # The call is over: wrap-up (Asterisk says paused "Wrap-up"), the form shows.
        await page.get_by_test_id("wrapup").wait_for(timeout=15_000)
        assert await paused(site, "1001") == ("1", "Wrap-up")
        await page.select_option('[data-testid="wrapup-disposition"]', "Paid")
        await page.fill('[data-testid="wrapup-note"]', "Paid 42 by card, wants e-bills")
        await page.screenshot(path=str(IMAGES / "agent-desktop-wrapup.png"))
        await page.get_by_test_id("wrapup-done").click()
        await (
            page.get_by_test_id("agent-state").filter(has_text="available").wait_for(timeout=10_000)
        )
        assert (await paused(site, "1001"))[0] == "0"
        assert errors == []
    shown = calls_show(site, call_id)
    assert (shown["disposition"], shown["disposition_note"]) == (
        "Paid",
        "Paid 42 by card, wants e-bills",
    )


async def test_pause_from_the_page_is_what_asterisk_does_then_ready(site: Site) -> None:
    rung: list[tuple[str, str]] = []
    site.cti.bus.subscribe(
        "AgentCalled", lambda ev: rung.append((str(ev.get("CallerIDNum")), str(ev["MemberName"])))
    )
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        await sign_in(page, site, "ann")
        await page.select_option('select[name="reason"]', "Lunch")
        await page.get_by_test_id("state-pause").click()
        await page.get_by_test_id("agent-state").filter(has_text="paused").wait_for()
        assert await paused(site, "1001") == ("1", "Lunch")
        caller = "5550612"
        phones = [Agent("1001"), Agent("1002")]
        for p in phones:
            await p.start()
        try:
            result = await run_caller(
                [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(4000)], number=caller
            )
            assert result.ok, result.stderr
        finally:
            for p in phones:
                await p.stop()
        assert [who for number, who in rung if number == caller] == ["1002"]
        # A change made behind the page's back (here through AMI, as the Asterisk
        # CLI would) shows too: the page shows what Asterisk reports.
        await site.cti.ami.queue_pause("PJSIP/agent1001", False)
        await page.get_by_test_id("agent-state").filter(has_text="available").wait_for()
        await page.select_option('select[name="reason"]', "Break")
        await page.keyboard.press("Alt+p")
        await page.get_by_test_id("agent-state").filter(has_text="paused").wait_for()
        await page.get_by_test_id("state-ready").click()
        await page.get_by_test_id("agent-state").filter(has_text="available").wait_for()
        assert (await paused(site, "1001"))[0] == "0"
        # Leave the queues, then join them again: QueueRemove / QueueAdd in Asterisk.
        try:
            await page.get_by_test_id("state-logout").click()
            await page.locator("#phase").filter(has_text="logged out").wait_for()
            reply = await site.cti.ami.action(
                {"Action": "QueueStatus", "Member": "PJSIP/agent1001"}
            )
            assert not [m for m in reply if m.get("Event") == "QueueMember"]
            await page.get_by_test_id("state-login").click()
            await page.get_by_test_id("agent-state").filter(has_text="available").wait_for()
            assert (await paused(site, "1001"))[0] == "0"
        finally:
            # The demo's ring order (linear: the order members were added) back.
            subprocess.run([str(REPO / "scripts" / "sandbox.sh"), "members"], check=True)


async def test_a_reload_mid_call_restores_the_card_and_the_state(site: Site) -> None:
    await site.cti.desk.set_state("1002", "pause", "Break")
    caller = "5550613"
    phone = Agent("1001", answer_delay_ms=1000)
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        await sign_in(page, site, "ann")
        await phone.start()
        try:
            call = asyncio.create_task(run_caller(BILLING_CALL, number=caller))
            card = page.locator(f'[data-testid="screenpop"][data-caller="{caller}"]')
            await card.wait_for(timeout=20_000)
            await wait_for(
                lambda: site.cti.state.agents["1001"].phase == "talking", 10, what="talking"
            )
            await page.reload()
            await page.get_by_test_id("connection").filter(has_text="live").wait_for()
            await card.wait_for(timeout=5_000)  # the card again, from the server
            assert await page.get_by_test_id("agent-state").text_content() in ("busy", "on_hold")
            assert (await call).ok
        finally:
            await phone.stop()
        await page.get_by_test_id("wrapup").wait_for(timeout=15_000)
        await page.get_by_test_id("wrapup-done").click()
        await page.get_by_test_id("agent-state").filter(has_text="available").wait_for()


async def test_another_agents_page_is_refused_by_the_broker(site: Site) -> None:
    """bob's page (1002) asks the broker for 1001's topic: the broker says no, and
    1001's pop never reaches it."""
    prefix = site.cfg.mqtt.prefix
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, site, "bob")
        answer = await page.evaluate(
            "f => window.hotlineDesk.client.subscribe([f])", f"{prefix}/agents/1001/#"
        )
        assert answer == [{"filter": f"{prefix}/agents/1001/#", "granted": False}]
        await site.cti.desk.set_state("1002", "pause", "Break")
        caller = "5550614"
        phone = Agent("1001")
        await phone.start()
        try:
            result = await run_caller(
                [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(4000)], number=caller
            )
            assert result.ok, result.stderr
        finally:
            await phone.stop()
        await asyncio.sleep(1)
        assert await page.locator('[data-testid="screenpop"]').count() == 0


async def test_the_page_reconnects_after_a_broker_restart(site: Site) -> None:
    await site.cti.desk.set_state("1002", "pause", "Break")
    async with chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, site, "ann")
        await asyncio.to_thread(broker_down)
        await page.get_by_test_id("connection").filter(has_text="reconnecting").wait_for()
        started = time.monotonic()
        await asyncio.to_thread(broker_up)
        await page.get_by_test_id("connection").filter(has_text="live").wait_for(timeout=30_000)
        assert time.monotonic() - started < 30
        await wait_for(lambda: site.cti.publisher.connected, 20, what="the server back")
        caller = "5550615"
        phone = Agent("1001")
        await phone.start()
        try:
            result = await run_caller(
                [Pause(1500), Keys("1"), Pause(2500), Keys("0"), Pause(4000)], number=caller
            )
            assert result.ok, result.stderr
        finally:
            await phone.stop()
        await page.locator(f'[data-testid="screenpop"][data-caller="{caller}"]').wait_for(
            timeout=10_000
        )
