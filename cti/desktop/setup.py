"""The agent desktop as one feature: its routes, and a broker login per browser session.

Built by the composition root when the CTI runs and the web application is
served.  The logins are issued by the project broker's dynamic-security
plugin (:mod:`cti.dynsec`); without its admin login configured the page still
loads and says the broker cannot issue a login (503 on /api/agent/session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cti.desktop.http import BrokerLogin, DesktopSessions, DesktopSettings, desktop_routes
from cti.dynsec import DynsecClient, DynsecError
from cti.setup import Cti
from hotline.config import Config
from hotline.web import Routes

log = logging.getLogger("hotline.desktop")


class _NoBroker:
    """Stands in for the issuer when the broker's admin login is not configured."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def issue(self, agent: str, queues: Sequence[str]) -> BrokerLogin:
        raise DynsecError(self.why)

    async def revoke(self, username: str) -> None:
        return None


@dataclass(frozen=True)
class Desktop:
    routes: Routes
    sessions: DesktopSessions  # the web application's SessionHooks
    connect_src: list[str]  # the broker's WebSockets origin, for the pages' CSP


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@contextlib.asynccontextmanager
async def setup(cfg: Config, cti: Cti) -> AsyncIterator[Desktop]:
    try:
        # Reads the admin password file: file work, off the event loop.
        issuer: DynsecClient | _NoBroker = await asyncio.to_thread(DynsecClient.from_config, cfg)
    except DynsecError as e:
        log.warning("agent desktop: no broker logins can be issued: %s", e)
        issuer = _NoBroker(str(e))

    def queues_of(agent: str) -> list[str]:
        known = cti.state.agents.get(agent)
        now = set(known.queues) if known is not None else set()
        return sorted(now | set(cfg.desk.memberships.get(agent, [])))

    settings = DesktopSettings(
        ws_url=cfg.broker.websocket_url,
        prefix=cfg.mqtt.prefix,
        pause_reasons=list(cfg.desk.pause_reasons),
        dispositions={q: list(d) for q, d in cfg.desk.dispositions.items()},
        wrapup_s=cfg.desk.wrapup_s,
        queues_of=queues_of,
    )
    sessions = DesktopSessions(issuer, queues_of)
    try:
        yield Desktop(
            desktop_routes(cti.desk, sessions, settings),
            sessions,
            [_origin(cfg.broker.websocket_url)],
        )
    finally:
        await sessions.close()
