"""HTTP API for compliance officers: sessions, search, metadata, audio with Range, export.

Every request that touches a recording goes through :class:`RecordingStore`,
so roles are enforced and every search and retrieval — allowed, refused or
failed — lands in the hash-chained audit log.  Bound to loopback unless
configured; put TLS in front (a reverse proxy) before exposing it.

    POST /api/session                  {"name": ..., "password": ...} -> {"token", "expires_at"}
    GET  /api/recordings?caller=&agent=&queue=&call_id=&since=&until=&limit=
    GET  /api/recordings/{id}          metadata
    GET  /api/recordings/{id}/audio    the WAV, with HTTP Range support
    GET  /api/recordings/{id}/export   the WAV as a download
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hotline.recordings.store import RecordingError, RecordingStore
from hotline.records.users import AccessDenied, Actor, Users

ACTOR_KEY = web.RequestKey("actor", Actor)


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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def build_app(
    store: RecordingStore,
    users: Users,
    session_ttl_s: float = 8 * 3600,
    health: Callable[[], dict[str, Any]] | None = None,
) -> web.Application:
    sessions = Sessions(session_ttl_s)

    @web.middleware
    async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in ("/api/session", "/health"):
            return await handler(request)  # type: ignore[no-any-return]
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        actor, expired = sessions.lookup(token) if token else (None, False)
        if actor is None:
            why = "session expired" if expired else "no valid session"
            await store.audit.record(
                "anonymous", "http", request.path[:200], "denied", {"why": why}
            )
            return _error(401, why + ": POST /api/session first")
        request[ACTOR_KEY] = actor
        return await handler(request)  # type: ignore[no-any-return]

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return _error(400, 'send JSON {"name": ..., "password": ...}')
        actor = await users.authenticate(name, password)
        if actor is None:
            await store.audit.record(name[:64], "login", "", "denied")
            return _error(401, "wrong name or password")
        token, expires = sessions.open(actor)
        await store.audit.record(actor.name, "login", "", "ok")
        return web.json_response(
            {
                "token": token,
                "role": sorted(actor.roles)[0],
                "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
            }
        )

    def _when(value: str | None) -> datetime | None:
        if value is None:
            return None
        d = datetime.fromisoformat(value)
        return d if d.tzinfo else d.replace(tzinfo=UTC)

    async def search(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = min(int(q.get("limit", "100")), 1000)
            found = await store.search(
                request[ACTOR_KEY],
                caller=q.get("caller"),
                agent=q.get("agent"),
                queue=q.get("queue"),
                call_id=q.get("call_id"),
                since=_when(q.get("since")),
                until=_when(q.get("until")),
                limit=limit,
            )
        except ValueError as e:
            return _error(400, f"bad query: {e}")
        except AccessDenied as e:
            return _error(403, str(e))
        return web.json_response([r.to_json() for r in found])

    async def _open(request: web.Request, purpose: str) -> tuple[Any, Any] | web.Response:
        try:
            return await store.open(request[ACTOR_KEY], request.match_info["id"], purpose)
        except AccessDenied as e:
            return _error(403, str(e))
        except RecordingError as e:
            return _error(404 if "no such" in str(e) else 500, str(e))

    async def metadata(request: web.Request) -> web.StreamResponse:
        opened = await _open(request, "search")
        if isinstance(opened, web.Response):
            return opened
        return web.json_response(opened[0].to_json())

    async def audio(request: web.Request) -> web.StreamResponse:
        opened = await _open(request, "listen")
        if isinstance(opened, web.Response):
            return opened
        # FileResponse answers Range requests (206 / 416) and streams with sendfile.
        return web.FileResponse(
            opened[1], headers={"Content-Type": "audio/wav", "Cache-Control": "no-store"}
        )

    async def export(request: web.Request) -> web.StreamResponse:
        opened = await _open(request, "export")
        if isinstance(opened, web.Response):
            return opened
        rec, path = opened
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "audio/wav",
                "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{rec.call_id}-{rec.id}.wav"',
                "X-Content-SHA256": rec.sha256,
            },
        )

    async def health_check(request: web.Request) -> web.Response:
        """For load balancers and monitoring: 200 when every part is connected, else 503."""
        report = health() if health is not None else {}
        ok = all(part.get("connected", True) for part in report.values())
        return web.json_response({"ok": ok, **report}, status=200 if ok else 503)

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/health", health_check)
    app.router.add_post("/api/session", login)
    app.router.add_get("/api/recordings", search)
    app.router.add_get("/api/recordings/{id}", metadata)
    app.router.add_get("/api/recordings/{id}/audio", audio)
    app.router.add_get("/api/recordings/{id}/export", export)
    return app


async def start_api(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
