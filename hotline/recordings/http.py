"""HTTP API for compliance officers: search, metadata, audio with Range, export.

Every request that touches a recording goes through :class:`RecordingStore`,
so roles are enforced and every search and retrieval (allowed, refused or
failed) lands in the hash-chained audit log.  Sessions, login and ``/health``
belong to the web application (:mod:`hotline.web`); these are its routes.

    GET  /api/recordings?caller=&agent=&queue=&call_id=&since=&until=&limit=
    GET  /api/recordings/{id}          metadata
    GET  /api/recordings/{id}/audio    the WAV, with HTTP Range support
    GET  /api/recordings/{id}/export   the WAV as a download
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from hotline.recordings.store import (
    Recording,
    RecordingError,
    RecordingNotFound,
    RecordingStore,
)
from hotline.records.users import AccessDenied, Users
from hotline.web import ACTOR_KEY, HealthReport, Routes, build_web_app, error, start_api

__all__ = ["build_app", "recording_routes", "start_api"]


def recording_routes(store: RecordingStore) -> Routes:
    """The recordings API's routes, for :func:`hotline.web.build_web_app`."""

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
            return error(400, f"bad query: {e}")
        except AccessDenied as e:
            return error(403, str(e))
        return web.json_response([r.to_json() for r in found])

    async def _open(request: web.Request, purpose: str) -> tuple[Recording, Path] | web.Response:
        try:
            return await store.open(request[ACTOR_KEY], request.match_info["id"], purpose)
        except AccessDenied as e:
            return error(403, str(e))
        except RecordingNotFound as e:
            return error(404, str(e))
        except RecordingError as e:
            return error(500, str(e))

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

    def add(app: web.Application) -> None:
        app.router.add_get("/api/recordings", search)
        app.router.add_get("/api/recordings/{id}", metadata)
        app.router.add_get("/api/recordings/{id}/audio", audio)
        app.router.add_get("/api/recordings/{id}/export", export)

    return add


def build_app(
    store: RecordingStore,
    users: Users,
    session_ttl_s: float = 8 * 3600,
    health: Callable[[], HealthReport] | None = None,
) -> web.Application:
    """The web application with only the recordings API (its tests and benchmarks)."""
    return build_web_app(
        users,
        store.audit,
        session_ttl_s=session_ttl_s,
        health=health,
        routes=[recording_routes(store)],
    )
