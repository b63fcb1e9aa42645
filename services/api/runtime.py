"""What every handler works with: settings, the Postgres pool and the NATS connection."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from litestar.datastructures import State
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.job_projects import ProjectCache
from services.api.token_cache import TokenCache
from services.api.waiting import WaitingBoard
from shared.config import Settings
from shared.secretkeys import KeySource


@dataclass
class ApiDeps:
    """Connections the caller owns and closes (a composition root running several services)."""

    pool: asyncpg.Pool
    nc: NATS


@dataclass
class Runtime:
    """The api's live state, kept on `app.state.runtime` for the app's lifetime."""

    settings: Settings
    pool: asyncpg.Pool
    nc: NATS
    js: JetStreamContext
    # BORGFLOW_JOBS' last sequence when the api started: health waits for the jobs
    # projection to reach it, so a restarted system never answers from a stale view.
    start_seq: int = 0
    caught_up: bool = False
    # Whether `stop` closes pool and NATS (the api opened them) or leaves them to the caller.
    owns_connections: bool = True
    # Why queued jobs wait: asked of the dispatcher for the jobs of each answer.
    waiting: WaitingBoard = field(default_factory=WaitingBoard)
    # Which project each job belongs to, for filtering websocket events (services/api/job_projects.py).
    projects: ProjectCache = field(default_factory=ProjectCache)
    # Tokens looked up a moment ago (services/api/token_cache.py): no query per request.
    tokens: TokenCache = field(default_factory=TokenCache)
    # The keys of secrets at rest (shared/secretkeys.py); a runtime built without them has none.
    secret_keys: KeySource = field(default_factory=KeySource.unset)


def runtime_of(state: State) -> Runtime:
    """Dependency: the runtime the lifespan put on the app's state."""
    rt: Runtime = state.runtime
    return rt
