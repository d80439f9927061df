"""Users and roles for recordings: who may search, listen, export, and administer.

Roles: ``compliance`` (search, listen, export), ``admin`` (users, retention,
legal holds), ``agent`` (no access to recordings).  Passwords are hashed with
Argon2id.  On the server host the CLI acts as the OS user (trusted as
operator: both roles) unless ``--as NAME`` names a user whose role is then
enforced.
"""

from __future__ import annotations

import asyncio
import getpass
import re
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


class AccessDenied(Exception):
    """The actor's role does not allow this."""


@dataclass(frozen=True)
class Actor:
    name: str
    roles: frozenset[str]

    @property
    def label(self) -> str:
        return self.name

    def may(self, permission: str) -> bool:
        return any(permission in PERMISSIONS[r] for r in self.roles)

    def require(self, permission: str) -> None:
        if not self.may(permission):
            raise AccessDenied(
                f"{self.name} ({', '.join(sorted(self.roles))}) may not {permission}"
            )


def host_operator() -> Actor:
    """Whoever runs the CLI on the server host: audited under their OS name."""
    return Actor(f"os:{getpass.getuser()}", frozenset({"compliance", "admin"}))


class Users:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, name: str, role: str, password: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ValueError(f"not a usable user name: {name!r}")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < 10:
            raise ValueError("password must have at least 10 characters")
        hashed = await asyncio.to_thread(_hasher.hash, password)  # Argon2 is CPU work
        async with self._db.sessions() as s, s.begin():
            if await s.get(UserRow, name) is not None:
                raise ValueError(f"user {name!r} exists")
            s.add(UserRow(name=name, role=role, password_hash=hashed, created_at=datetime.now(UTC)))

    async def actor(self, name: str) -> Actor | None:
        async with self._db.sessions() as s:
            row = await s.get(UserRow, name)
            return None if row is None else Actor(name, frozenset({row.role}))

    async def authenticate(self, name: str, password: str) -> Actor | None:
        async with self._db.sessions() as s:
            row = await s.get(UserRow, name)
        if row is None:
            await asyncio.to_thread(_hasher.hash, password)  # same time, user or not
            return None
        try:
            await asyncio.to_thread(_hasher.verify, row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return Actor(name, frozenset({row.role}))

    async def list(self) -> list[tuple[str, str]]:
        async with self._db.sessions() as s:
            return [
                (r.name, r.role) for r in await s.scalars(select(UserRow).order_by(UserRow.name))
            ]
