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
    GET  /login         the one login page for every role (fields name, password)
    POST /login         form login: a session cookie (HttpOnly, SameSite=Strict), then
                        303 to the role's page (agent: /agent; others: /)
    GET  /api/me        {"name", "role", "agent", "csrf", "idle_s"} of the session
    POST /logout        ends the session (cookie sessions send X-CSRF-Token)

Two kinds of session, one store: API clients send ``Authorization: Bearer``;
browsers carry the ``hotline_session`` cookie and must send the session's
CSRF token (``X-CSRF-Token``, from ``/api/me``) with every change, from the
server's own Origin.  Sessions end at their lifetime or after ``idle_s``
without a request; features that keep something per session (the agent
desktop's broker login) are told (:class:`SessionHooks`).

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
from pathlib import Path
from typing import Protocol

from aiohttp import web

from hotline.records.audit import AuditLog
from hotline.records.users import Actor, Users, shutdown_password_workers
from hotline.web.pages import home_html, login_html

log = logging.getLogger("hotline.web")

ACTOR_KEY = web.RequestKey("actor", Actor)
# The browser's session cookie (HttpOnly, SameSite=Strict); API clients send
# ``Authorization: Bearer`` instead, and need no CSRF token (nothing ambient).
COOKIE = "hotline_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STATIC = Path(__file__).with_name("static")

# What each part of the server says about itself: {"connected": bool, ...}, and
# {"degraded": true, "why": ...} when it serves but not fully.
HealthReport = Mapping[str, Mapping[str, object]]
# A feature's routes: called once on the application before it starts.
Routes = Callable[[web.Application], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Paths that answer without a session.
PUBLIC_PATHS = frozenset({"/api/session", "/health", "/login"})
PUBLIC_PREFIXES = ("/static/",)


class SessionHooks(Protocol):
    """What a feature keeps per browser session (the agent desktop: a broker login)."""

    async def opened(self, session: Session) -> None:
        """After login, before the browser is told it is in."""

    def closed(self, session: Session) -> None:
        """The session ended (logout, expiry, idle, cap): drop what ``opened`` made."""


Clock = Callable[[], float]


@dataclass
class Session:
    """One login: who, until when, and the token every change it makes must carry."""

    id: str  # the token's hash: what features key their per-session state by
    actor: Actor
    expires: float  # on the monotonic clock
    csrf: str  # sent back in X-CSRF-Token by a page changing anything (cookie sessions)
    last_seen: float  # for the idle timeout


SESSION_KEY = web.RequestKey("session", Session)


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
        idle_s: float | None = None,
        on_close: Callable[[Session], None] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.idle_s = idle_s
        self.max_per_user = max_per_user
        self.max_total = max_total
        self._clock = clock
        # Told of every session that ends (logout, expiry, idle, cap): features
        # drop what they issued for it (the agent desktop's broker login).
        self._on_close = on_close
        self._by_hash: dict[str, Session] = {}
        self._by_user: dict[str, dict[str, None]] = {}
        self._expired: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_hash)

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, actor: Actor) -> tuple[str, float]:
        """A new session: (token, expiry as a Unix time)."""
        token, _ = self.open_session(actor)
        return token, time.time() + self.ttl_s

    def open_session(self, actor: Actor) -> tuple[str, Session]:
        """A new session: its token (the only copy) and the session."""
        now = self._clock()
        self.sweep(now)
        token = secrets.token_urlsafe(32)
        h = self._key(token)
        session = Session(h, actor, now + self.ttl_s, secrets.token_urlsafe(24), now)
        self._by_hash[h] = session
        mine = self._by_user.setdefault(actor.name, {})
        mine[h] = None
        while len(mine) > self.max_per_user:
            self._drop(next(iter(mine)))
        while len(self._by_hash) > self.max_total:
            self._drop(next(iter(self._by_hash)))
        return token, session

    def lookup(self, token: str) -> tuple[Actor | None, bool]:
        """(actor, expired)."""
        s, expired = self.find(token)
        return (None if s is None else s.actor), expired

    def find(self, token: str) -> tuple[Session | None, bool]:
        """(session, expired); a session found is seen now (the idle timeout restarts)."""
        h = self._key(token)
        now = self._clock()
        s = self._by_hash.get(h)
        if s is None:
            return None, h in self._expired
        if s.expires <= now:
            self.sweep(now)
            return None, True
        if self.idle_s is not None and now - s.last_seen > self.idle_s:
            self._drop(h)
            self._expired[h] = None
            return None, True
        s.last_seen = now
        return s, False

    def close(self, token: str) -> bool:
        """End a session (logout); whether there was one."""
        h = self._key(token)
        if h not in self._by_hash:
            return False
        self._drop(h)
        return True

    def sweep_idle(self) -> int:
        """Drop every session idle longer than ``idle_s`` (a background task calls this)."""
        if self.idle_s is None:
            return 0
        cutoff = self._clock() - self.idle_s
        idle = [h for h, s in self._by_hash.items() if s.last_seen < cutoff]
        for h in idle:
            self._drop(h)
            self._expired[h] = None
        return len(idle)

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
        if self._on_close is not None:
            try:
                self._on_close(s)
            except Exception:
                log.exception("a session-close hook failed")


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
    idle_s: float | None = 30 * 60,
    health: Callable[[], HealthReport] | None = None,
    routes: Sequence[Routes] = (),
    login_limits: LoginLimits = LoginLimits(),
    refusal_window_s: float = 60.0,
    max_sessions_per_user: int = 20,
    max_sessions: int = 10_000,
    session_hooks: Sequence[SessionHooks] = (),
    landings: Mapping[str, str] | None = None,
    connect_src: Sequence[str] = (),
) -> web.Application:
    """The web application: API sessions (bearer) and browser sessions (cookie + CSRF).

    ``landings``: where each role lands after the login page (a feature's
    page, e.g. ``{"agent": "/agent"}``); ``connect_src``: origins the pages
    may open connections to besides their own (the broker's WebSockets), for
    the Content-Security-Policy.
    """

    def closed(session: Session) -> None:
        for hook in session_hooks:
            hook.closed(session)

    sessions = Sessions(
        session_ttl_s,
        max_per_user=max_sessions_per_user,
        max_total=max_sessions,
        idle_s=idle_s,
        on_close=closed,
    )
    throttle = LoginThrottle(login_limits)
    refusals = RefusalDigest(audit, refusal_window_s)
    landing = {"agent": "/agent", **(landings or {})}
    csp = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self' data:",
            "connect-src " + " ".join(["'self'", *connect_src]),
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )

    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as e:
            response = e
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null"
        # on its own form posts, and the login form's origin check would refuse them.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if response.content_type == "text/html":
            response.headers.setdefault("Content-Security-Policy", csp)
            response.headers.setdefault("Cache-Control", "no-store")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        bearer = header.startswith("Bearer ")
        token = (
            header.removeprefix("Bearer ").strip() if bearer else request.cookies.get(COOKIE, "")
        )
        session, expired = sessions.find(token) if token else (None, False)
        if session is None:
            why = "session expired" if expired else "no valid session"
            await refusals.note(why, path, request.remote or "")
            is_page = request.match_info.http_exception is None and not path.startswith("/api/")
            if is_page and request.method in SAFE_METHODS:
                raise web.HTTPSeeOther("/login")  # a page: the browser signs in first
            return error(401, why + ": POST /api/session first")
        if not bearer and request.method not in SAFE_METHODS:
            # A browser sends the cookie with any request, including one a hostile
            # page makes it send: a change must also carry the session's token.
            sent = request.headers.get("X-CSRF-Token", "")
            if not secrets.compare_digest(sent, session.csrf) or not _same_origin(request):
                await audit.record(
                    session.actor.label, "http", path[:200], "denied", {"why": "csrf"}
                )
                return error(403, "missing or wrong CSRF token")
        request[ACTOR_KEY] = session.actor
        request[SESSION_KEY] = session
        return await handler(request)

    async def begin(request: web.Request, name: str, password: str) -> Actor | web.Response:
        """Throttle, then check the password: the actor, or the refusal to send."""
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
        return actor

    async def open_session(actor: Actor) -> tuple[str, Session]:
        token, session = sessions.open_session(actor)
        try:
            for hook in session_hooks:
                await hook.opened(session)
        except Exception:
            sessions.close(token)
            raise
        await audit.record(actor.name, "login", "", "ok")
        return token, session

    async def login(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return error(400, 'send JSON {"name": ..., "password": ...}')
        actor = await begin(request, name, password)
        if isinstance(actor, web.Response):
            return actor
        token, _session = await open_session(actor)
        return web.json_response(
            {
                "token": token,
                "role": sorted(actor.roles)[0],
                "expires_at": datetime.fromtimestamp(time.time() + sessions.ttl_s, UTC).isoformat(),
            }
        )

    async def login_page(request: web.Request) -> web.StreamResponse:
        return login_html(_language(request), request.query.get("error", ""))

    async def login_form(request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            return error(403, "login from another site refused")
        form = await request.post()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        lang = _language(request)
        if not name or not password:
            return login_html(lang, "missing", status=400)
        actor = await begin(request, name, password)
        if isinstance(actor, web.Response):
            kind = "throttled" if actor.status == 429 else "wrong"
            page = login_html(lang, kind, status=actor.status)
            if "Retry-After" in actor.headers:
                page.headers["Retry-After"] = actor.headers["Retry-After"]
            return page
        token, _session = await open_session(actor)
        role = sorted(actor.roles)[0]
        response = web.HTTPSeeOther(landing.get(role, "/"))
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(sessions.ttl_s),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        token = request.cookies.get(COOKIE, "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ").strip()
        actor = request[ACTOR_KEY]
        sessions.close(token)
        await audit.record(actor.label, "logout", "", "ok")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    async def me(request: web.Request) -> web.Response:
        """Who the browser is logged in as, and the token its changes must carry."""
        session = request[SESSION_KEY]
        actor = session.actor
        return web.json_response(
            {
                "name": actor.name,
                "role": sorted(actor.roles)[0],
                "agent": actor.agent,
                "csrf": session.csrf,
                "idle_s": sessions.idle_s,
            }
        )

    async def home(request: web.Request) -> web.StreamResponse:
        role = sorted(request[ACTOR_KEY].roles)[0]
        target = landing.get(role)
        if target is not None and target != "/":
            raise web.HTTPSeeOther(target)
        return home_html(_language(request), request[ACTOR_KEY], request[SESSION_KEY].csrf)

    async def health_check(request: web.Request) -> web.Response:
        """For load balancers and monitoring: ok or degraded (200), or down (503)."""
        report = health() if health is not None else {}
        status, code = _health_status(report)
        return web.json_response({"status": status, "ok": code == 200, **report}, status=code)

    async def background(app: web.Application) -> AsyncIterator[None]:
        async def sweep_sessions() -> None:
            while True:
                await asyncio.sleep(15)
                sessions.sweep()
                sessions.sweep_idle()

        tasks = [
            asyncio.create_task(refusals.run(), name="hotline-web-refusals"),
            asyncio.create_task(sweep_sessions(), name="hotline-web-sessions"),
        ]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await refusals.flush(force=True)
        except Exception:
            log.exception("could not audit the refused requests")
        shutdown_password_workers()

    app = web.Application(middlewares=[headers, authenticate])
    app.cleanup_ctx.append(background)
    app.router.add_get("/health", health_check)
    app.router.add_post("/api/session", login)
    app.router.add_get("/api/me", me)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_form)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", home)
    app.router.add_static("/static/", STATIC, append_version=False)
    for add in routes:
        add(app)
    return app


def _same_origin(request: web.Request) -> bool:
    """No Origin (not a browser, or a same-origin GET) or the server's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


def _language(request: web.Request) -> str:
    accept = request.headers.get("Accept-Language", "")
    return "ko" if accept.lower().startswith("ko") else "en"


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
