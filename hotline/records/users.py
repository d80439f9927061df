"""Users and roles for recordings: who may search, listen, export, and administer.

Roles: ``compliance`` (search, listen, export), ``admin`` (users, retention,
legal holds), ``agent`` (no access to recordings).  Passwords are hashed with
Argon2id, in two threads of their own (``argon2_0``, ``argon2_1``), never in the event
loop's default executor: a burst of logins cannot hold up the prompt renderer
or anything else that uses it.  On the server host the CLI acts as the OS user
(trusted as operator: both roles) unless ``--as NAME`` names a user whose role
is then enforced.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from hotline.storage.db import Database
from hotline.storage.tables import UserRow

ROLES = ("compliance", "admin", "agent")
PERMISSIONS = {
    "compliance": {"search", "listen", "export"},
    "admin": {"users", "retention", "hold", "verify"},
    "agent": set(),
}
_hasher = PasswordHasher()
# An agent's number: what the dialplan's PJSIP/agentN and the MQTT topics use.
AGENT_NUMBER = re.compile(r"[0-9]{1,15}")


class _Argon2Workers:
    """The two threads that hash and verify passwords (Argon2 is CPU work: ~50 ms each).

    Created on first use; :meth:`shutdown` lets them finish what they hold and
    exit, and the next use starts new ones.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., object], *args: str) -> object:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)  # never blocks the loop; queued work still completes


_argon2 = _Argon2Workers()


def shutdown_password_workers() -> None:
    """Stop the Argon2 threads (the web application does when it stops)."""
    _argon2.shutdown()


class AccessDenied(Exception):
    """The actor's role does not allow this."""


@dataclass(frozen=True)
class Actor:
    name: str
    roles: frozenset[str]
    # The OS user who acts as ``name`` without its password (root's ``--as``).
    via: str = ""
    # The agent a user of role agent works as (the agent desktop's calls and state).
    agent: str | None = None

    @property
    def label(self) -> str:
        """How the audit log names the actor: ``carol``, or ``carol (root via --as)``."""
        return f"{self.name} ({self.via} via --as)" if self.via else self.name

    def may(self, permission: str) -> bool:
        return any(permission in PERMISSIONS[r] for r in self.roles)

    def require(self, permission: str) -> None:
        if not self.may(permission):
            raise AccessDenied(
                f"{self.name} ({', '.join(sorted(self.roles))}) may not {permission}"
            )


def os_user() -> str:
    """The effective OS user's name, from the kernel (not ``$USER``, which anyone can set)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def host_operator() -> Actor:
    """Whoever runs the CLI on the server host: audited under their OS name."""
    return Actor(f"os:{os_user()}", frozenset({"compliance", "admin"}))


class Users:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, name: str, role: str, password: str, agent: str | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ValueError(f"not a usable user name: {name!r}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if agent is not None and (role != "agent" or not AGENT_NUMBER.fullmatch(agent)):
            raise ValueError(
                "--agent is for role agent, and is the agent's number (digits, e.g. 1001)"
            )
        if len(password) < 10:
            raise ValueError("password must have at least 10 characters")
        hashed = str(await _argon2.run(_hasher.hash, password))
        async with self._db.sessions() as s, s.begin():
            if await s.get(UserRow, name) is not None:
                raise ValueError(f"user {name!r} exists")
            s.add(
                UserRow(
                    name=name,
                    role=role,
                    password_hash=hashed,
                    created_at=datetime.now(UTC),
                    agent=agent,
                )
            )

    async def actor(self, name: str) -> Actor | None:
        async with self._db.sessions() as s:
            row = await s.get(UserRow, name)
            return None if row is None else _actor(row)

    async def authenticate(self, name: str, password: str) -> Actor | None:
        async with self._db.sessions() as s:
            row = await s.get(UserRow, name)
        if row is None:
            await _argon2.run(_hasher.hash, password)  # same time, user or not
            return None
        try:
            await _argon2.run(_hasher.verify, row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return _actor(row)

    async def list(self) -> list[tuple[str, str]]:
        async with self._db.sessions() as s:
            return [
                (r.name, r.role) for r in await s.scalars(select(UserRow).order_by(UserRow.name))
            ]


def _actor(row: UserRow) -> Actor:
    return Actor(row.name, frozenset({row.role}), agent=row.agent)
