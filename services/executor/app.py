"""Composition: connect, learn the host's facts, settle what a previous run left, take jobs and
beat the heart until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

import httpx
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.executor.agent import Agent
from services.executor.borgs import Borgs, borg_root
from services.executor.config import ExecutorOptions, options_from_env
from services.executor.enrolment import Credentials, enrol_early
from services.executor.exceptions import RelaunchRequested
from services.executor.fencing import Fence
from services.executor.heartbeat import beat
from services.executor.hostinfo import gather_facts
from services.executor.records import RunningRecords, state_dir
from services.executor.recovery import Recovery
from services.executor.runner import RunContext
from services.executor.secrets import HttpSecretSource, SecretSource
from shared import bus, probes
from shared.config import Settings, default_data_dir
from shared.runtime import cancel_and_wait

log = logging.getLogger(__name__)

# nats-py waits up to 30 s for subscriptions to drain; nothing of ours needs that long.
DRAIN_TIMEOUT_S = 5.0


async def run(
    settings: Settings,
    stop: asyncio.Event,
    *,
    secrets: SecretSource | None = None,
    options: ExecutorOptions | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run the executor of `settings.agent` until `stop` is set, then stop cleanly.

    `secrets` defaults to the api at `settings.api_url` with `settings.token` (an injected
    source stays open: its owner closes it);
    `environ` (default: this process's) is what borg inherits PATH, HOME and locale from;
    `options` default to ExecutorOptions with BORGFLOW_CANCEL_GRACE_S from `environ`.
    Jobs still running at stop are interrupted and end failed as `executor_restarted`.
    Before taking jobs, the jobs a previous run left (it died) are reconciled: see recovery.py.
    """
    environ = os.environ if environ is None else environ
    options = options or options_from_env(environ)
    extra = {"agent": settings.agent}
    borg_dir = borg_root(settings.data_dir or default_data_dir(), settings.agent)
    configured_borg = settings.borg
    facts = await gather_facts(settings.agent, Borgs(borg_dir, configured_borg, None).executable())
    borgs = Borgs(borg_dir, configured_borg, facts.borg_version)
    own_secrets = secrets is None  # an injected source belongs to the caller, who closes it
    here = state_dir(settings.data_dir or default_data_dir(), settings.agent)
    enrolling: asyncio.Task[None] | None = None
    if secrets is None:
        http = httpx.AsyncClient(timeout=10.0)
        credentials = Credentials(settings.api_url, settings.token, settings.agent, here, http)
        secrets = HttpSecretSource(
            settings.api_url, None, patience_s=options.secret_patience_s, client=http, credentials=credentials
        )
        enrolling = asyncio.create_task(enrol_early(credentials, stop), name="enrol")
    records = RunningRecords(here)
    previous = await asyncio.to_thread(records.load)

    async def close_secrets() -> None:
        if enrolling is not None:
            await cancel_and_wait(enrolling)
        if own_secrets:
            await secrets.aclose()
            if isinstance(secrets, HttpSecretSource):
                await secrets.client.aclose()

    # An update_agent's new borgflow, once asked for: this run ends in RelaunchRequested.
    relaunching: list[str] = []
    relaunch_asked = asyncio.Event()

    def relaunch(exe: str) -> None:
        relaunching.append(exe)
        relaunch_asked.set()

    nc: NATS | None = None
    try:
        nc = await bus.connect_unless_stopped(settings.nats_url, f"executor-{settings.agent}", stop)
    finally:
        if nc is None:  # stopped (or failed) before NATS answered: nothing ran, nothing to report
            await close_secrets()
    if nc is None:
        return
    try:
        js = nc.jetstream()
        ctx = RunContext(
            js=js,
            settings=settings,
            options=options,
            secrets=secrets,
            facts=facts,
            environ=dict(environ),
            records=records,
            borgs=borgs,
            connected=lambda: nc.is_connected,
            relaunch=relaunch,
        )
        recovery = Recovery(ctx, previous)
        # Read the previous run's last heartbeat before our first one replaces it.
        await recovery.gather()
        fence = Fence()
        agent = Agent(ctx, recovery, fence)
        # Our consumer exists before our first heartbeat: no dispatcher sends to us before it.
        await _prepare(agent)
        heart = asyncio.create_task(
            beat(js, ctx.current_facts, lambda: agent.running, settings.heartbeat_interval_s, stop), name="heartbeat"
        )
        side = [
            asyncio.create_task(fence.watch(js), name="fence"),
            asyncio.create_task(agent.watch_runs(settings.heartbeat_interval_s, stop), name="watch-runs"),
        ]
        recovered = asyncio.Event()
        intake = asyncio.create_task(_recover_then_take_jobs(agent, recovery, stop, recovered), name="intake")
        log.info("executor ready", extra=extra | {"borg_version": facts.borg_version, "host": facts.host})

        def problem() -> str | None:
            if not nc.is_connected:
                return "NATS is not connected"
            return None if recovered.is_set() else "settling the jobs its previous run left"

        try:
            with probes.registered("executor", problem):
                await _until_stopped_or_relaunched(stop, relaunch_asked, agent, intake)
        finally:
            # Also when this task is cancelled instead of stopped: borg must not outlive us.
            # Order matters: stop taking jobs first, then interrupt and report the running
            # ones (their outcome events still need the connection), then close it.
            log.info("executor stopping", extra=extra | {"running": agent.running})
            await cancel_and_wait(intake)
            await agent.shutdown(options.shutdown_timeout_s)
            await cancel_and_wait(heart, *side)
    finally:
        await close_secrets()
        try:
            # Every event we publish was acknowledged already: draining only tidies up.
            await asyncio.wait_for(nc.drain(), DRAIN_TIMEOUT_S)
        except Exception as e:
            log.warning("closing the NATS connection without draining: %s", e, extra=extra)
            with contextlib.suppress(Exception):
                await nc.close()
    log.info("executor stopped", extra=extra)
    if relaunching and not stop.is_set():
        raise RelaunchRequested(relaunching[-1])


async def _until_stopped_or_relaunched(
    stop: asyncio.Event, relaunch: asyncio.Event, agent: Agent, intake: asyncio.Task[None]
) -> None:
    """Until `stop`; or, asked to relaunch, until the jobs running here have ended.

    No new job is taken meanwhile: what the dispatcher sends waits in this agent's durable
    consumer for the executor it relaunches into. A stop (a signal) while waiting still
    stops; the next start relaunches then (installs.py), and publishes the recorded outcome.
    """
    stopping = asyncio.ensure_future(stop.wait())
    asking = asyncio.ensure_future(relaunch.wait())
    try:
        await asyncio.wait({stopping, asking}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return
        log.info("relaunching once the running jobs have ended", extra={"agent": agent.agent, "running": agent.running})
        await cancel_and_wait(intake)
        idle = asyncio.ensure_future(agent.idle())
        await asyncio.wait({stopping, idle}, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
    finally:
        stopping.cancel()
        asking.cancel()


async def _prepare(agent: Agent) -> None:
    # No job stream yet: nothing was ever sent to anyone; the consumer comes with it later.
    with contextlib.suppress(NotFoundError):
        await bus.patiently("making the job consumer", agent.prepare)


async def _recover_then_take_jobs(
    agent: Agent, recovery: Recovery, stop: asyncio.Event, recovered: asyncio.Event
) -> None:
    # No new job before the old ones are settled: a stale lock broken here must not be
    # one a new job of ours has just taken, and the slot of a job still on record is taken.
    await recovery.run()
    recovered.set()
    await _take_jobs(agent, stop)


async def _take_jobs(agent: Agent, stop: asyncio.Event) -> None:
    """Attach the durable consumer and consume; reattach after a failure, until cancelled."""
    delay = 0.2
    while not stop.is_set():
        try:
            sub = await _attach(agent)
        except NotFoundError:
            # The api (or `borgflow up`) creates the streams with the live limits; an
            # executor that created them itself would reset those limits to defaults.
            log.warning("job stream not there yet, waiting", extra={"agent": agent.agent})
        except Exception as e:
            log.warning("cannot attach the job consumer yet: %s", e, extra={"agent": agent.agent})
        else:
            delay = 0.2
            try:
                await agent.consume(sub)
            except Exception:
                log.exception("job intake failed, reattaching", extra={"agent": agent.agent})
            finally:
                # Without this, draining the connection waits for the cancelled fetch's
                # subscription until nats-py's drain timeout (30 s).
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, 5.0)


async def _attach(agent: Agent) -> JetStreamContext.PullSubscription:
    """Create the pull subscription; if cancelled meanwhile, finish and detach it.

    An orphaned subscription with a fetch answer queued in it would hold up
    draining the connection at stop.
    """
    attaching = asyncio.ensure_future(agent.subscribe())
    try:
        return await asyncio.shield(attaching)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            sub = await attaching
            await sub.unsubscribe()
        raise
