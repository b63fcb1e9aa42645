"""Composition: connect, learn the host's facts, settle what a previous run left, take jobs and
beat the heart until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from services.executor.agent import Agent
from services.executor.config import ExecutorOptions, options_from_env
from services.executor.heartbeat import beat
from services.executor.hostinfo import gather_facts
from services.executor.records import RunningRecords, state_dir
from services.executor.recovery import Recovery
from services.executor.runner import RunContext
from services.executor.secrets import HttpSecretSource, SecretSource
from shared import bus
from shared.config import Settings, default_data_dir

log = logging.getLogger(__name__)

# nats-py waits up to 30 s for subscriptions to drain; nothing of ours needs that long.
DRAIN_TIMEOUT_S = 5.0
CANCEL_AGAIN_S = 0.2


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
    facts = await gather_facts(settings.agent, settings.borg)
    own_secrets = secrets is None  # an injected source belongs to the caller, who closes it
    secrets = secrets or HttpSecretSource(settings.api_url, settings.token, patience_s=options.secret_patience_s)
    records = RunningRecords(state_dir(settings.data_dir or default_data_dir(), settings.agent))
    previous = await asyncio.to_thread(records.load)
    try:
        nc = await bus.connect(settings.nats_url, f"executor-{settings.agent}")
    except BaseException:
        if own_secrets:
            await secrets.aclose()
        raise
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
            connected=lambda: nc.is_connected,
        )
        recovery = Recovery(ctx, previous)
        # Read the previous run's last heartbeat before our first one replaces it.
        await recovery.gather()
        agent = Agent(ctx, recovery)
        heart = asyncio.create_task(
            beat(js, facts, lambda: agent.running, settings.heartbeat_interval_s, stop), name="heartbeat"
        )
        intake = asyncio.create_task(_recover_then_take_jobs(agent, recovery, stop), name="intake")
        log.info("executor ready", extra=extra | {"borg_version": facts.borg_version, "host": facts.host})
        try:
            await stop.wait()
        finally:
            # Also when this task is cancelled instead of stopped: borg must not outlive us.
            # Order matters: stop taking jobs first, then interrupt and report the running
            # ones (their outcome events still need the connection), then close it.
            log.info("executor stopping", extra=extra | {"running": agent.running})
            await _cancel(intake)
            await agent.shutdown(options.shutdown_timeout_s)
            await _cancel(heart)
    finally:
        if own_secrets:
            await secrets.aclose()
        try:
            # Every event we publish was acknowledged already: draining only tidies up.
            await asyncio.wait_for(nc.drain(), DRAIN_TIMEOUT_S)
        except Exception as e:
            log.warning("closing the NATS connection without draining: %s", e, extra=extra)
            with contextlib.suppress(Exception):
                await nc.close()
    log.info("executor stopped", extra=extra)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait for its end, cancelling again if a cancel is lost.

    Python 3.11's asyncio.wait_for swallows a cancel that arrives as its result does (in
    nats-py's fetch: a message arriving just as we stop), and the task then carries on.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _recover_then_take_jobs(agent: Agent, recovery: Recovery, stop: asyncio.Event) -> None:
    # No new job before the old ones are settled: a stale lock broken here must not be
    # one a new job of ours has just taken, and the slot of a job still on record is taken.
    await recovery.run()
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
