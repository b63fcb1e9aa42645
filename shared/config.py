"""Settings: the process's own (from env and flags) and the system's live limits.

Process settings are read once, from the environment passed in, never at import
time. System settings are the body of GET/PUT /api/settings: stored by the api
in Postgres and mirrored into a JetStream KV bucket so every service sees a
change at once, without a restart.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.exceptions import ConfigError

DEFAULT_API_URL = "http://127.0.0.1:8080"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "borgflow"


def default_borg_bin() -> str:
    """borg from this interpreter's environment (the venv), else from PATH."""
    here = Path(sys.executable).parent / "borg"
    if here.exists():
        return str(here)
    return shutil.which("borg") or "borg"


# A Debian package name (Debian policy 5.6.1): lower-case letters, digits, + - . ; two or more, starting alphanumeric.
DebianPackage = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9+.-]+$", max_length=200)]


class SystemSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Live limits and retention; PUT /api/settings changes them without a restart."""

    max_concurrent_jobs: int = 4
    """Jobs that may be sent or running at once, across every agent."""
    max_concurrent_manual_backups: int | None = None
    """Backups started by a person (manual, cli, api) at once; null: no separate limit."""
    max_concurrent_scheduled_backups: int | None = None
    """Backups started by a schedule at once; null: no separate limit."""
    max_concurrent_scheduled_checks: int | None = None
    """Checks started by a schedule at once; null: no separate limit."""
    agent_slots: int = 1
    """Jobs one agent runs at once."""
    stall_timeout_s: int = 1800
    """A running job with no progress for this long is cancelled as stalled."""
    log_retention_days: int = 30
    """Log lines older than this are dropped from BORGFLOW_LOGS."""
    log_max_bytes: int = 1 << 30
    """BORGFLOW_LOGS keeps at most this many bytes; the oldest lines go first."""
    log_save_policy: Literal["all", "failed_and_warnings", "failed_only"] = "all"
    """Which finished jobs' logs are kept (within log_retention_days and log_max_bytes): all,
    only those that failed or warned, or only failed ones; the others' logs are dropped when
    they end, leaving one line that says why."""
    sent_timeout_s: float = 30.0
    """A sent job its agent has not started after this long goes back to the queue."""
    agent_lost_after_s: float = 120.0
    """An agent offline this long has its sent and running jobs failed as agent_lost."""
    package_allow_list: list[DebianPackage] = []
    """Debian packages a package_install job may install on an agent; any other is refused (400)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How one process connects and identifies itself."""

    nats_url: str = "nats://127.0.0.1:4222"
    """NATS with JetStream: one URL, or several comma-separated (the servers of a cluster)."""
    stream_replicas: int = 1
    """Replicas of every stream and KV bucket (3 on a 3-server cluster); raised on a running system."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/borgflow"
    """Postgres holding configuration and projections."""
    api_url: str = DEFAULT_API_URL
    """Where executors fetch secrets and clients talk to the api."""
    token: str | None = None
    """Bearer token this process presents to the api (executors: an agent token)."""
    admin_token: str | None = None
    """The admin token the api accepts (stored hashed); set by `borgflow up`."""
    join_token: str | None = None
    """A token the api accepts (stored hashed) with which an executor enrols for its own agent token."""
    agent: str = "local"
    """Agent name of an executor."""
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    data_dir: str = ""
    """Where an executor keeps borg's cache/config and its own state."""
    borg_bin: str = ""
    """The borg executable; empty: the venv's, else PATH's."""
    heartbeat_interval_s: float = 5.0
    """How often an executor says it is alive; 3 missed means offline."""
    public_url: str = ""
    """Base URL people open (links in notifications); defaults to api_url."""
    metrics_listen: str = ""
    """HOST:PORT where this process serves /healthz and /metrics; empty: not served."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 << 20
    """The largest request body the api reads (413 beyond); a full POST /api/jobs/batch must fit."""
    max_sockets_per_token: Annotated[int, msgspec.Meta(ge=1)] = 20
    """Websockets one token may have open at once, per api process (one more is closed with 4429)."""
    auth_failures_per_minute: Annotated[int, msgspec.Meta(ge=0)] = 10
    """Unknown or revoked tokens one client address may present in a minute before it must wait
    (429 with Retry-After, a minute, doubling while it goes on); 0: never throttled."""
    secret_key: str | None = None
    """The api's key(s) for secrets at rest (base64; several comma-separated, newest first, during a
    rotation); unset: the key file DATA_DIR/secret-key (shared/secretkeys.py)."""

    @property
    def borg(self) -> str:
        return self.borg_bin or default_borg_bin()

    @property
    def page_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")

    @property
    def nats_servers(self) -> list[str]:
        """The NATS servers to connect through, in the order given."""
        return nats_servers(self.nats_url)


def nats_servers(url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222` (or one URL) as a list; a bare host:port gets nats://."""
    out = []
    for part in url.split(","):
        part = part.strip()
        if part:
            out.append(part if "://" in part else f"nats://{part}")
    return out or ["nats://127.0.0.1:4222"]


_ENV = {
    "nats_url": "BORGFLOW_NATS_URL",
    "database_url": "BORGFLOW_DATABASE_URL",
    "api_url": "BORGFLOW_API_URL",
    "token": "BORGFLOW_TOKEN",
    "admin_token": "BORGFLOW_ADMIN_TOKEN",
    "agent": "BORGFLOW_AGENT",
    "data_dir": "BORGFLOW_DATA_DIR",
    "borg_bin": "BORGFLOW_BORG",
    "heartbeat_interval_s": "BORGFLOW_HEARTBEAT_S",
    "public_url": "BORGFLOW_PUBLIC_URL",
    "stream_replicas": "BORGFLOW_STREAM_REPLICAS",
    "join_token": "BORGFLOW_JOIN_TOKEN",
    "metrics_listen": "BORGFLOW_METRICS_LISTEN",
    "max_body_bytes": "BORGFLOW_MAX_BODY_BYTES",
    "max_sockets_per_token": "BORGFLOW_MAX_SOCKETS_PER_TOKEN",
    "auth_failures_per_minute": "BORGFLOW_AUTH_FAILURES_PER_MINUTE",
    "secret_key": "BORGFLOW_SECRET_KEY",
}


def settings_from_env(env: Mapping[str, str], **overrides: object) -> Settings:
    """Settings from an environment mapping, then explicit overrides (flags) on top."""
    values: dict[str, object] = {}
    for field, var in _ENV.items():
        if env.get(var):
            values[field] = env[var]
    if env.get("BORGFLOW_LISTEN"):
        host, _, port = env["BORGFLOW_LISTEN"].rpartition(":")
        values["listen_host"], values["listen_port"] = host or "127.0.0.1", port
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not values.get("data_dir"):
        values["data_dir"] = str(default_data_dir())
    try:
        settings = msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as e:
        # "Expected `int`, got `str` - at `$.stream_replicas`": name the variable a person set.
        field = str(e).rpartition("$.")[2].strip("`")
        var = _ENV.get(field, "BORGFLOW_LISTEN" if field.startswith("listen") else field)
        raise ConfigError(f"{var}: {str(e).partition(' - at ')[0]}") from None
    if settings.stream_replicas < 1 or settings.stream_replicas > 5:
        raise ConfigError("BORGFLOW_STREAM_REPLICAS: must be between 1 and 5 (JetStream's limit)")
    if settings.admin_token and settings.admin_token == settings.join_token:
        # Tokens are stored once by their hash: the api would store the join role over the admin one.
        raise ConfigError("BORGFLOW_JOIN_TOKEN: must differ from BORGFLOW_ADMIN_TOKEN, or no admin token would remain")
    return settings
