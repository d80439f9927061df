"""The one web application: sessions, ``/health``, and the routes features add.

Features (the recordings API today; the agent desktop and the consoles next)
hand the composition root a :data:`Routes` function; this module owns what
they share: login, bearer sessions, the authenticated actor on each request,
the audit of refused requests, and the health report.  Bound to loopback
unless configured; put TLS in front (a reverse proxy) before exposing it.

    GET  /health        {"status": "ok" | "degraded" | "down", "ok": bool, part: {...}}
                        200 ok or degraded, 503 when a part is not connected (no session)
    POST /api/session   {"name": ..., "password": ...} -> {"token", "role", "expires_at"}
                        401 wrong; 429 + Retry-After after too many failures

What a client without a session can cost is bounded: failed logins are
throttled per name and per address (:class:`LoginThrottle`), requests without
a session are audited once per window with a count (:class:`RefusalDigest`),
and sessions are capped per user and in all, expired ones swept as new ones
open (:class:`Sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from hotline.records.audit import AuditLog
from hotline.records.users import Actor, Users, shutdown_password_workers

log = logging.getLogger("hotline.web")

ACTOR_KEY = web.RequestKey("actor", Actor)

# What each part of the server says about itself: {"connected": bool, ...}, and
# {"degraded": true, "why": ...} when it serves but not fully.
HealthReport = Mapping[str, Mapping[str, object]]
# A feature's routes: called once on the application before it starts.
Routes = Callable[[web.Application], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that answer without a session.
PUBLIC_PATHS = frozenset({"/api/session", "/health"})


Clock = Callable[[], float]


@dataclass
class _Session:
    actor: Actor
    expires: float  # on the monotonic clock


class Sessions:
    """Bearer tokens in memory, stored only as hashes; they expire.

    Every session lives ``ttl_s``, so the dict (in opening order) is also in
    expiry order: opening one first drops the expired ones at its front
    (amortised O(1)).  A user holds at most ``max_per_user`` sessions and the
    server at most ``max_total``; over either, the oldest goes.  The hashes of
    the last ``max_total`` swept sessions are kept, so their owners hear
    "session expired" rather than "no valid session".
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        max_per_user: int = 20,
        max_total: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_per_user = max_per_user
        self.max_total = max_total
        self._clock = clock
        self._by_hash: dict[str, _Session] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_hash)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, actor: Actor) -> tuple[str, float]:
        """A new session: (token, expiry as a Unix time)."""
        now = self._clock()
        self.sweep(now)
        token = secrets.token_urlsafe(32)
        h = self._key(token)
        self._by_hash[h] = _Session(actor, now + self.ttl_s)
        mine = self._by_user.setdefault(actor.name, {})
        mine[h] = None
        while len(mine) > self.max_per_user:
            self._drop(next(iter(mine)))
        while len(self._by_hash) > self.max_total:
            self._drop(next(iter(self._by_hash)))
        return token, time.time() + self.ttl_s

    def lookup(self, token: str) -> tuple[Actor | None, bool]:
        """(actor, expired)."""
        h = self._key(token)
        now = self._clock()
        s = self._by_hash.get(h)
        if s is None:
            return None, h in self._expired
        if s.expires <= now:
            self.sweep(now)
            return None, True
        return s.actor, False

    def sweep(self, now: float | None = None) -> int:
        """Drop every expired session; how many went."""
        now = self._clock() if now is None else now
        n = 0
        while self._by_hash:
            h, s = next(iter(self._by_hash.items()))
            if s.expires > now:
                break
            self._drop(h)
            self._expired[h] = None
            n += 1
        while len(self._expired) > self.max_total:
            self._expired.popitem(last=False)
        return n

    def _drop(self, h: str) -> None:
        s = self._by_hash.pop(h)
        mine = self._by_user[s.actor.name]
        del mine[h]
        if not mine:
            del self._by_user[s.actor.name]


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed in ``window_s``, per name and per client address."""

    per_name: int = 5
    per_address: int = 20
    window_s: float = 300.0
    # Names (and, separately, addresses) remembered at most; the least recently failed go.
    max_tracked: int = 10_000


class _Failures:
    """The times of the latest failures per key: at most ``limit`` each, ``max_keys`` keys."""

    def __init__(self, limit: int, window_s: float, max_keys: int) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._by_key: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        times = self._by_key.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._by_key[key]
            return 0.0
        return times[0] + self.window_s - now if len(times) >= self.limit else 0.0

    def add(self, key: str, now: float) -> None:
        times = self._by_key.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._by_key[key] = times  # the most recent at the end
        while len(self._by_key) > self.max_keys:
            self._by_key.popitem(last=False)

    def forget(self, key: str, at: float | None = None) -> None:
        """Forget every failure of ``key``, or only the one ``at`` that time."""
        if at is None:
            self._by_key.pop(key, None)
            return
        times = self._by_key.get(key)
        if times is not None and at in times:
            times.remove(at)


class LoginThrottle:
    """Refuse logins for a name or an address that failed too often lately.

    An attempt counts as a failure from the moment it starts (so a burst of
    concurrent guesses is held to the limit too) and is taken back if the
    password was right; a success clears that name's failures.
    """

    def __init__(self, limits: LoginLimits = LoginLimits(), clock: Clock = time.monotonic):
        self.limits = limits
        self._clock = clock
        self._names = _Failures(limits.per_name, limits.window_s, limits.max_tracked)
        self._addresses = _Failures(limits.per_address, limits.window_s, limits.max_tracked)

    def begin(self, name: str, address: str) -> tuple[float, float]:
        """(0, when) and the attempt counted; or (seconds to wait, 0) when refused."""
        now = self._clock()
        wait = max(self._names.wait(name, now), self._addresses.wait(address, now))
        if wait > 0:
            return wait, 0.0
        self._names.add(name, now)
        self._addresses.add(address, now)
        return 0.0, now

    def succeeded(self, name: str, address: str, when: float) -> None:
        self._names.forget(name)
        self._addresses.forget(address, when)

    def tracked(self) -> tuple[int, int]:
        """(names, addresses) remembered now."""
        return len(self._names), len(self._addresses)


class RefusalDigest:
    """Requests refused without a session, audited once per window rather than once each.

    The first refusal of a window is written at once (as it always was); the
    rest of the window is counted, with a few sample paths and addresses, and
    written as one ``http`` / ``denied`` entry with ``count`` when the window
    ends (a background task, or the next refusal after it, or the application
    stopping).  A flood costs at most two audit entries per window.
    """

    SAMPLES = 5

    def __init__(self, audit: AuditLog, window_s: float = 60.0, clock: Clock = time.monotonic):
        self.audit = audit
        self.window_s = window_s
        self._clock = clock
        self._window_end: float | None = None
        self._count = 0
        self._why: Counter[str] = Counter()
        self._paths: dict[str, None] = {}
        self._addresses: dict[str, None] = {}

    async def note(self, why: str, path: str, address: str) -> None:
        if self._window_end is not None and self._clock() >= self._window_end:
            await self.flush()
        if self._window_end is None:
            self._window_end = self._clock() + self.window_s
            await self.audit.record(
                "anonymous", "http", path[:200], "denied", {"why": why, "address": address}
            )
            return
        self._count += 1
        if len(self._why) < self.SAMPLES or why in self._why:
            self._why[why] += 1
        if len(self._paths) < self.SAMPLES:
            self._paths[path[:200]] = None
        if len(self._addresses) < self.SAMPLES:
            self._addresses[address] = None

    async def flush(self, *, force: bool = False) -> None:
        """Write the window's count if it has ended (or ``force``); start a new window."""
        if self._window_end is None or (not force and self._clock() < self._window_end):
            return
        count, why, paths, addresses = self._count, self._why, self._paths, self._addresses
        self._window_end, self._count, self._why, self._paths, self._addresses = (
            None,
            0,
            Counter(),
            {},
            {},
        )
        if count:
            await self.audit.record(
                "anonymous",
                "http",
                "",
                "denied",
                {
                    "count": count,
                    "window_s": self.window_s,
                    "why": dict(why),
                    "paths": list(paths),
                    "addresses": list(addresses),
                },
            )

    async def run(self) -> None:
        """Write each window's count when it ends, until cancelled."""
        while True:
            await asyncio.sleep(self.window_s / 4)
            try:
                await self.flush()
            except Exception:
                log.exception("could not audit the refused requests")


def error(status: int, message: str) -> web.Response:
    """The API's one error shape: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


def _health_status(report: HealthReport) -> tuple[str, int]:
    """("down", 503) if a part is not connected, ("degraded", 200) if one says so, else ok."""
    if not all(part.get("connected", True) for part in report.values()):
        return "down", 503
    if any(part.get("degraded", False) for part in report.values()):
        return "degraded", 200
    return "ok", 200


def build_web_app(
    users: Users,
    audit: AuditLog,
    *,
    session_ttl_s: float = 8 * 3600,
    health: Callable[[], HealthReport] | None = None,
    routes: Sequence[Routes] = (),
    login_limits: LoginLimits = LoginLimits(),
    refusal_window_s: float = 60.0,
    max_sessions_per_user: int = 20,
    max_sessions: int = 10_000,
) -> web.Application:
    sessions = Sessions(session_ttl_s, max_per_user=max_sessions_per_user, max_total=max_sessions)
    throttle = LoginThrottle(login_limits)
    refusals = RefusalDigest(audit, refusal_window_s)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        actor, expired = sessions.lookup(token) if token else (None, False)
        if actor is None:
            why = "session expired" if expired else "no valid session"
            await refusals.note(why, request.path, request.remote or "")
            return error(401, why + ": POST /api/session first")
        request[ACTOR_KEY] = actor
        return await handler(request)

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return error(400, 'send JSON {"name": ..., "password": ...}')
        key, address = name[:64], request.remote or ""
        wait, started = throttle.begin(key, address)
        if wait > 0:
            await refusals.note("login throttled", request.path, address)
            seconds = max(1, math.ceil(wait))
            response = error(429, f"too many failed logins: try again in {seconds} s")
            response.headers["Retry-After"] = str(seconds)
            return response
        actor = await users.authenticate(name, password)
        if actor is None:
            await audit.record(key, "login", "", "denied", {"address": address})
            return error(401, "wrong name or password")
        throttle.succeeded(key, address, started)
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
        """For load balancers and monitoring: ok or degraded (200), or down (503)."""
        report = health() if health is not None else {}
        status, code = _health_status(report)
        return web.json_response({"status": status, "ok": code == 200, **report}, status=code)

    async def background(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(refusals.run(), name="hotline-web-refusals")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await refusals.flush(force=True)
        except Exception:
            log.exception("could not audit the refused requests")
        shutdown_password_workers()

    app = web.Application(middlewares=[authenticate])
    app.cleanup_ctx.append(background)
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
