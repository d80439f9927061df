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

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from hotline.recordings.crypt import CryptError
from hotline.recordings.store import (
    Recording,
    RecordingError,
    RecordingNotFound,
    RecordingStore,
)
from hotline.records.users import AccessDenied, Users
from hotline.web import ACTOR_KEY, HealthReport, Routes, build_web_app, error, start_api

__all__ = ["build_app", "recording_routes", "start_api"]

log = logging.getLogger("hotline.recordings")

# How many recordings one search may return (``limit``); outside: 400.
MIN_LIMIT, MAX_LIMIT = 1, 1000


def recording_routes(store: RecordingStore) -> Routes:
    """The recordings API's routes, for :func:`hotline.web.build_web_app`."""

    def _when(value: str | None) -> datetime | None:
        if value is None:
            return None
        d = datetime.fromisoformat(value)
        return d if d.tzinfo else d.replace(tzinfo=UTC)

    async def search(request: web.Request) -> web.Response:
        q = request.query
        text = q.get("limit", "100")
        limit = int(text) if text.isdecimal() and len(text) <= 10 else 0
        if not MIN_LIMIT <= limit <= MAX_LIMIT:
            return error(
                400,
                f"bad query: limit must be a whole number from {MIN_LIMIT} to {MAX_LIMIT}, "
                f"not {text[:20]!r}",
            )
        try:
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
        rec, path = opened
        headers = {"Content-Type": "audio/wav", "Cache-Control": "no-store"}
        if rec.encrypted:
            return await _decrypted(request, store, path, rec.size, headers)
        # FileResponse answers Range requests (206 / 416) and streams with sendfile.
        return web.FileResponse(path, headers=headers)

    async def export(request: web.Request) -> web.StreamResponse:
        opened = await _open(request, "export")
        if isinstance(opened, web.Response):
            return opened
        rec, path = opened
        headers = {
            "Content-Type": "audio/wav",
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{rec.call_id}-{rec.id}.wav"',
            # The audio's hash: what the downloaded file hashes to, encrypted at rest or not.
            "X-Content-SHA256": rec.audio_sha256 or rec.sha256,
        }
        if rec.encrypted:
            return await _decrypted(request, store, path, rec.size, headers)
        return web.FileResponse(path, headers=headers)

    def add(app: web.Application) -> None:
        app.router.add_get("/api/recordings", search)
        app.router.add_get("/api/recordings/{id}", metadata)
        app.router.add_get("/api/recordings/{id}/audio", audio)
        app.router.add_get("/api/recordings/{id}/export", export)

    return add


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end)`` inclusive for one ``bytes=`` range, None for the whole file,
    or ``"unsatisfiable"``.  Several ranges are answered with the whole file."""
    if header is None:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


async def _decrypted(
    request: web.Request,
    store: RecordingStore,
    path: Path,
    size: int,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Serve an encrypted recording's audio, decrypting only the chunks a Range asks for."""
    wanted = _byte_range(request.headers.get("Range"), size)
    if wanted == "unsatisfiable":
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = (0, size - 1) if wanted is None or isinstance(wanted, str) else wanted
    response = web.StreamResponse(status=200 if wanted is None else 206, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    response.content_length = max(0, end - start + 1)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    try:
        reader = await asyncio.to_thread(store.reader, path)
    except RecordingError as e:
        return error(500, str(e))
    try:
        await response.prepare(request)
        if request.method == "HEAD" or size == 0:
            return response
        pieces = reader.iter_range(start, end)
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            await response.write(piece)
        await response.write_eof()
    except CryptError:
        # Headers are sent: cutting the connection is the only way to say it.
        log.error("recording failed to decrypt mid-response", extra={"file": path.name})
        if request.transport is not None:
            request.transport.close()
    finally:
        await asyncio.to_thread(reader.close)
    return response


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
