"""The agent desktop's routes and the broker login each browser session gets.

    GET  /agent                   the page (role agent, bound to an agent)
    GET  /api/agent/session       the broker login of this session, the agent's queues,
                                  pause reasons, dispositions, and what is going on now
    POST /api/agent/state         {"state": "ready" | "pause" | "logout" | "login", "reason"}
    POST /api/agent/wrapup        {"action": "finish" | "extend", "seconds"}
    POST /api/agent/disposition   {"call_id", "disposition", "note"}

Changes need the session's CSRF token (hotline.web).  The page reads the
broker with a login issued for its session alone (:class:`DesktopSessions`):
the broker, not the page, limits it to the agent's own topics and its queues'
stats, and the login is revoked when the session ends.  It is handed to the
page only in the JSON of ``/api/agent/session`` (never in a URL or the page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from cti.desk import DeskError
from cti.desktop.page import agent_page
from hotline.records.users import Actor
from hotline.web import ACTOR_KEY, SESSION_KEY, Routes, Session, error

log = logging.getLogger("hotline.desktop")

STATIC = Path(__file__).with_name("static")
STATES = ("ready", "pause", "logout", "login")
MAX_NOTE = 1000


class BrokerLogin(Protocol):
    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def client_id_prefix(self) -> str: ...


class LoginIssuer(Protocol):
    """Issues and revokes per-session broker logins (the dynamic-security client)."""

    async def issue(self, agent: str, queues: Sequence[str]) -> BrokerLogin: ...

    async def revoke(self, username: str) -> None: ...


class Desk(Protocol):
    """What the desktop asks of the CTI (cti.desk.AgentDesk)."""

    async def set_state(self, agent: str, state: Any, reason: str | None = None) -> None: ...

    async def finish_wrapup(self, agent: str) -> None: ...

    async def extend_wrapup(self, agent: str, seconds: float) -> None: ...

    async def dispose(self, agent: str, call_id: str, disposition: str, note: str = "") -> None: ...

    def snapshot(self, agent: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class DesktopSettings:
    ws_url: str  # the broker's WebSockets listener, as the browser reaches it
    prefix: str  # the MQTT topic prefix
    pause_reasons: Sequence[str]
    dispositions: Mapping[str, Sequence[str]]
    wrapup_s: float
    queues_of: Callable[[str], list[str]]  # the agent's queues, from the CTI's state


class DesktopSessions:
    """A broker login per browser session of an agent: issued at login, revoked at its end."""

    def __init__(self, issuer: LoginIssuer, queues_of: Callable[[str], list[str]]) -> None:
        self._issuer = issuer
        self._queues_of = queues_of
        self._logins: dict[str, BrokerLogin] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def opened(self, session: Session) -> None:
        agent = session.actor.agent
        if agent is None or "agent" not in session.actor.roles:
            return
        try:
            await self.login_for(session)
        except Exception:
            # The page asks again (GET /api/agent/session); a broker that is down
            # must not keep the agent from signing in.
            log.exception("could not issue a broker login for agent %s", agent)

    async def login_for(self, session: Session, *, renew: bool = False) -> BrokerLogin:
        """The session's broker login; with ``renew`` a new one (the broker refused the
        old one, e.g. after it restarted without it), the old one revoked."""
        found = self._logins.get(session.id)
        if found is not None and not renew:
            return found
        if found is not None:
            del self._logins[session.id]
            await self._revoke(found.username)
        agent = session.actor.agent
        assert agent is not None
        login = await self._issuer.issue(agent, self._queues_of(agent))
        self._logins[session.id] = login
        return login

    def closed(self, session: Session) -> None:
        login = self._logins.pop(session.id, None)
        if login is None:
            return
        task = asyncio.get_running_loop().create_task(self._revoke(login.username))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _revoke(self, username: str) -> None:
        try:
            await self._issuer.revoke(username)
        except Exception:
            log.exception("could not revoke broker login %s", username)

    async def close(self) -> None:
        """Revoke every login still issued (the server stops)."""
        for login in list(self._logins.values()):
            await self._revoke(login.username)
        self._logins.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _agent_of(actor: Actor) -> str | None:
    return actor.agent if "agent" in actor.roles else None


async def _json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return error(400, "send a JSON object")
    if not isinstance(body, dict):
        return error(400, "send a JSON object")
    return body


def desktop_routes(desk: Desk, sessions: DesktopSessions, settings: DesktopSettings) -> Routes:
    async def page(request: web.Request) -> web.StreamResponse:
        if _agent_of(request[ACTOR_KEY]) is None:
            return web.Response(
                status=403,
                text="This page is for users of role agent bound to an agent "
                "(hotline users add NAME --role agent --agent 1001).",
            )
        return agent_page()

    async def session(request: web.Request) -> web.StreamResponse:
        agent = _agent_of(request[ACTOR_KEY])
        if agent is None:
            return error(403, "not an agent")
        try:
            renew = request.query.get("renew") == "1"
            login = await sessions.login_for(request[SESSION_KEY], renew=renew)
        except Exception as e:
            log.warning("broker login for agent %s failed: %s", agent, e)
            return error(503, "the broker cannot issue a login now; retrying")
        queues = settings.queues_of(agent)
        p = settings.prefix
        return web.json_response(
            {
                "agent": agent,
                "queues": queues,
                "mqtt": {
                    "url": settings.ws_url,
                    "username": login.username,
                    "password": login.password,
                    "client_id_prefix": login.client_id_prefix,
                    "topics": [f"{p}/agents/{agent}/#", *(f"{p}/queues/{q}/stats" for q in queues)],
                },
                "pause_reasons": list(settings.pause_reasons),
                "dispositions": {q: list(d) for q, d in settings.dispositions.items()},
                "wrapup_s": settings.wrapup_s,
                "snapshot": _snapshot(desk, agent),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def state(request: web.Request) -> web.StreamResponse:
        agent = _agent_of(request[ACTOR_KEY])
        if agent is None:
            return error(403, "not an agent")
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        wanted, reason = body.get("state"), body.get("reason")
        if wanted not in STATES:
            return error(400, f"state must be one of {', '.join(STATES)}")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 64):
            return error(400, "reason must be a short text")
        if wanted == "pause" and reason not in settings.pause_reasons:
            return error(400, f"reason must be one of {', '.join(settings.pause_reasons)}")
        return await _apply(lambda: desk.set_state(agent, wanted, reason))

    async def wrapup(request: web.Request) -> web.StreamResponse:
        agent = _agent_of(request[ACTOR_KEY])
        if agent is None:
            return error(403, "not an agent")
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        action = body.get("action")
        if action == "finish":
            return await _apply(lambda: desk.finish_wrapup(agent))
        seconds = body.get("seconds", 30)
        if action != "extend" or not isinstance(seconds, int | float) or not 1 <= seconds <= 600:
            return error(
                400, 'send {"action": "finish"} or {"action": "extend", "seconds": 1..600}'
            )
        return await _apply(lambda: desk.extend_wrapup(agent, float(seconds)))

    async def disposition(request: web.Request) -> web.StreamResponse:
        agent = _agent_of(request[ACTOR_KEY])
        if agent is None:
            return error(403, "not an agent")
        body = await _json(request)
        if isinstance(body, web.Response):
            return body
        call_id, chosen, note = body.get("call_id"), body.get("disposition"), body.get("note", "")
        if not (isinstance(call_id, str) and 0 < len(call_id) <= 64):
            return error(400, "call_id must be the call's id")
        if not (isinstance(chosen, str) and 0 < len(chosen) <= 64):
            return error(400, "disposition must be one of the queue's dispositions")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            return error(400, f"note must be text of at most {MAX_NOTE} characters")
        return await _apply(lambda: desk.dispose(agent, call_id, chosen, note))

    def add(app: web.Application) -> None:
        app.router.add_get("/agent", page)
        app.router.add_get("/api/agent/session", session)
        app.router.add_post("/api/agent/state", state)
        app.router.add_post("/api/agent/wrapup", wrapup)
        app.router.add_post("/api/agent/disposition", disposition)
        app.router.add_static("/static/agent/", STATIC, append_version=False)

    return add


def _snapshot(desk: Desk, agent: str) -> Mapping[str, Any] | None:
    """What is going on now; None for an agent Asterisk has not reported (yet): the
    page still loads and learns the state from the broker when it comes."""
    try:
        return desk.snapshot(agent)
    except DeskError as e:
        log.info("no snapshot for agent %s: %s", agent, e)
        return None


async def _apply(change: Callable[[], Awaitable[None]]) -> web.StreamResponse:
    """Run a desk change: a refusal (:class:`DeskError`) answers with its own status and
    message for the agent; anything else is logged and answered 502."""
    try:
        await change()
    except DeskError as e:
        return error(e.status, str(e))
    except Exception:
        log.exception("agent desk change failed")
        return error(502, "the change could not be made; try again")
    return web.json_response({"ok": True})
