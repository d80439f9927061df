"""Per-session broker logins for the browser agent desktop (Mosquitto's dynamic security).

The project broker (scripts/broker.sh, broker-config/) loads Mosquitto's
dynamic security plugin beside the password and ACL files of the static users.
A privileged client (the plugin's ``admin``, whose password ``hotline mqtt
users`` generates) sends it JSON commands on ``$CONTROL/dynamic-security/v1``
and reads the answers on ``…/response``.  This module is that client, and
only what the desktop needs:

- :meth:`DynsecClient.ensure_agent_role`: role ``agent-N`` may subscribe to
  and receive ``{prefix}/agents/N/#`` and ``{prefix}/queues/Q/stats`` for
  its queues, and nothing else; it may publish nothing (explicit denies, so
  no other plugin in the chain is asked);
- :meth:`DynsecClient.issue`: a new client ``web-<16 hex>`` with a random
  password and that role, for one browser session;
- :meth:`DynsecClient.revoke`: delete it.  Mosquitto 2.1 disconnects a client
  that is connected when it is deleted (seen: the connection closes within
  a second, and the login is refused from then on), so no separate kick.

Each call opens its own short connection (logins are rare; nothing to keep
alive or reconnect) and is bounded by ``timeout``.  Passwords are never
logged; :class:`SessionCredentials` keeps its password out of its repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from cti.mqtt import topic_segment
from hotline.config import ConfigError

if TYPE_CHECKING:
    from hotline.config import Config

log = logging.getLogger("hotline.dynsec")

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
SESSION_PREFIX = "web-"
# CONNACK reason codes that mean "your login is wrong" (MQTT 5: 0x86, 0x87; 3.1.1: 4, 5).
_REFUSED_LOGIN = {4, 5, 134, 135}


class DynsecError(Exception):
    """Base of everything this module raises."""


class BrokerUnavailable(DynsecError):
    """The broker could not be reached, or did not answer within the timeout."""


class AdminLoginRefused(DynsecError):
    """The broker refused the dynamic security admin's login (wrong password file?)."""


class CommandFailed(DynsecError):
    """The plugin answered a command with an error (its text in ``error``)."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"dynamic security {command}: {error}")
        self.command = command
        self.error = error


class UnknownAgentRole(CommandFailed):
    """``issue`` for an agent whose role was never made (``ensure_agent_role`` first)."""


@dataclass(frozen=True)
class SessionCredentials:
    """One browser session's broker login; the desktop's client ids start with the prefix."""

    username: str
    password: str = field(repr=False)
    client_id_prefix: str
    agent: str


def role_name(agent: str) -> str:
    return f"agent-{topic_segment(agent)}"


def agent_role_acls(prefix: str, agent: str, queues: Sequence[str]) -> list[dict[str, Any]]:
    """The ACLs of role ``agent-N``: read its own topics and its queues' stats, nothing else.

    The denies are explicit (priority 0, below the grants): when the plugin has
    no matching rule it defers to the next plugin, and the ACL-file plugin
    grants every subscription (it checks only delivery).  ``#`` does not match
    ``$``-topics, hence the extra denies for ``$CONTROL`` and ``$SYS``.
    """
    readable = [f"{prefix}/agents/{topic_segment(agent)}/#"] + [
        f"{prefix}/queues/{topic_segment(q)}/stats" for q in dict.fromkeys(queues)
    ]
    acls: list[dict[str, Any]] = []
    for topic in readable:
        for kind in ("subscribePattern", "publishClientReceive"):
            acls.append({"acltype": kind, "topic": topic, "priority": 10, "allow": True})
    for topic in ("#", "$CONTROL/#", "$SYS/#"):
        for kind in ("subscribePattern", "publishClientReceive", "publishClientSend"):
            acls.append({"acltype": kind, "topic": topic, "priority": 0, "allow": False})
    return acls


# Whatever no role decides: denied (the plugin's own default lets clients receive anything).
DEFAULT_ACCESS = [
    {"acltype": "publishClientSend", "allow": False},
    {"acltype": "publishClientReceive", "allow": False},
    {"acltype": "subscribe", "allow": False},
    {"acltype": "unsubscribe", "allow": True},
]


class DynsecClient:
    """The dynamic security plugin's API, as its admin, one short connection per call."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        prefix: str = "hotline",
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self._username, self._password = username, password
        self.prefix = prefix.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_config(cls, cfg: Config) -> DynsecClient:
        """From ``[broker]`` (host, port, admin login) and ``[mqtt] prefix``.

        Reads the admin's password file (blocking: call it in a thread from a loop);
        a file that is missing or empty raises :class:`DynsecError`.
        """
        b = cfg.broker
        try:
            password = cfg.broker_admin_password()
        except ConfigError as e:  # no such file yet: the broker was never set up
            raise DynsecError(str(e)) from None
        if not password:
            raise DynsecError("[broker] admin_password_file (or admin_password) is not set")
        return cls(
            b.host,
            b.port,
            b.admin_username,
            password,
            prefix=cfg.mqtt.prefix,
            timeout=b.request_timeout_s,
        )

    def __repr__(self) -> str:
        return f"DynsecClient({self.host}:{self.port}, user={self._username!r})"

    async def ensure_agent_role(self, agent: str, queues: Sequence[str]) -> None:
        """Make role ``agent-N`` (or set its ACLs anew: the queues may have changed)."""
        async with self._connect() as control:
            await self._ensure_role(control, agent, queues)

    async def issue(self, agent: str, queues: Sequence[str] | None = None) -> SessionCredentials:
        """A new login with role ``agent-N``; with ``queues``, the role is made/updated first.

        Without ``queues`` the role must exist (:class:`UnknownAgentRole` otherwise).
        """
        role = role_name(agent)
        username = f"{SESSION_PREFIX}{secrets.token_hex(8)}"
        password = secrets.token_urlsafe(24)
        create = {
            "command": "createClient",
            "username": username,
            "password": password,
            "textname": f"browser session of agent {agent}",
            "roles": [{"rolename": role, "priority": 0}],
        }
        async with self._connect() as control:
            if queues is not None:
                await self._ensure_role(control, agent, queues)
            (resp,) = await control.send([create])
        error = resp.get("error")
        if error and "role" in str(error).lower():
            raise UnknownAgentRole("createClient", f"{error} ({role})")
        if error:
            raise CommandFailed("createClient", str(error))
        log.info("broker login issued", extra={"agent": agent, "broker_user": username})
        return SessionCredentials(username, password, f"{username}-", agent)

    async def revoke(self, username: str) -> None:
        """Delete the login; a connection it holds is closed by the broker.  Idempotent."""
        if not username.startswith(SESSION_PREFIX):
            raise DynsecError(f"not a session login: {username!r}")
        async with self._connect() as control:
            (resp,) = await control.send([{"command": "deleteClient", "username": username}])
        error = resp.get("error")
        if error and "not found" not in str(error).lower():
            raise CommandFailed("deleteClient", str(error))
        log.info(
            "broker login already gone" if error else "broker login revoked",
            extra={"broker_user": username},
        )

    async def list_clients(self) -> list[str]:
        """Every client the plugin knows (the admin and the sessions)."""
        async with self._connect() as control:
            (resp,) = await control.send([{"command": "listClients", "verbose": False}])
        if resp.get("error"):
            raise CommandFailed("listClients", str(resp["error"]))
        data = resp.get("data") or {}
        return [str(c) for c in data.get("clients", [])]

    async def _ensure_role(self, control: _Control, agent: str, queues: Sequence[str]) -> None:
        role = role_name(agent)
        acls = agent_role_acls(self.prefix, agent, queues)
        default, modify = await control.send(
            [
                {"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS},
                # Replaces the role's ACLs; a role not there yet is created below.
                {"command": "modifyRole", "rolename": role, "acls": acls},
            ]
        )
        if default.get("error"):
            raise CommandFailed("setDefaultACLAccess", str(default["error"]))
        error = modify.get("error")
        if error and "not exist" in str(error).lower():
            (created,) = await control.send(
                [{"command": "createRole", "rolename": role, "acls": acls}]
            )
            error = created.get("error")
        if error:
            raise CommandFailed("createRole", str(error))

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[_Control]:
        """One admin connection subscribed to the answers, the whole use bounded by timeout."""
        tag = secrets.token_hex(6)
        try:
            async with asyncio.timeout(self.timeout):
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    username=self._username,
                    password=self._password,
                    identifier=f"hotline-dynsec-{tag}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=self.timeout,
                ) as client:
                    await client.subscribe(RESPONSE_TOPIC, qos=1)
                    yield _Control(client, tag)
        except TimeoutError:
            raise BrokerUnavailable(
                f"no answer from the dynamic security plugin at {self.host}:{self.port} "
                f"within {self.timeout:g} s"
            ) from None
        except MqttConnectError as e:
            code = e.rc.value if isinstance(e.rc, ReasonCode) else e.rc
            if code in _REFUSED_LOGIN:
                raise AdminLoginRefused(
                    f"the broker at {self.host}:{self.port} refused the login of "
                    f"{self._username!r} ({e})"
                ) from None
            raise BrokerUnavailable(f"broker at {self.host}:{self.port}: {e}") from None
        except aiomqtt.MqttError as e:
            raise BrokerUnavailable(f"broker at {self.host}:{self.port}: {e}") from None


class _Control:
    """Commands over one admin connection, answers matched by their correlation data."""

    def __init__(self, client: aiomqtt.Client, tag: str) -> None:
        self._client = client
        self._tag = tag
        self._sent = 0

    async def send(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = [f"{self._tag}-{self._sent + i}" for i in range(len(commands))]
        self._sent += len(commands)
        wire = [{**cmd, "correlationData": key} for cmd, key in zip(commands, keys, strict=True)]
        await self._client.publish(CONTROL_TOPIC, json.dumps({"commands": wire}), qos=1)
        answers: dict[str, dict[str, Any]] = {}
        async for message in self._client.messages:
            for resp in _responses(message.payload):
                corr = resp.get("correlationData")
                if corr in keys:
                    answers[str(corr)] = resp
            if len(answers) == len(keys):
                break
        if len(answers) != len(keys):
            raise BrokerUnavailable("the broker closed the connection before answering")
        return [answers[k] for k in keys]


def _responses(payload: object) -> list[dict[str, Any]]:
    if not isinstance(payload, bytes | bytearray):
        return []
    try:
        doc = json.loads(payload)
    except ValueError:
        return []
    responses = doc.get("responses") if isinstance(doc, dict) else None
    return [r for r in responses if isinstance(r, dict)] if isinstance(responses, list) else []
