"""The one web application: sessions, ``/health``, and the routes features add.

Features (the recordings API today; the agent desktop and the consoles next)
hand the composition root a :data:`Routes` function; this module owns what
they share: login, bearer sessions, the authenticated actor on each request,
the audit of refused requests, and the health report.  Bound to loopback
unless configured; put TLS in front (a reverse proxy) before exposing it.

    GET  /health        200 when every part is connected, else 503 (no session)
    POST /api/session   {"name": ..., "password": ...} -> {"token", "role", "expires_at"}
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from hotline.records.audit import AuditLog
from hotline.records.users import Actor, Users

ACTOR_KEY = web.RequestKey("actor", Actor)

# What each part of the server says about itself: {"connected": bool, ...}.
HealthReport = Mapping[str, Mapping[str, object]]
# A feature's routes: called once on the application before it starts.
Routes = Callable[[web.Application], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that answer without a session.
PUBLIC_PATHS = frozenset({"/api/session", "/health"})


@dataclass
class _Session:
    actor: Actor
    expires: float


class Sessions:
    """Bearer tokens in memory, stored only as hashes; they expire."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._by_hash: dict[str, _Session] = {}

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, actor: Actor) -> tuple[str, float]:
        token = secrets.token_urlsafe(32)
        expires = time.time() + self.ttl_s
        self._by_hash[self._key(token)] = _Session(actor, expires)
        return token, expires

    def lookup(self, token: str) -> tuple[Actor | None, bool]:
        """(actor, expired)."""
        s = self._by_hash.get(self._key(token))
        if s is None:
            return None, False
        if s.expires < time.time():
            del self._by_hash[self._key(token)]
            return None, True
        return s.actor, False


def error(status: int, message: str) -> web.Response:
    """The API's one error shape: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def build_web_app(
    users: Users,
    audit: AuditLog,
    *,
    session_ttl_s: float = 8 * 3600,
    health: Callable[[], HealthReport] | None = None,
    routes: Sequence[Routes] = (),
) -> web.Application:
    sessions = Sessions(session_ttl_s)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        actor, expired = sessions.lookup(token) if token else (None, False)
        if actor is None:
            why = "session expired" if expired else "no valid session"
            await audit.record("anonymous", "http", request.path[:200], "denied", {"why": why})
            return error(401, why + ": POST /api/session first")
        request[ACTOR_KEY] = actor
        return await handler(request)

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return error(400, 'send JSON {"name": ..., "password": ...}')
        actor = await users.authenticate(name, password)
        if actor is None:
            await audit.record(name[:64], "login", "", "denied")
            return error(401, "wrong name or password")
        token, expires = sessions.open(actor)
        await audit.record(actor.name, "login", "", "ok")
        return web.json_response(
            {
                "token": token,
                "role": sorted(actor.roles)[0],
                "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
            }
        )

    async def health_check(request: web.Request) -> web.Response:
        """For load balancers and monitoring: 200 when every part is connected, else 503."""
        report = health() if health is not None else {}
        ok = all(part.get("connected", True) for part in report.values())
        return web.json_response({"ok": ok, **report}, status=200 if ok else 503)

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/health", health_check)
    app.router.add_post("/api/session", login)
    for add in routes:
        add(app)
    return app


async def start_api(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[web.AppRunner]:
    """The application listening on host:port until the block ends."""
    runner = await start_api(app, host, port)
    try:
        yield runner
    finally:
        await runner.cleanup()
