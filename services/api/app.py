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

from services.api import auth, nul_guard, queries, system_settings, waiting, ws_close
from services.api.controllers.agents import AgentController
from services.api.controllers.calendar import CalendarController
from services.api.controllers.events import EventController
from services.api.controllers.health import HealthController
from services.api.controllers.jobs import JobController
from services.api.controllers.logs import LogController
from services.api.controllers.notifications import NotificationController
from services.api.controllers.pages import PageController, static_files
from services.api.controllers.plans import PlanController
from services.api.controllers.queue import QueueController
from services.api.controllers.repositories import RepositoryController
from services.api.controllers.schedules import ScheduleController
from services.api.controllers.settings import SettingsController
from services.api.controllers.tokens import TokenController
from services.api.errors import EXCEPTION_HANDLERS
from services.api.runtime import ApiDeps, Runtime, runtime_of
from shared import bus, db
from shared.config import Settings
from shared.streams import JOBS

log = logging.getLogger(__name__)

__all__ = ["ApiDeps", "create_app", "run"]

# How long a side task has to end once cancelled before it is asked again (a library
# may swallow a cancellation: asyncio.wait_for in Python 3.11 can).
CANCEL_RETRY_S = 1.0


async def start(settings: Settings, deps: ApiDeps | None) -> Runtime:
    """Connect (unless given connections), then prepare what every request relies on."""
    if deps is None:
        pool = await db.create_pool(settings.database_url)
        try:
            async with queries.connection(pool) as conn:
                await db.migrate(conn)
            nc = await bus.connect(settings.nats_url, "borgflow-api")
        except BaseException:
            await pool.close()
            raise
    else:
        pool, nc = deps.pool, deps.nc
    rt = Runtime(settings=settings, pool=pool, nc=nc, js=nc.jetstream(), owns_connections=deps is None)
    try:
        # Postgres owns the settings: stream limits and a fresh (or stale) KV bucket get them now.
        await system_settings.publish(rt.js, await system_settings.load(pool))
        if settings.admin_token:
            await auth.ensure_admin_token(pool, settings.admin_token)
        info = await rt.js.stream_info(JOBS)
        rt.start_seq = int(info.state.last_seq or 0)
        rt.waiting_task = asyncio.create_task(waiting.watch(rt.js, rt.waiting), name="api-waiting-watch")
    except BaseException:
        await stop(rt)
        raise
    log.info("api ready to serve", extra={"jobs_seq": rt.start_seq})
    return rt


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait for its end, asking again if a library swallowed the request."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_RETRY_S)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


async def stop(rt: Runtime) -> None:
    """Stop the side tasks, then close what `start` opened itself; given connections belong to the caller."""
    if rt.waiting_task is not None:
        await _cancel(rt.waiting_task)
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

    return Litestar(
        route_handlers=[
            HealthController,
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
            NotificationController,
            TokenController,
            PageController,
            static_files(),
        ],
        lifespan=[lifespan],
        dependencies={
            "rt": Provide(runtime_of, sync_to_thread=False),
            "principal": Provide(auth.principal_of, sync_to_thread=False),
        },
        middleware=[DefineMiddleware(auth.TokenAuthMiddleware, exclude=[f"^{p}" for p in auth.PUBLIC_PATHS])],
        guards=[auth.authorize],
        before_request=nul_guard.refuse_nul,
        exception_handlers=EXCEPTION_HANDLERS,
        # The process configures logging (`borgflow up` runs several services in one).
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="borgflow",
            version="1",
            path="/schema",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
    )


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
