"""The dispatcher's composition: fold the streams, decide, append with compare-and-set.

State lives only as a fold of BORGFLOW_JOBS (plus the latest heartbeat and
progress per agent and job), rebuilt from the streams on every start, so a
restart loses nothing. Every send is appended with the job's last sequence as
the expected one: if anything happened to the job meanwhile (a cancel, another
dispatcher's send), the server refuses it, so a job is never sent twice
however many dispatchers run. A lease keeps just one of them active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.dispatcher.chains import children_of, retry_for
from services.dispatcher.domain import Decision, Job, decide
from services.dispatcher.supervise import tick
from services.dispatcher.watch import AgentSeen, online_agents
from shared import bus
from shared.config import Settings, SystemSettings
from shared.events import (
    ACTIVE,
    AgentHeartbeat,
    AgentOffline,
    AgentOnline,
    AgentStateData,
    JobEvent,
    JobProgress,
    JobQueued,
    JobRequeued,
    JobSent,
    JobSpec,
    JobStatus,
    SentData,
    decode,
)
from shared.exceptions import ConcurrencyConflict, InvalidTransition
from shared.follow import caught_up, follow
from shared.jobs import JobView, Waiting, evolve
from shared.lease import Lease
from shared.livesettings import watch_settings
from shared.streams import AGENTS, JOBS, PROGRESS, WAITING_BUCKET, ensure_streams

log = logging.getLogger(__name__)
# How long the dispatcher waits before deciding again when NATS did not answer.
RETRY_AFTER_S = 0.5


class Dispatcher:
    def __init__(self, js: JetStreamContext, clock: Callable[[], float] = time.time) -> None:
        self.js = js
        self.clock = clock
        self.limits = SystemSettings()
        self.views: dict[str, JobView] = {}  # active jobs only
        self.order: dict[str, int] = {}  # job id -> sequence it (re)entered the queue at
        # job id -> sequence of the last message on its subjects, applied or not: the
        # compare-and-set token (a skipped bad message still moves the server's tail).
        self.tail: dict[str, int] = {}
        self.specs: dict[str, JobSpec] = {}  # active jobs' specs (chains and stall limits)
        # Children due after a finished parent, until their job.queued is seen. After a
        # replay this holds exactly the ones a crash kept from being queued.
        self.chains_due: dict[str, JobSpec] = {}
        self.seen: dict[str, AgentSeen] = {}  # agent -> its last heartbeat
        self.announced: dict[str, bool] = {}  # agent -> online, as last announced on the stream
        self.progress_at: dict[str, float] = {}  # active job -> time of its last progress
        self.ready = asyncio.Event()
        self.settings_ready = asyncio.Event()
        self.agents_ready = asyncio.Event()
        self.lease: Lease | None = None
        self.last: Decision = Decision(start=[])
        self._published_waiting: dict[str, Waiting] | None = None
        self.wake = asyncio.Event()

    @property
    def active(self) -> bool:
        return self.lease is None or self.lease.held.is_set()

    # ------------------------------------------------------------------ state

    def apply(self, event: JobEvent, seq: int) -> None:
        job_id = event.job_id or ""
        view = self.views.get(job_id)
        if view is not None and seq <= view.last_seq:
            return  # our own append, already applied when it was acknowledged
        try:
            new = evolve(view, event, seq)
        except InvalidTransition as e:
            if view is not None or isinstance(event, JobQueued):
                log.warning("skipping event: %s", e, extra={"job_id": job_id, "seq": seq})
            return  # events of finished jobs we no longer track are expected
        if isinstance(event, JobQueued):
            self.chains_due.pop(job_id, None)
            self.specs[job_id] = event.data
        if new is not None and new.status not in ACTIVE and job_id in self.specs:
            spec = self.specs[job_id]
            for child in [*children_of(spec, new), *filter(None, [retry_for(spec, new)])]:
                self.chains_due[child.id] = child
        if new is None or new.status not in ACTIVE:
            for table in (self.specs, self.views, self.order, self.tail, self.progress_at):
                table.pop(job_id, None)
            return
        self.views[job_id] = new
        self.tail[job_id] = max(seq, self.tail.get(job_id, 0))
        if isinstance(event, JobQueued | JobRequeued):
            self.order[job_id] = seq

    def online(self) -> set[str]:
        return online_agents(self.seen, self.clock())

    def decision(self) -> Decision:
        queued: list[Job] = []
        active: list[Job] = []
        for v in self.views.values():
            job = Job(
                id=v.id,
                type=v.type,
                agent=v.agent,
                repository_id=v.repository_id,
                plan_id=v.plan_id,
                trigger=v.trigger,
                priority=v.priority,
                order=self.order.get(v.id, v.last_seq),
                not_before=v.not_before.timestamp() if v.not_before else None,
            )
            (queued if v.status == JobStatus.QUEUED else active).append(job)
        return decide(queued, active, self.limits, self.online(), self.clock())

    # ------------------------------------------------------------------ acting

    async def append(self, event: JobEvent, expect: int | None = None) -> bool:
        """Append a transition guarded by the job's tail; False if the job moved on."""
        job_id = event.job_id or ""
        view = self.views.get(job_id)
        token = expect if expect is not None else self.tail.get(job_id, view.last_seq if view else 0)
        try:
            ack = await bus.publish(self.js, event, expect_last_seq=token)
        except ConcurrencyConflict:
            # The job moved on (cancelled, or another dispatcher acted): the stream
            # will tell us what happened; nothing to undo here.
            log.info("%s lost a race", event.type, extra={"job_id": job_id})
            return False
        # Apply our own append now, so the next decision counts it before the stream
        # echoes it back (the echo is then a no-op: same sequence).
        self.apply(event, int(ack.seq))
        return True

    async def queue_chains(self) -> None:
        """Queue follow-ups (chained jobs, automatic retries); each exactly once, whoever tries."""
        for child in list(self.chains_due.values()):
            event = JobQueued(job_id=child.id, data=child, at=child.created_at)
            # Expecting "no event yet" for the child: a second attempt is refused.
            if await self.append(event, expect=0):
                extra = {"job_id": child.id, "parent_id": child.parent_id, "type": child.type}
                log.info("queued a chained job", extra=extra)
            self.chains_due.pop(child.id, None)

    async def dispatch(self) -> None:
        """Send every job that may start now, and say why the others wait."""
        if not (self.ready.is_set() and self.settings_ready.is_set() and self.agents_ready.is_set()):
            return
        if not self.active:
            return
        if self.chains_due:
            await self.queue_chains()
        self.last = self.decision()
        for job_id in self.last.start:
            view = self.views.get(job_id)
            if view is None or view.status != JobStatus.QUEUED:
                continue
            if await self.append(JobSent(job_id=job_id, data=SentData(agent=view.agent))):
                log.info("sent", extra={"job_id": job_id, "agent": view.agent, "type": view.type})
        await self.publish_waiting()

    async def dispatch_or_wait(self, stop: asyncio.Event) -> None:
        """Dispatch; with NATS away, wait a moment and decide again from what the stream says.

        A send whose answer was lost may have landed or not: either way the next try is
        guarded by the job's tail, so it can never be sent twice.
        """
        try:
            await self.dispatch()
        except (nats.errors.Error, TimeoutError) as e:
            log.warning("dispatching failed, trying again shortly: %s", e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_AFTER_S)
            self.wake.set()

    async def publish_waiting(self) -> None:
        """Every queued job's reason to wait, as one KV entry the api merges into job answers."""
        waiting = self.last.waiting
        if waiting == self._published_waiting:
            return
        kv = await self.js.key_value(WAITING_BUCKET)
        await kv.put("queue", msgspec.json.encode({"waiting": waiting}))
        self._published_waiting = dict(waiting)

    async def announce(self, agent: str, online: bool) -> None:
        """Append agent.online/agent.offline once per change, whichever dispatcher sees it."""
        seen = self.seen.get(agent)
        last_seen = datetime.fromtimestamp(seen.at, UTC) if seen else None
        state = AgentStateData(agent=agent, last_seen=last_seen)
        event: AgentOnline | AgentOffline = AgentOnline(data=state) if online else AgentOffline(data=state)
        await bus.publish(self.js, event, msg_id=f"{event.type}:{agent}:{seen.at if seen else 0}")
        self.announced[agent] = online
        log.warning("agent %s", "online" if online else "offline", extra={"agent": agent})

    # ------------------------------------------------------------------ loops

    async def follow_jobs(self) -> None:
        async for msgs in follow(self.js, JOBS, ["borgflow.jobs.>"]):
            for m in msgs:
                seq = bus.seq_of(m)
                event = _job_event(m)
                if event is not None:
                    self.apply(event, seq)
                job_id = m.subject.split(".")[2]
                if job_id in self.views:
                    self.tail[job_id] = max(seq, self.tail.get(job_id, 0))
            if caught_up(msgs):
                self.ready.set()
            self.wake.set()

    async def follow_agents(self) -> None:
        # An empty stream yields nothing: start as "no agent seen" rather than wait.
        if (await self.js.stream_info(AGENTS)).state.messages == 0:
            self.agents_ready.set()
        async for msgs in follow(self.js, AGENTS, ["borgflow.agents.>"], last_per_subject=True):
            before = self.online()
            for m in msgs:
                with contextlib.suppress(msgspec.MsgspecError):
                    e = decode(m.data)
                    if isinstance(e, AgentHeartbeat):
                        self.seen[e.data.agent] = AgentSeen(e.at.timestamp(), e.data.interval_s)
                    elif isinstance(e, AgentOnline | AgentOffline):
                        self.announced[e.data.agent] = isinstance(e, AgentOnline)
            if caught_up(msgs):
                self.agents_ready.set()
            if self.online() != before:
                self.wake.set()

    async def follow_progress(self) -> None:
        async for msgs in follow(self.js, PROGRESS, ["borgflow.progress.>"], last_per_subject=True):
            for m in msgs:
                job_id = m.subject.split(".")[2]
                if job_id in self.views:
                    with contextlib.suppress(msgspec.MsgspecError):
                        e = decode(m.data)
                        if isinstance(e, JobProgress):
                            self.progress_at[job_id] = e.at.timestamp()

    async def follow_settings(self) -> None:
        async for limits in watch_settings(self.js):
            self.limits = limits
            self.settings_ready.set()
            log.info("limits in force", extra={"max_concurrent_jobs": limits.max_concurrent_jobs})
            self.wake.set()

    async def loop(self, stop: asyncio.Event, lease: Lease | None = None) -> None:
        self.lease = lease
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.follow_jobs(), name="dispatcher-jobs"),
                tg.create_task(self.follow_agents(), name="dispatcher-agents"),
                tg.create_task(self.follow_progress(), name="dispatcher-progress"),
                tg.create_task(self.follow_settings(), name="dispatcher-settings"),
                tg.create_task(tick(self, stop), name="dispatcher-tick"),
            ]
            if lease is not None:
                lease.on_acquire = self.wake.set  # a standby that takes over acts at once
                tasks.append(tg.create_task(lease.keep(stop), name="dispatcher-lease"))
            stopping = tg.create_task(stop.wait())
            while not stop.is_set():
                woke = asyncio.ensure_future(self.wake.wait())
                await asyncio.wait({woke, stopping}, return_when=asyncio.FIRST_COMPLETED)
                woke.cancel()
                self.wake.clear()
                if not stop.is_set():
                    await self.dispatch_or_wait(stop)
            for t in tasks:
                t.cancel()


def _job_event(m: Msg) -> JobEvent | None:
    try:
        e = decode(m.data)
    except msgspec.MsgspecError as err:
        log.warning("skipping a malformed message: %s", err, extra={"subject": m.subject})
        return None
    return e if isinstance(e, JobEvent) else None


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Dispatch until `stop` is set; one active dispatcher at a time, the others stand by."""
    nc = await bus.connect(settings.nats_url, "dispatcher")
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await Dispatcher(js).loop(stop, Lease(js, "dispatcher"))
    finally:
        await nc.close()
