"""The executor's intake: sent and cancel_requested events in, claimed jobs out.

Messages are handled one at a time, in stream order, so a cancel_requested is always
seen after the sent it follows. Claiming is quick (read the job, one compare-and-set
append); the job itself runs as a background task, so the loop keeps taking messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry.context import Context

from services.executor import transitions
from services.executor.endings import CancelRequest
from services.executor.fencing import Fence
from services.executor.outcomes import HintContext, hint_for
from services.executor.recovery import Recovery
from services.executor.runner import JobRun, RunContext
from shared import bus, direct, metrics, tracing
from shared.events import (
    JobCancelled,
    JobCancelRequested,
    JobError,
    JobEvent,
    JobQueued,
    JobRequeued,
    JobSent,
    JobSpec,
    JobStarted,
    JobStatus,
    OutcomeData,
    RequeuedData,
    StartedData,
    decode_job_event,
    utcnow,
)
from shared.exceptions import ConcurrencyConflict
from shared.jobs import fold, labels_of
from shared.streams import ENDED_EVENTS, JOBS, job_subject

log = logging.getLogger(__name__)

SENT_SUBJECT = "borgflow.jobs.*.sent"
# How far back a new agent's consumer starts: longer than any sent_timeout_s in use.
NEW_CONSUMER_LOOKBACK_S = 120.0
# The last subject of a job that has ended.
ENDED = ENDED_EVENTS
CANCEL_SUBJECT = "borgflow.jobs.*.cancel_requested"


def consumer_name(agent: str) -> str:
    return f"executor-{agent}"


class Agent:
    """One agent's executor: the jobs it holds and how it takes new ones."""

    def __init__(self, ctx: RunContext, recovery: Recovery | None = None, fence: Fence | None = None) -> None:
        self.ctx = ctx
        self.recovery = recovery
        self.fence = fence or Fence()
        self.agent = ctx.settings.agent
        self.runs: dict[str, JobRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._handling: asyncio.Future[None] | None = None

    @property
    def running(self) -> list[str]:
        """The jobs this agent holds: its runs, and those of the previous run not reconciled yet."""
        leftovers = self.recovery.pending if self.recovery is not None else set()
        return sorted(set(self.runs) | leftovers)

    async def prepare(self) -> None:
        """Make this agent's durable consumer if it has none yet, starting a little before now.

        A new agent need not read what was ever sent to every agent: the dispatcher sends
        only to agents whose heartbeats it sees, and a send nobody takes goes back to the
        queue after `sent_timeout_s`. So it starts NEW_CONSUMER_LOOKBACK_S back, which holds
        any send to it that is still waiting (made before that, it has been requeued).
        """
        js = self.ctx.js
        name = consumer_name(self.agent)
        try:
            await js.consumer_info(JOBS, name)
            return
        except NotFoundError:
            pass
        since = utcnow() - timedelta(seconds=NEW_CONSUMER_LOOKBACK_S)
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
            ack_wait=self.ctx.options.consumer_ack_wait_s,
            max_ack_pending=10_000,
            filter_subjects=[SENT_SUBJECT, CANCEL_SUBJECT],
        )
        await js.add_consumer(JOBS, config)
        log.info("made this agent's job consumer", extra={"agent": self.agent, "since": since.isoformat()})

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        return await bus.durable_pull(
            self.ctx.js,
            stream=JOBS,
            durable=consumer_name(self.agent),
            filter_subjects=[SENT_SUBJECT, CANCEL_SUBJECT],
            ack_wait=self.ctx.options.consumer_ack_wait_s,
        )

    async def consume(self, sub: JetStreamContext.PullSubscription) -> None:
        """Handle messages until cancelled. Each one is handled to its end even then:
        a claim cut in half would leave a started job that nobody runs.
        """
        async for msgs in bus.batches(sub, batch=self.ctx.options.fetch_batch, follower=consumer_name(self.agent)):
            self._handling = asyncio.ensure_future(self._handle_batch(msgs))
            await asyncio.shield(self._handling)

    async def _handle_batch(self, msgs: list[Msg]) -> None:
        """The sends of a batch are claimed together (their records written in one go), then
        the rest in stream order: a job's cancel_requested always comes after its sent."""
        sends = [m for m in msgs if m.subject.endswith(".sent")]
        await asyncio.gather(*(self._handle_safely(m) for m in sends))
        for m in msgs:
            if not m.subject.endswith(".sent"):
                await self._handle_safely(m)

    async def _handle_safely(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception as e:
            # NATS trouble while claiming: leave the message for redelivery, where the
            # compare-and-set makes a second attempt safe.
            if isinstance(e, nats.errors.Error | TimeoutError):
                log.warning("handling a job message failed, it comes again: %s", e, extra={"subject": msg.subject})
            else:
                log.exception("handling a job message failed", extra={"subject": msg.subject})
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)

    async def handle(self, msg: Msg) -> None:
        try:
            event = decode_job_event(msg.data)
        except msgspec.MsgspecError as e:
            log.warning("ignoring a malformed job message: %s", e, extra={"subject": msg.subject})
            await _ack(msg)
            return
        if isinstance(event, JobSent):
            await self._on_sent(msg, event)
        elif isinstance(event, JobCancelRequested):
            await self._on_cancel_requested(msg, event)
        else:
            log.warning("ignoring unexpected %s", event.type, extra={"job_id": event.job_id})
            await _ack(msg)

    async def _on_sent(self, msg: Msg, event: JobSent) -> None:
        job_id = event.job_id
        extra = {"job_id": job_id, "agent": self.agent}
        if event.data.agent != self.agent or job_id is None or job_id in self.runs:
            await _ack(msg)  # another agent's job, or a redelivery of one we hold
            return
        if self._stopping:
            return  # not acked: redelivered to this agent's next executor
        sent_seq = bus.seq_of(msg)
        if not self.fence.admits(event.data.epoch):
            await self._refuse_stale(job_id, sent_seq, event.data.epoch)
            await _ack(msg)
            return
        events = await self._events_when_sent(job_id, msg, event, sent_seq)
        view = fold(events)
        spec = next((e.data for e, _ in events if isinstance(e, JobQueued)), None)
        if view is not None and spec is not None and view.status == JobStatus.RUNNING and view.agent == self.agent:
            await self._running_but_not_here(view.pid, view.pid_started_at, spec, events)
            await _ack(msg)
            return
        if view is None or spec is None or view.status != JobStatus.SENT or view.agent != self.agent:
            # Already started (a duplicate sent), requeued to someone else, or ended.
            log.debug("not claiming", extra=extra | {"status": view.status.value if view else None})
            await _ack(msg)
            return
        facts = self.ctx.current_facts()
        started = StartedData(
            agent=self.agent,
            host=facts.host,
            pid=facts.pid,
            pid_started_at=facts.pid_started_at,
            borg_version=facts.borg_version,
        )
        # On record before the claim is appended: should we die right after it lands, the
        # next start finds the job in the file and ends it.
        await self.ctx.records.claiming(spec)
        sent_in = tracing.context_of(msg.headers)
        attributes = {"borgflow.job_id": job_id, "borgflow.agent": self.agent}
        with tracing.tracer().start_as_current_span("job.claim", context=sent_in, attributes=attributes) as span:
            started_seq = await transitions.claim(self.ctx.js, job_id, sent_seq, started)
            span.set_attribute("borgflow.claimed", started_seq is not None)
        if started_seq is None:
            log.info("job moved on before we claimed it", extra=extra)
            await self.ctx.records.forget(job_id)
            await _ack(msg)
            return
        waited = (utcnow() - spec.created_at).total_seconds()
        metrics.ENQUEUE_TO_START.labels(type=spec.type).observe(max(0.0, waited))
        self._start(spec, started_seq, sent_in)
        await _ack(msg)

    async def _running_but_not_here(
        self, pid: int | None, pid_started_at: float | None, spec: JobSpec, events: list[tuple[JobEvent, int]]
    ) -> None:
        """A redelivered sent of a job running on this agent that no run of ours holds.

        Claimed by this very process, its claim's ack lost (the publish failed, the
        message came back): run it. Claimed by a previous run of this executor: that run
        is gone, so the job is ended as recovery ends it.
        """
        facts = self.ctx.current_facts()
        if pid == facts.pid and pid_started_at == facts.pid_started_at:
            started_seq = max((seq for e, seq in events if isinstance(e, JobStarted)), default=0)
            log.warning("running a job whose claim landed unacknowledged", extra={"job_id": spec.id})
            self._start(spec, started_seq)
        elif self.recovery is not None:
            await self.recovery.settle_orphan(spec.id)

    async def _refuse_stale(self, job_id: str, sent_seq: int, epoch: int | None) -> None:
        """A send from a deposed dispatcher: back to the queue, unless the job moved on already."""
        reason = f"sent by a dispatcher that has since lost its lease (epoch {epoch} < {self.fence.epoch})"
        try:
            await bus.publish(self.ctx.js, JobRequeued(job_id=job_id, data=RequeuedData(reason=reason)),
                              expect_last_seq=sent_seq)  # fmt: skip
            log.warning("refused a stale send", extra={"job_id": job_id, "epoch": epoch, "current": self.fence.epoch})
        except ConcurrencyConflict:
            pass  # something happened to it since: that stands

    def _start(self, spec: JobSpec, started_seq: int, trace_parent: Context | None = None) -> None:
        run = JobRun(self.ctx, spec, started_seq, trace_parent)
        self.runs[spec.id] = run
        task = asyncio.create_task(self._run(run), name=f"job-{spec.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("job started", extra={"job_id": spec.id, "agent": self.agent, "type": spec.type})

    async def _run(self, run: JobRun) -> None:
        try:
            await run.run()
        finally:
            self.runs.pop(run.job_id, None)

    async def _on_cancel_requested(self, msg: Msg, event: JobCancelRequested) -> None:
        job_id = event.job_id
        if job_id is None:
            await _ack(msg)
            return
        request = CancelRequest(by=event.data.by, reason=event.data.reason, kind=event.data.kind)
        run = self.runs.get(job_id)
        if run is not None:
            log.info("cancel requested", extra={"job_id": job_id, "by": event.data.by})
            run.request_cancel(request)
        else:
            await self._cancel_unclaimed(job_id, bus.seq_of(msg), request)
        await _ack(msg)

    async def _events_when_sent(
        self, job_id: str, msg: Msg, sent: JobSent, sent_seq: int
    ) -> list[tuple[JobEvent, int]]:
        """The job's events, as far as claiming it needs them.

        Reading every event of a job by its wildcard subject makes NATS scan from them to
        the stream's end to be sure there are no more: in a burst of 5,000 jobs, each claim
        cost NATS time in proportion to the queue. So when the sent event is still the
        job's last, and was appended (by the dispatcher's compare-and-set) right on top of
        the job's job.queued, those two are all a claim needs, and direct gets by last
        subject and by sequence read them at a cost that does not grow. Any other history
        (requeued, moved on, a sent without the compare-and-set) is read whole, as before.
        """
        return await self._queued_and_sent(job_id, msg, sent, sent_seq) or await bus.job_events(self.ctx.js, job_id)

    async def _queued_and_sent(
        self, job_id: str, msg: Msg, sent: JobSent, sent_seq: int
    ) -> list[tuple[JobEvent, int]] | None:
        """[job.queued, this sent] when the sent lies right on the job's job.queued and is its last; else None."""
        on_top_of = (msg.headers or {}).get("Nats-Expected-Last-Subject-Sequence", "")
        if not on_top_of.isdigit():
            return None
        nc = bus.nc_of(self.ctx.js)
        last = await direct.last(nc, JOBS, job_subject(job_id))
        if last is None or last.seq != sent_seq:
            return None
        below = await direct.at(nc, JOBS, int(on_top_of))
        if below is None or below.subject != job_subject(job_id, "queued"):
            return None
        try:
            queued = decode_job_event(below.data)
        except msgspec.MsgspecError:
            return None
        return [(queued, below.seq), (sent, sent_seq)] if isinstance(queued, JobQueued) else None

    async def _cancel_unclaimed(self, job_id: str, cancel_seq: int, request: CancelRequest) -> None:
        """A job sent to this agent and cancelled before we claimed it: nobody else will end it."""
        view, tail = await bus.load_for_update(self.ctx.js, job_id)
        if tail != cancel_seq:
            return  # something happened since: it started elsewhere, or has ended
        if view is None or view.status != JobStatus.SENT or view.agent != self.agent:
            return
        kind = "stalled" if request.stalled else "cancelled_by_user"
        hints = HintContext(agent=self.agent, api_url=self.ctx.settings.api_url)
        error = JobError(kind=kind, message=f"{request.describe()} before borg started", hint=hint_for(kind, hints))
        event = JobCancelled(job_id=job_id, data=OutcomeData(error=error, job=labels_of(view)))
        try:
            await bus.publish(self.ctx.js, event, expect_last_seq=cancel_seq)
            log.info("cancelled a sent job before claiming it", extra={"job_id": job_id})
        except ConcurrencyConflict:
            pass  # someone else ended or moved it meanwhile: theirs stands

    async def watch_runs(self, interval_s: float, stop: asyncio.Event) -> None:
        """Stop borg for a job that was ended elsewhere while it ran here.

        Cut off from NATS long enough, an agent's running jobs are failed as agent_lost;
        when it is back, its borg must not go on as if nothing happened (and its outcome,
        published late, is dropped as the job has ended). One direct get per running job
        per interval, so cheap for the few jobs an agent runs.
        """
        nc = bus.nc_of(self.ctx.js)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
            for job_id, run in list(self.runs.items()):
                if run.ending:
                    continue  # its own outcome is landing
                try:
                    last = await direct.last(nc, JOBS, job_subject(job_id))
                except Exception as e:  # NATS away: look again next time
                    log.debug("cannot look at a running job: %s", e, extra={"job_id": job_id})
                    continue
                ended = "deleted" if last is None else last.subject.rsplit(".", 1)[-1]
                if ended in ENDED and not run.ending and last is not None and last.seq > run.started_seq:
                    log.warning("the job was ended elsewhere: stopping it", extra={"job_id": job_id, "ended": ended})
                    run.request_cancel(CancelRequest(by="borgflow", reason=f"the job was ended elsewhere ({ended})"))

    async def idle(self) -> None:
        """Until no job runs here (new ones may start meanwhile unless intake has stopped)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def shutdown(self, timeout_s: float) -> None:
        """Interrupt every job this agent holds and wait for each to report its end."""
        self._stopping = True
        if self._handling is not None:
            await self._handling  # the message being handled when consume() was cancelled
        for run in list(self.runs.values()):
            run.request_cancel(CancelRequest(reason="the executor is stopping", shutdown=True))
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            log.error("job did not end in time on shutdown", extra={"task": task.get_name()})
            task.cancel()
        if pending:
            await asyncio.wait(pending)


async def _ack(msg: Msg) -> None:
    try:
        await msg.ack()
    except Exception as e:  # the connection dropped: the message is redelivered, and handled idempotently
        log.warning("ack failed: %s", e, extra={"subject": msg.subject})
