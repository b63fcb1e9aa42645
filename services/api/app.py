"""The api service: build the Litestar app, run it with uvicorn until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Generator

import uvicorn
from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

from services.api import answers, auth, nul_guard, queries, system_settings, ws_close
from services.api.controllers import health
from services.api.controllers.agents import AgentController
from services.api.controllers.calendar import CalendarController
from services.api.controllers.events import EventController
from services.api.controllers.health import HealthController
from services.api.controllers.jobs import JobController
from services.api.controllers.logs import LogController
from services.api.controllers.metrics import MetricsController, count_jobs
from services.api.controllers.notifications import NotificationController
from services.api.controllers.pages import PageController, static_files
from services.api.controllers.plans import PlanController
from services.api.controllers.queue import QueueController
from services.api.controllers.repositories import RepositoryController
from services.api.controllers.schedules import ScheduleController
from services.api.controllers.settings import SettingsController
from services.api.controllers.timings import TimingsController
from services.api.controllers.tokens import EnrolController, TokenController
from services.api.errors import EXCEPTION_HANDLERS
from services.api.limits import body
from services.api.limits.throttle import AuthThrottle
from services.api.limits.websockets import SocketLimit, SocketSlots
from services.api.runtime import ApiDeps, Runtime, runtime_of
from services.api.waiting import WaitingBoard
from shared import bus, db, metrics, probes, secretkeys, secretrows
from shared.config import Settings
from shared.streams import JOBS

log = logging.getLogger(__name__)

__all__ = ["ApiDeps", "create_app", "run"]


async def start(settings: Settings, deps: ApiDeps | None) -> Runtime:
    """Connect (unless given connections), then prepare what every request relies on."""
    keys = secretkeys.for_process(settings)
    if deps is None:
        pool = await db.create_pool(settings.database_url)
        try:
            async with queries.connection(pool) as conn:
                await db.migrate(conn, secretrows.migration_steps(keys))
            nc = await bus.connect(settings.nats_url, "borgflow-api")
        except BaseException:
            await pool.close()
            raise
    else:
        pool, nc = deps.pool, deps.nc
    rt = Runtime(
        settings=settings, pool=pool, nc=nc, js=nc.jetstream(), owns_connections=deps is None, secret_keys=keys
    )
    try:
        async with queries.connection(pool) as conn:
            await secretrows.check_keys(conn, keys)
        # Postgres owns the settings: stream limits and a fresh (or stale) KV bucket get them now.
        await system_settings.publish(rt.js, await system_settings.load(pool), settings.stream_replicas)
        if settings.admin_token:
            await auth.ensure_admin_token(pool, settings.admin_token)
        if settings.join_token:
            await auth.ensure_join_token(pool, settings.join_token)
        info = await rt.js.stream_info(JOBS)
        rt.start_seq = int(info.state.last_seq or 0)
        rt.waiting = WaitingBoard(nc)
        probes.register("api", lambda: health.waiting_for(rt))
        metrics.before_scrape("api-jobs", lambda: count_jobs(rt))
    except BaseException:
        await stop(rt)
        raise
    log.info("api ready to serve", extra={"jobs_seq": rt.start_seq})
    return rt


async def stop(rt: Runtime) -> None:
    """Stop the side tasks, then close what `start` opened itself; given connections belong to the caller."""
    probes.register("api", lambda: "stopping")
    metrics.before_scrape("api-jobs", None)
    if rt.owns_connections:
        with contextlib.suppress(Exception):
            await rt.nc.drain()
        await rt.pool.close()


def create_app(settings: Settings, deps: ApiDeps | None = None) -> Litestar:
    """The api as an ASGI app. Without `deps` its lifespan connects to Postgres and NATS itself."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = await start(settings, deps)
        app.state.runtime = rt
        try:
            yield
        finally:
            await stop(rt)

    app = Litestar(
        route_handlers=[
            HealthController,
            MetricsController,
            RepositoryController,
            PlanController,
            JobController,
            LogController,
            QueueController,
            AgentController,
            SettingsController,
            EventController,
            ScheduleController,
            CalendarController,
            TimingsController,
            NotificationController,
            TokenController,
            EnrolController,
            PageController,
            static_files(),
        ],
        lifespan=[lifespan],
        dependencies={
            "rt": Provide(runtime_of, sync_to_thread=False),
            "principal": Provide(auth.principal_of, sync_to_thread=False),
        },
        middleware=[
            DefineMiddleware(
                auth.TokenAuthMiddleware,
                throttle=AuthThrottle(settings.auth_failures_per_minute),
                exclude=[f"^{p}" for p in auth.PUBLIC_PATHS],
            ),
            # After authentication: it counts sockets by the token that opened them.
            SocketLimit(SocketSlots(settings.max_sockets_per_token)),
        ],
        guards=[auth.authorize],
        before_request=nul_guard.refuse_nul,
        exception_handlers={**EXCEPTION_HANDLERS, 413: body.too_large},
        request_max_body_size=settings.max_body_bytes,
        # The process configures logging (`borgflow up` runs several services in one).
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="borgflow",
            version="1",
            path="/schema",
            use_handler_docstrings=True,
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
    )
    answers.document(app.routes, auth.PUBLIC_PATHS)
    answers.link(app.openapi_schema)
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run(settings: Settings, stop: asyncio.Event, deps: ApiDeps | None = None) -> None:
    """Serve on settings.listen_host:listen_port until `stop` is set."""
    config = uvicorn.Config(
        ws_close.readable_refusals(create_app(settings, deps)),
        host=settings.listen_host,
        port=settings.listen_port,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = _Server(config)

    async def stop_when_told() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_told(), name="api-stop-watcher")
    try:
        await server.serve()
    except SystemExit:  # uvicorn's way to say start-up failed (lifespan, or the port is taken)
        raise RuntimeError(
            f"the api could not start on {settings.listen_host}:{settings.listen_port}; see its log"
        ) from None
    finally:
        watcher.cancel()
    if not server.started and not stop.is_set():
        raise RuntimeError("the api stopped before it started; see its log")
