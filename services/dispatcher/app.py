"""The dispatcher's composition: fold the streams into a JobQueue, decide, send with compare-and-set.

State is a fold of BORGFLOW_JOBS (the jobs not ended), the agents' heartbeats and the
running jobs' last signs of life, kept in memory and in a snapshot (snapshot.py), so a
restart reads the snapshot and the tail of the stream, not its history. Every send is
appended with the job's last sequence as the expected one: if anything happened to the
job meanwhile (a cancel, another dispatcher's send), the server refuses it, so a job is
never sent twice however many dispatchers run. A lease keeps just one of them active,
and each send carries the lease's epoch, so an executor refuses a send from a dispatcher
that has since been deposed (fencing).

An event re-decides only what it can unblock (queue.py), and the sends of one round are
appended together, not one after another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.dispatcher import logkeeping, supervise
from services.dispatcher.chains import children_of, retry_for
from services.dispatcher.domain import WAIT_REASONS, Job
from services.dispatcher.queue import JobQueue
from services.dispatcher.snapshot import Snapshots, State
from services.dispatcher.supervise import tick
from services.dispatcher.watch import AgentSeen, online_agents
from shared import bus, direct, metrics, probes, tracing, waiting
from shared.config import Settings, SystemSettings
from shared.events import (
    ACTIVE,
    AgentHeartbeat,
    AgentOffline,
    AgentOnline,
    AgentStateData,
    JobEvent,
    JobQueued,
    JobRequeued,
    JobSent,
    JobSpec,
    JobStarted,
    JobStatus,
    SentData,
    decode,
)
from shared.exceptions import ConcurrencyConflict, InvalidTransition
from shared.follow import caught_up, follow
from shared.jobs import JobView, evolve
from shared.lease import Lease
from shared.livesettings import watch_settings
from shared.runtime import resilient
from shared.streams import AGENTS, JOBS, LOGS, PROGRESS, ensure_streams

log = logging.getLogger(__name__)
# How long the dispatcher waits before deciding again when NATS did not answer.
RETRY_AFTER_S = 0.5


class Dispatcher:
    def __init__(self, js: JetStreamContext, clock: Callable[[], float] = time.time) -> None:
        self.js = js
        self.nc = bus.nc_of(js)
        self.clock = clock
        self.limits = SystemSettings()
        self.queue = JobQueue(self.limits)
        self.views: dict[str, JobView] = {}  # every job not ended: queued, sent, running
        self.specs: dict[str, JobSpec] = {}  # their specs (chains, stall limits, traces)
        self.first_seq: dict[str, int] = {}  # queue order: the sequence of the job's job.queued
        # job id -> sequence of the last message on its subjects, applied or not: the
        # compare-and-set token (a skipped bad message still moves the server's tail).
        self.tail: dict[str, int] = {}
        # Children due after a finished parent, until their job.queued is seen. After a
        # replay this holds exactly the ones a crash kept from being queued.
        self.chains_due: dict[str, JobSpec] = {}
        self.seen: dict[str, AgentSeen] = {}  # agent -> its last heartbeat, as the server stored it
        self.announced: dict[str, bool] = {}  # agent -> online, as last announced on the stream
        # running job -> when it last showed life (progress or a log line), server time
        self.activity_at: dict[str, float] = {}
        self.jobs_seq = 0  # the last BORGFLOW_JOBS message folded in
        self.ready = asyncio.Event()
        self.settings_ready = asyncio.Event()
        self.agents_ready = asyncio.Event()
        self.lease: Lease | None = None
        self.snapshots = Snapshots(js)
        self.wake = asyncio.Event()
        # Jobs that ended since the fold was current, with their status: the log_save_policy
        # is applied to them (logkeeping.py), by the dispatcher holding the lease.
        self.ended: list[tuple[str, str]] = []
        self.ended_wake = asyncio.Event()
        # Awaited with the job id just before a send is appended: tests hold a send there.
        self.before_send: Callable[[str], Awaitable[None]] | None = None

    @property
    def active(self) -> bool:
        return self.lease is None or self.lease.held.is_set()

    @property
    def epoch(self) -> int | None:
        """The lease epoch sends are fenced with (None without a lease: tests, a lone dispatcher)."""
        return self.lease.epoch if self.lease is not None else None

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
            self.first_seq[job_id] = seq
        if new is None or new.status not in ACTIVE:
            if new is not None and self.ready.is_set():
                self.ended.append((job_id, new.status.value))
                self.ended_wake.set()
            spec = self.specs.get(job_id)
            if spec is not None and new is not None:
                for child in [*children_of(spec, new), *filter(None, [retry_for(spec, new)])]:
                    self.chains_due[child.id] = child
            self.forget(job_id)
            return
        self.views[job_id] = new
        self.tail[job_id] = max(seq, self.tail.get(job_id, 0))
        if isinstance(event, JobQueued):
            self.queue.add(self.job_of(new))
        elif isinstance(event, JobRequeued):
            # Back to the queue, to the place it had (its order is its first job.queued).
            if job_id in self.queue.active:
                self.queue.requeue(job_id)
            elif job_id not in self.queue.queued:
                self.queue.add(self.job_of(new))
        elif isinstance(event, JobSent | JobStarted):
            if job_id in self.queue.queued:
                self.queue.take(job_id)
            elif job_id not in self.queue.active:
                self.queue.activate(self.job_of(new))

    def forget(self, job_id: str) -> None:
        self.queue.remove(job_id)
        for table in (self.specs, self.views, self.first_seq, self.tail, self.activity_at):
            table.pop(job_id, None)

    def job_of(self, view: JobView) -> Job:
        return Job(
            id=view.id,
            type=view.type,
            agent=view.agent,
            repository_id=view.repository_id,
            plan_id=view.plan_id,
            trigger=view.trigger,
            priority=view.priority,
            order=self.first_seq.get(view.id, view.last_seq),
            not_before=view.not_before.timestamp() if view.not_before else None,
        )

    def online(self) -> set[str]:
        return online_agents(self.seen, self.clock())

    def in_flight(self) -> list[JobView]:
        """The jobs sent or running (what the clock-driven duties look at)."""
        return [self.views[j] for j in self.queue.active if j in self.views]

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
            # A follow-up is a job of its own, so a trace of its own, linked to its parent's.
            attributes = {"borgflow.job_id": child.id, "borgflow.job_type": child.type}
            links = tracing.link_to(child.traceparent)
            with tracing.tracer().start_as_current_span("job.chain", attributes=attributes, links=links):
                child = msgspec.structs.replace(child, traceparent=tracing.current_traceparent())
                event = JobQueued(job_id=child.id, data=child, at=child.created_at)
                # Expecting "no event yet" for the child: a second attempt is refused.
                if await self.append(event, expect=0):
                    extra = {"job_id": child.id, "parent_id": child.parent_id, "type": child.type}
                    log.info("queued a chained job", extra=extra)
            self.chains_due.pop(child.id, None)

    async def dispatch(self) -> None:
        """Send every job that may start now."""
        if not (self.ready.is_set() and self.settings_ready.is_set() and self.agents_ready.is_set()):
            return
        if not self.active:
            return
        self.queue.set_limits(self.limits)
        if self.chains_due:
            await self.queue_chains()
        starts = self.queue.round(self.online(), self.clock())
        if starts:
            await self.send_all(starts)

    async def send_all(self, job_ids: list[str]) -> None:
        """The round's sends, appended together (each still compare-and-set on its own job)."""
        sent = await asyncio.gather(*(self.send(job_id) for job_id in job_ids), return_exceptions=True)
        trouble: BaseException | None = None
        for job_id, outcome in zip(job_ids, sent, strict=True):
            if outcome is True:
                continue
            # Not sent (it moved on, or NATS did not answer): back to its place until the
            # stream says what happened; a retry is guarded by the job's tail.
            view = self.views.get(job_id)
            if view is not None and view.status == JobStatus.QUEUED and job_id in self.queue.active:
                self.queue.requeue(job_id)
            if isinstance(outcome, BaseException):
                trouble = outcome
        if trouble is not None:
            raise trouble

    async def send(self, job_id: str) -> bool:
        """Send one job to its agent, in the job's trace."""
        view = self.views[job_id]
        spec = self.specs.get(job_id)
        parent = tracing.context_of(traceparent=spec.traceparent if spec else None)
        attributes = {"borgflow.job_id": job_id, "borgflow.job_type": view.type, "borgflow.agent": view.agent}
        with tracing.tracer().start_as_current_span("job.send", context=parent, attributes=attributes) as span:
            if self.before_send is not None:
                await self.before_send(job_id)
            sent = await self.append(JobSent(job_id=job_id, data=SentData(agent=view.agent, epoch=self.epoch)))
            span.set_attribute("borgflow.sent", sent)
        if sent:
            log.info("sent", extra={"job_id": job_id, "agent": view.agent, "type": view.type})
        return sent

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

    async def announce(self, agent: str, online: bool) -> None:
        """Append agent.online/agent.offline once per change, whichever dispatcher sees it."""
        seen = self.seen.get(agent)
        last_seen = datetime.fromtimestamp(seen.at, UTC) if seen else None
        state = AgentStateData(agent=agent, last_seen=last_seen)
        event: AgentOnline | AgentOffline = AgentOnline(data=state) if online else AgentOffline(data=state)
        await bus.publish(self.js, event, msg_id=f"{event.type}:{agent}:{seen.at if seen else 0}")
        self.announced[agent] = online
        log.warning("agent %s", "online" if online else "offline", extra={"agent": agent})

    # ------------------------------------------------------------------ answering

    async def answer_waiting(self, msg: Msg) -> None:
        """Why the asked jobs wait, and where they stand (shared/waiting.py)."""
        try:
            ids = waiting.decode_ask(msg.data).ids[: waiting.MAX_IDS]
        except msgspec.MsgspecError:
            ids = []
        online, now = self.online(), self.clock()
        found = {}
        if self.ready.is_set():
            for job_id in ids:
                w = self.queue.waiting(job_id, online, now)
                if w is not None:
                    found[job_id] = w
        with contextlib.suppress(Exception):  # the asker gave up (or NATS went): nothing to do
            await msg.respond(waiting.encode_answer(found))

    async def count_waiting(self) -> None:
        """borgflow_queue_waiting: the queued jobs by reason (O(queue), at scrape time only)."""
        counts: Counter[str] = Counter()
        if self.active and self.ready.is_set():
            counts.update(w.reason for w in self.queue.reasons(self.online(), self.clock()).values())
        for reason in {*WAIT_REASONS, *counts}:
            metrics.QUEUE_WAITING.labels(reason=reason).set(counts.get(reason, 0))

    # ------------------------------------------------------------------ loops

    async def follow_jobs(self) -> None:
        if not self.jobs_seq:
            restored = await self.snapshots.load()
            if restored is not None:
                self.restore(restored)
        end = (await bus.patiently("reading BORGFLOW_JOBS", lambda: self.js.stream_info(JOBS))).state.last_seq
        if (end or 0) <= self.jobs_seq:  # nothing to catch up with
            await self.caught_up()
        # From where it was, should this follower be started again (resilient): replaying
        # from the start would bring finished jobs back as queued.
        async for msgs in follow(self.js, JOBS, ["borgflow.jobs.>"], self.jobs_seq, follower="dispatcher-jobs"):
            for m in msgs:
                seq = bus.seq_of(m)
                self.jobs_seq = seq
                event = _job_event(m)
                if event is not None:
                    self.apply(event, seq)
                job_id = m.subject.split(".")[2]
                if job_id in self.views:
                    self.tail[job_id] = max(seq, self.tail.get(job_id, 0))
            if caught_up(msgs) and not self.ready.is_set():
                await self.caught_up()
            self.snapshots.changed(len(msgs))
            self.wake.set()

    async def caught_up(self) -> None:
        """The fold is current: look up when each running job last showed life, then act."""
        for view in self.in_flight():
            if view.status == JobStatus.RUNNING and view.id not in self.activity_at:
                await self.backfill_activity(view.id)
        self.ready.set()
        log.info("dispatcher caught up", extra={"seq": self.jobs_seq, "in_queue": len(self.queue.queued)})

    async def backfill_activity(self, job_id: str) -> None:
        """The last progress or log line of a job running when we started (direct gets, no replay)."""
        for stream, subject in ((PROGRESS, f"borgflow.progress.{job_id}"), (LOGS, f"borgflow.logs.{job_id}")):
            try:
                stored = await direct.last(self.nc, stream, subject)
            except Exception as e:  # NATS away: the job keeps its start as its last sign of life
                log.warning("cannot read the last activity of a running job: %s", e, extra={"job_id": job_id})
                continue
            if stored is not None and stored.time is not None:
                self.activity_at[job_id] = max(self.activity_at.get(job_id, 0.0), stored.time.timestamp())

    def restore(self, state: State) -> None:
        """Take a snapshot's fold; the stream after its sequence is read next."""
        self.jobs_seq = state.seq
        self.chains_due = dict(state.chains_due)
        for view in state.views:
            self.views[view.id] = view
            self.specs[view.id] = state.specs[view.id]
            self.first_seq[view.id] = state.first_seq[view.id]
            self.tail[view.id] = state.tail.get(view.id, view.last_seq)
            job = self.job_of(view)
            if view.status == JobStatus.QUEUED:
                self.queue.add(job)
            else:
                self.queue.activate(job)
        log.info("restored a snapshot", extra={"seq": state.seq, "jobs": len(state.views)})

    def state(self) -> State:
        return State(
            seq=self.jobs_seq,
            views=list(self.views.values()),
            specs=self.specs,
            first_seq=self.first_seq,
            tail=self.tail,
            chains_due=self.chains_due,
        )

    async def follow_agents(self) -> None:
        # An empty stream yields nothing: start as "no agent seen" rather than wait.
        if (await bus.patiently("reading the agents", lambda: self.js.stream_info(AGENTS))).state.messages == 0:
            self.agents_ready.set()
        async for msgs in follow(
            self.js, AGENTS, ["borgflow.agents.>"], last_per_subject=True, follower="dispatcher-agents"
        ):
            before = self.online()
            for m in msgs:
                with contextlib.suppress(msgspec.MsgspecError):
                    e = decode(m.data)
                    if isinstance(e, AgentHeartbeat):
                        # When the server stored it, not when the agent says it sent it:
                        # an agent's clock may be off, and only arrival says it is alive.
                        self.seen[e.data.agent] = AgentSeen(m.metadata.timestamp.timestamp(), e.data.interval_s)
                    elif isinstance(e, AgentOnline | AgentOffline):
                        self.announced[e.data.agent] = isinstance(e, AgentOnline)
            if caught_up(msgs):
                self.agents_ready.set()
            if self.online() != before:
                self.wake.set()

    async def follow_activity(self, stream: str, subjects: str) -> None:
        """Progress and log lines of running jobs, from now on (the past: `backfill_activity`)."""
        after = int((await bus.patiently(f"reading {stream}", lambda: self.js.stream_info(stream))).state.last_seq)
        async for msgs in follow(self.js, stream, [subjects], after, follower=f"dispatcher-{stream.lower()}"):
            for m in msgs:
                job_id = m.subject.split(".")[2]
                if job_id in self.views:
                    self.activity_at[job_id] = m.metadata.timestamp.timestamp()

    async def keep_logs(self) -> None:
        """Apply the log_save_policy to each job that ended, once the settings are known."""
        await self.settings_ready.wait()
        while True:
            await self.ended_wake.wait()
            self.ended_wake.clear()
            while self.ended:
                job_id, status = self.ended[0]
                if self.active:
                    await logkeeping.apply(self.js, job_id, status, self.limits.log_save_policy)
                self.ended.pop(0)

    async def follow_settings(self) -> None:
        async for limits in watch_settings(self.js):
            self.limits = limits
            self.settings_ready.set()
            log.info("limits in force", extra={"max_concurrent_jobs": limits.max_concurrent_jobs})
            self.wake.set()

    async def loop(self, stop: asyncio.Event, lease: Lease | None = None) -> None:
        self.lease = lease
        answering = await self.nc.subscribe(waiting.SUBJECT, queue=waiting.QUEUE_GROUP, cb=self.answer_waiting)
        metrics.before_scrape("dispatcher-waiting", self.count_waiting)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(resilient(name, fn), name=name)
                    for name, fn in (
                        ("dispatcher-jobs", self.follow_jobs),
                        ("dispatcher-agents", self.follow_agents),
                        ("dispatcher-progress", lambda: self.follow_activity(PROGRESS, "borgflow.progress.>")),
                        ("dispatcher-logs", lambda: self.follow_activity(LOGS, "borgflow.logs.>")),
                        ("dispatcher-settings", self.follow_settings),
                        ("dispatcher-log-policy", self.keep_logs),
                        ("dispatcher-tick", lambda: tick(self, stop)),
                        ("dispatcher-snapshots", lambda: self.snapshots.keep(self, stop)),
                    )
                ]
                if lease is not None:
                    lease.on_acquire = self.wake.set  # a standby that takes over acts at once
                    keep = resilient("dispatcher-lease", lambda: lease.keep(stop))
                    tasks.append(tg.create_task(keep, name="dispatcher-lease"))
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
        finally:
            metrics.before_scrape("dispatcher-waiting", None)
            with contextlib.suppress(Exception):
                await answering.unsubscribe()


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
        await bus.patiently("creating the streams", lambda: ensure_streams(js, replicas=settings.stream_replicas))
        d = Dispatcher(js)

        def problem() -> str | None:
            if not nc.is_connected:
                return "NATS is not connected"
            if not d.ready.is_set():
                return "reading BORGFLOW_JOBS"
            if not (d.settings_ready.is_set() and d.agents_ready.is_set()):
                return "reading the settings and agents"
            return None

        with probes.registered("dispatcher", problem):
            await d.loop(stop, Lease(js, "dispatcher"))
    finally:
        supervise.ACTIVE.set(0)
        await nc.close()
