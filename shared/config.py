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

import msgspec

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
    sent_timeout_s: float = 30.0
    """A sent job its agent has not started after this long goes back to the queue."""
    agent_lost_after_s: float = 120.0
    """An agent offline this long has its sent and running jobs failed as agent_lost."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How one process connects and identifies itself."""

    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server with JetStream."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/borgflow"
    """Postgres holding configuration and projections."""
    api_url: str = DEFAULT_API_URL
    """Where executors fetch secrets and clients talk to the api."""
    token: str | None = None
    """Bearer token this process presents to the api (executors: an agent token)."""
    admin_token: str | None = None
    """The admin token the api accepts (stored hashed); set by `borgflow up`."""
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

    @property
    def borg(self) -> str:
        return self.borg_bin or default_borg_bin()

    @property
    def page_url(self) -> str:
        return (self.public_url or self.api_url).rstrip("/")


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
    return msgspec.convert(values, Settings, strict=False)
