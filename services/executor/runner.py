"""Running one claimed job: build its borg command, fetch its passphrase, run the plan's
pre-scripts, check the sources, run borg (reading its stderr line by line, answering a
cancel), tidy up after a cancel, run the post-scripts, and append exactly one terminal event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec
from nats.js import JetStreamContext
from opentelemetry.context import Context
from opentelemetry.trace import StatusCode

from services.executor import cleanup, commands, damage, dumps, endings, hooks, jobs, preflight, retries, transitions
from services.executor.borgproc import BorgExit, BorgUnavailable, run_borg
from services.executor.borgs import Borgs
from services.executor.collect import OutputCollector
from services.executor.config import ExecutorOptions
from services.executor.dumps import DumpSession
from services.executor.endings import CancelRequest, Ending
from services.executor.exceptions import BadJob, SecretUnavailable
from services.executor.hostinfo import HostFacts
from services.executor.measure import measure
from services.executor.outcomes import HintContext, hint_for
from services.executor.readers import CheckReader, Reader, reader_for
from services.executor.records import RunningRecords
from services.executor.reporting import LogBatcher, ProgressReporter
from services.executor.secrets import SecretSource
from services.executor.storage import alert as storage_alert
from services.executor.verification import as_details
from shared import metrics, tracing
from shared.config import Settings, default_data_dir
from shared.events import (
    OUTCOME_BY_STATUS,
    JobLabels,
    JobResult,
    JobSpec,
    JobStatus,
    OutcomeData,
    PlanRef,
    Progress,
    utcnow,
)

log = logging.getLogger(__name__)

# A backup whose {now} archive name is taken tries NAME.2 … NAME.<this>.
MAX_NAME_ATTEMPTS = 5


@dataclass(frozen=True)
class RunContext:
    """Everything a job run needs from its executor."""

    js: JetStreamContext
    settings: Settings
    options: ExecutorOptions
    secrets: SecretSource
    facts: HostFacts
    environ: Mapping[str, str]
    """What borg inherits a few basics from (PATH, HOME, locale, SSH agent), and scripts all but secrets."""
    records: RunningRecords
    """The jobs held, on disk, for the executor's next start should this one die."""
    borgs: Borgs
    """The borg jobs run: read as each starts, since an update_borg may switch it."""
    connected: Callable[[], bool] = lambda: True
    """Whether the NATS connection is up (publishes are not even tried while it is not)."""
    relaunch: Callable[[str], None] | None = None
    """Asks the executor to become another `borgflow` (update_agent's): stop taking jobs, let
    the running ones end, exec it. None where it cannot (an executor embedded in a test)."""

    @property
    def borg(self) -> str:
        """The borg executable to run now."""
        return self.borgs.executable()

    def current_facts(self) -> HostFacts:
        """The facts learnt at start, with the version of the borg in use now."""
        return msgspec.structs.replace(self.facts, borg_version=self.borgs.version)


T = TypeVar("T")


class _Output:
    """A job's log and progress, as borg runs and scripts write to them."""

    def __init__(self, logs: LogBatcher, progress: ProgressReporter) -> None:
        self._logs = logs
        self._progress = progress

    def line(self, message: str, *, level: str = "info", source: str = "borg") -> None:
        self._logs.add(message, level=level, source=source)

    def progress(self, progress: Progress) -> None:
        self._progress.update(progress)


class JobRun:
    """One job, from claimed to ended. `run()` never raises: every path ends the job."""

    def __init__(self, ctx: RunContext, spec: JobSpec, started_seq: int, trace_parent: Context | None = None) -> None:
        self.ctx = ctx
        self.spec = spec
        # The span the job was sent in (else the job's own trace): `job.run` hangs below it.
        self.trace_parent = trace_parent or tracing.context_of(traceparent=spec.traceparent)
        self.job_id = spec.id
        self.started_seq = started_seq
        self.cancel_request: CancelRequest | None = None
        self.ending = False
        """The outcome is decided and on its way: an end seen on the stream may be ours."""
        self.archive_tried: str | None = None
        """The archive a backup's `borg create` was started to write."""
        self.dumps: DumpSession | None = None
        """A backup's database dumps, streaming into borg (started with borg's first run)."""
        self.reader: Reader | None = None
        """How the last borg run's output was read (a check's findings live on in it)."""
        self._cancel = asyncio.Event()
        opts = ctx.options
        self.logs = LogBatcher(
            ctx.js,
            spec.id,
            flush_s=opts.log_flush_s,
            max_lines=opts.log_batch_lines,
            max_chars=opts.log_line_max_chars,
            connected=ctx.connected,
        )
        self.progress = ProgressReporter(ctx.js, spec.id, opts.progress_interval_s, connected=ctx.connected)
        self.out = _Output(self.logs, self.progress)
        repo = spec.repository
        self.hints = HintContext(
            location=repo.location if repo else "",
            repository_id=repo.id if repo else spec.repository_id,
            agent=ctx.settings.agent,
            api_url=ctx.settings.api_url,
        )
        # A plan's scripts belong to its backups: a chained prune or compact carries the
        # plan too, and must not run (say) the backup's database dump again.
        self.scripts: PlanRef | None = spec.plan if spec.type == "backup" else None

    def request_cancel(self, request: CancelRequest) -> None:
        """Ask the run to stop; the first request decides how the job ends."""
        if self.cancel_request is None:
            self.cancel_request = request
        self._cancel.set()

    async def spawned(self, pid: int, what: str) -> None:
        """Every process the job starts goes on record (the Tracker of borgproc and hooks)."""
        archive = self.archive_tried if what == "borg" else None
        await self.ctx.records.spawned(self.job_id, pid, what, archive=archive)

    async def run(self) -> None:
        spec = self.spec
        attributes = {"borgflow.job_id": spec.id, "borgflow.job_type": spec.type, "borgflow.agent": spec.agent}
        tracer = tracing.tracer()
        began = time.monotonic()
        with tracer.start_as_current_span("job.run", context=self.trace_parent, attributes=attributes) as span:
            status = await self._run()
            span.set_attribute("borgflow.status", status.value)
            if status != JobStatus.COMPLETED:
                span.set_status(StatusCode.ERROR if status == JobStatus.FAILED else StatusCode.UNSET, status.value)
        metrics.JOB_DURATION.labels(type=spec.type, status=status.value).observe(time.monotonic() - began)

    async def _run(self) -> JobStatus:
        extra = {"job_id": self.job_id, "type": self.spec.type}
        try:
            ending = await self._execute()
        except Exception as e:  # a bug here must still end the job, not leave it running
            log.exception("job run crashed", extra=extra)
            # Only the exception's type goes into the event: its text is not checked for secrets.
            ending = self._failed("internal", f"the executor failed ({type(e).__name__}); see its log")
        ending = endings.with_archive_tried(ending, self.archive_tried)
        if self.ctx.connected():
            # Before the outcome: whoever sees the job end sees the alert it raised.
            await storage_alert(self.ctx.js, self.spec, ending.result)
        # NATS away for a moment: the job's last log lines wait for it (a while), so that
        # they land before the outcome, as they would have.
        await self._wait_for_bus(self.ctx.options.log_hold_s)
        final = await self.progress.close(endings.final_progress(self.progress.latest, ending))
        # Logs before the outcome: whoever sees the job end can read its whole log.
        await self.logs.close()
        event = OUTCOME_BY_STATUS[ending.status](
            job_id=self.job_id,
            data=OutcomeData(
                result=ending.result, error=ending.error, progress=final, job=JobLabels.of_spec(self.spec)
            ),
        )
        # On disk first: if the executor dies before the outcome lands, its next start
        # publishes this very event (same id, so it lands once) instead of a failure.
        self.ending = True
        await self.ctx.records.ended(self.job_id, event)
        if ending.relaunch is not None and self.ctx.relaunch is not None:
            # Not published here: the executor this job installed publishes it from the
            # record once it runs, so the job completes only once the update has taken.
            log.info("job ended; restarting the executor into %s", ending.relaunch, extra=extra)
            self.ctx.relaunch(ending.relaunch)
            return ending.status
        landed = await transitions.finish(self.ctx.js, event, self.started_seq, connected=self.ctx.connected)
        await self.ctx.records.forget(self.job_id)
        extra["status"] = ending.status.value
        log.info("job ended" if landed else "job had already ended", extra=extra)
        return ending.status

    def executor_line(self, message: str, *, level: str = "info") -> None:
        self.logs.add(message, level=level, source="executor")

    async def _wait_for_bus(self, timeout_s: float) -> None:
        if self.ctx.connected():
            return
        log.warning(
            "NATS is away: the job's last log lines wait for it, then its outcome", extra={"job_id": self.job_id}
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ctx.connected() and loop.time() < deadline:
            await asyncio.sleep(0.1)

    async def _unless_cancelled(self, work: Awaitable[T]) -> tuple[T | None, bool]:
        """`work`'s result, or (None, True) as soon as the job is cancelled (the work is then abandoned)."""
        task = asyncio.ensure_future(work)
        waiter = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()  # not awaited: waiting for it to unwind would hold up the cancel
        if not task.done() or task.cancelled():
            return None, True
        return task.result(), False

    # ------------------------------------------------------------------ steps

    async def _execute(self) -> Ending:
        spec = self.spec
        plugin = jobs.plugin_for(spec.type)
        if plugin is not None:
            return await self._run_plugin(plugin)
        now = utcnow()  # one archive name, however often the command is built
        if commands.nothing_stale(spec):
            self.executor_line("every archive was verified within keep_verified_days: nothing to check")
            details = {"problems": [], "partial": False, "verification": [], "nothing_stale": True}
            return Ending(status=JobStatus.COMPLETED, result=JobResult(exit_code=0, details=details))
        try:
            invocation = commands.build(spec, borg=self.ctx.borg, now=now)
        except BadJob as e:
            self.executor_line(e.message, level="error")
            return self._failed(e.kind, e.message, e.hint)
        if self._cancel.is_set():
            return self._cancelled_before_start()
        passphrase = await self._passphrase()
        if isinstance(passphrase, Ending):
            return passphrase
        data_dir = Path(self.ctx.settings.data_dir or default_data_dir())
        # The passphrase lives on only in this mapping, which goes to borg and nowhere else.
        env = commands.borg_environment(self.ctx.environ, data_dir=data_dir, passphrase=passphrase)
        del passphrase
        # borg creates BORG_BASE_DIR itself, but not its missing parents.
        await asyncio.to_thread(Path(env["BORG_BASE_DIR"]).mkdir, parents=True, exist_ok=True)
        done_before = await self._created_by_earlier_attempt(env)
        if done_before is not None:
            return done_before
        try:
            ending = await self._main(invocation, env, now)
            ending = await self._after_dumps(ending, env)
            ending = await measure(self.ctx.borg, spec, ending, env, self.out, self)
        finally:
            if self.dumps is not None:  # whatever happened: no dump left running, no FIFO left behind
                await self.dumps.close()
        if self.scripts is not None and self.scripts.post_scripts:
            # After success and failure alike (cleanup, such as unmounting a snapshot,
            # must happen either way); a failing one never hides a failure.
            script_env = hooks.hook_environment(
                self.ctx.environ,
                spec,
                self.ctx.settings.agent,
                archive=invocation.archive,
                status=ending.status.value,
                exit_code=ending.exit_code,
            )
            problems = await hooks.run_post_scripts(
                self.scripts.post_scripts,
                script_env,
                self.out,
                timeout_s=self.ctx.options.hook_timeout_s,
                tracker=self,
            )
            ending = endings.with_warnings(ending, problems, {}) if problems else ending
        return ending

    async def _passphrase(self) -> str | Ending | None:
        """The repository's passphrase (None: it has none), or how the job ends when it cannot be had."""
        repo = self.spec.repository
        if repo is None or not repo.has_passphrase:
            return None
        try:
            # The api may be restarting: the source retries for a while, and a cancel
            # meanwhile must not wait for it.
            passphrase, cancelled = await self._unless_cancelled(self.ctx.secrets.passphrase(self.job_id))
        except SecretUnavailable as e:
            message = f"could not fetch the repository passphrase: {e}"
            self.executor_line(message, level="error")
            return self._failed("secret_unavailable", message)
        if cancelled or self._cancel.is_set():
            return self._cancelled_before_start()
        return passphrase

    async def _run_plugin(self, plugin: jobs.Plugin) -> Ending:
        """A job type that is not plain borg: handed over whole (services/executor/jobs)."""
        if self._cancel.is_set():
            return self._cancelled_before_start()
        passphrase = await self._passphrase() if plugin.wants_passphrase else None
        if isinstance(passphrase, Ending):
            return passphrase
        job = jobs.PluginJob(
            spec=self.spec,
            output=self.out,
            cancel=self._cancel,
            cancel_request=lambda: self.cancel_request or CancelRequest(),
            data_dir=Path(self.ctx.settings.data_dir or default_data_dir()),
            environ=self.ctx.environ,
            facts=self.ctx.current_facts(),
            hints=self.hints,
            borg=self.ctx.borg,
            grace_s=self.ctx.options.cancel_grace_s,
            passphrase=passphrase,
            tracker=self,
            secrets=lambda: self.ctx.secrets.secrets(self.job_id),
            borg_changed=self.ctx.borgs.refresh,
        )
        del passphrase
        return await plugin.run(job)

    async def _created_by_earlier_attempt(self, env: dict[str, str]) -> Ending | None:
        """A retried backup whose failed attempt's archive exists after all: completed, nothing run."""
        archive = retries.archive_to_look_for(self.spec)
        if archive is None or self.spec.retry_of is None:
            return None
        self.executor_line(f"this retries job {self.spec.retry_of}: looking for its archive {archive} first")
        exists = await retries.archive_exists(self.ctx.borg, self.spec, archive, env, self.out, self)
        if not exists:
            if exists is False:
                self.executor_line(f"archive {archive} is not in the repository: backing up")
            return None
        self.executor_line(
            f"archive {archive} was already created by job {self.spec.retry_of}: nothing to back up again"
        )
        return Ending(status=JobStatus.COMPLETED, result=retries.already_created(archive, self.spec.retry_of))

    async def _main(self, invocation: commands.Invocation, env: dict[str, str], now: datetime) -> Ending:
        spec = self.spec
        if self.scripts is not None and self.scripts.pre_scripts:
            # The scripts' own environment: never borg's, which holds the passphrase.
            script_env = hooks.hook_environment(
                self.ctx.environ, spec, self.ctx.settings.agent, archive=invocation.archive
            )
            failed = await hooks.run_pre_scripts(
                self.scripts.pre_scripts,
                script_env,
                self.out,
                timeout_s=self.ctx.options.hook_timeout_s,
                cancel=self._cancel,
                tracker=self,
            )
            if failed is not None and failed.cancelled:
                return self._cancelled_before_start()
            if failed is not None:
                return endings.hook_failed(failed.command, failed.problem, failed.exit_code)
        # The sources are checked after the pre-scripts: one may mount or dump them.
        missing: list[str] = []
        run_spec = spec
        try:
            if spec.type == "backup" and spec.plan is not None:
                present, missing = await asyncio.to_thread(preflight.split_missing, spec.plan.paths)
                if not present:
                    ending = endings.no_sources(missing, self.ctx.settings.agent)
                    self.executor_line(ending.error.message if ending.error else "", level="error")
                    return ending
                if missing:
                    for path in missing:
                        self.executor_line(f"source path {path} does not exist on this agent: skipped", level="warning")
                    run_spec = msgspec.structs.replace(spec, plan=msgspec.structs.replace(spec.plan, paths=present))
                    invocation = commands.build(run_spec, borg=self.ctx.borg, now=now)
            if spec.type == "restore" and invocation.cwd is not None:
                made = await asyncio.to_thread(preflight.prepare_destination, invocation.cwd, self.ctx.settings.agent)
                if made:
                    self.executor_line(f"created the destination {invocation.cwd} (mode 0700)")
        except BadJob as e:
            self.executor_line(e.message, level="error")
            return self._failed(e.kind, e.message, e.hint)
        if self._cancel.is_set():
            return self._cancelled_before_start()
        outcome = await self._run_borg(invocation, env)
        template = run_spec.plan.archive_name if run_spec.plan is not None else ""
        for attempt in range(2, MAX_NAME_ATTEMPTS + 1):
            # Two backups of one plan that end within the same second get the same {now}:
            # the second is not a failure, it only needs another name.
            if not self._archive_name_taken(outcome):
                break
            plan = run_spec.plan
            assert plan is not None
            taken = invocation.archive
            run_spec = msgspec.structs.replace(
                run_spec, plan=msgspec.structs.replace(plan, archive_name=f"{template}.{attempt}")
            )
            invocation = commands.build(run_spec, borg=self.ctx.borg, now=now)
            self.executor_line(f"archive {taken} already exists (made the same second): trying {invocation.archive}")
            outcome = await self._run_borg(invocation, env)
        if isinstance(outcome, Ending):
            return outcome
        done, ending = outcome
        await self._tidy_up(done, ending, invocation, env)
        if isinstance(self.reader, CheckReader) and not done.signalled:
            ending = await self._verdicts_per_archive(self.reader, ending, env)
        if missing:
            warnings = [f"source path {p} does not exist on agent {self.ctx.settings.agent}" for p in missing]
            ending = endings.with_warnings(ending, warnings, {"missing_paths": missing})
        return ending

    async def _start_dumps(self) -> Ending | None:
        """Start the plan's database dumps (before borg, which reads them); how the job ends if it cannot."""
        plan = self.spec.plan
        if self.dumps is not None or self.spec.type != "backup" or plan is None or not plan.databases:
            return None
        passwords: dict[str, str] = {}
        if any(db.has_password for db in plan.databases):
            try:
                found, cancelled = await self._unless_cancelled(self.ctx.secrets.secrets(self.job_id))
            except SecretUnavailable as e:
                message = f"could not fetch the database passwords: {e}"
                self.executor_line(message, level="error")
                return self._failed("secret_unavailable", message)
            if cancelled or found is None or self._cancel.is_set():
                return self._cancelled_before_start()
            passwords = found.databases
        self.dumps = DumpSession(plan.databases, passwords, self.ctx.environ, self.out, tracker=self)
        del passwords
        await self.dumps.start()
        return None

    async def _after_dumps(self, ending: Ending, env: dict[str, str]) -> Ending:
        """A backup whose dumps did not all reach the archive fails, and leaves no archive (dumps.conclude)."""
        repo = self.spec.repository
        if self.dumps is None or repo is None:
            return ending
        ending, stands = await dumps.conclude(
            self.dumps,
            ending,
            borg=self.ctx.borg,
            location=repo.location,
            archive=self.archive_tried if ending.status in (JobStatus.COMPLETED, JobStatus.WARNING) else None,
            env=env,
            out=self.out,
            hints=self.hints,
            lock_wait=self.ctx.options.cleanup_lock_wait_s,
            tracker=self,
        )
        if not stands:
            self.archive_tried = None  # deleted or broken: a retry must back up again, not find it
        return ending

    async def _run_borg(self, invocation: commands.Invocation, env: dict[str, str]) -> tuple[BorgExit, Ending] | Ending:
        spec = self.spec
        not_started = await self._start_dumps()
        if not_started is not None:
            return not_started
        if self.dumps is not None:  # `borgflow-dumps` in borg's arguments is relative to the dumps' directory
            invocation = msgspec.structs.replace(invocation, cwd=self.dumps.cwd)
        reader = self.reader = reader_for(spec, invocation.archive)
        collector = OutputCollector(reader)
        extra = {"job_id": self.job_id, "type": spec.type}
        where = f" in {invocation.cwd}" if invocation.cwd else ""
        self.executor_line(f"starting {invocation.summary}{where}")
        if spec.type == "backup":
            self.archive_tried = invocation.archive
        try:
            done = await run_borg(
                invocation,
                env,
                collector,
                self.out,
                cancel=self._cancel,
                cancel_reason=self._cancel_reason,
                grace_s=self.ctx.options.cancel_grace_s,
                tracker=self,
            )
        except BorgUnavailable as e:
            self.executor_line(str(e), level="error")
            return self._failed("borg_missing", str(e))
        self.executor_line(f"borg exited with {done.code} after {done.elapsed_s:.1f}s")
        log.info("borg exited", extra=extra | {"exit_code": done.code})
        if done.signalled and done.code != 0:
            return done, endings.interrupted(self.cancel_request or CancelRequest(), done.code, self.hints)
        if done.signalled:
            self.executor_line("the cancel came after borg had finished its work: the job completed")
        return done, endings.from_borg(done, collector, reader, self.hints)

    def _archive_name_taken(self, outcome: tuple[BorgExit, Ending] | Ending) -> bool:
        if isinstance(outcome, Ending) or self._cancel.is_set():
            return False
        ending = outcome[1]
        plan = self.spec.plan
        return (
            self.spec.type == "backup"
            and plan is not None
            and "{now}" in plan.archive_name
            and ending.error is not None
            and ending.error.kind == "archive_exists"
        )

    async def _verdicts_per_archive(self, reader: CheckReader, ending: Ending, env: dict[str, str]) -> Ending:
        """A check that named damaged chunks: which archives use them decides their verdicts."""
        findings = reader.findings
        if findings is None or not findings.needs_mapping or ending.result is None:
            return ending
        reader.verdicts = await damage.map_damage(
            self.ctx.borg, self.spec, findings, env, self.out, self, cancelled=self._cancel.is_set
        )
        details = dict(ending.result.details) | {"verification": as_details(reader.verdicts)}
        return msgspec.structs.replace(ending, result=msgspec.structs.replace(ending.result, details=details))

    async def _tidy_up(
        self, done: BorgExit, ending: Ending, invocation: commands.Invocation, env: dict[str, str]
    ) -> None:
        """After a cancelled backup: no checkpoint archive left, no stale lock of ours."""
        repo = self.spec.repository
        if repo is None or not done.signalled:
            return
        borg = self.ctx.borg
        cancelled_backup = ending.status == JobStatus.CANCELLED and self.spec.type == "backup"
        if cancelled_backup and invocation.archive:
            await cleanup.after_cancelled_backup(
                borg,
                repo.location,
                invocation.archive,
                env,
                self.out,
                killed=done.killed,
                lock_wait=self.ctx.options.cleanup_lock_wait_s,
                tracker=self,
            )
        elif done.killed:
            # On shutdown the job is retried; its checkpoints help the retry deduplicate.
            await cleanup.break_lock(borg, repo.location, env, self.out, tracker=self)

    def _cancel_reason(self) -> str:
        return (self.cancel_request or CancelRequest()).describe()

    # ------------------------------------------------------------------ endings

    def _cancelled_before_start(self) -> Ending:
        ending = endings.cancelled_before_start(self.cancel_request or CancelRequest(), self.hints)
        if ending.status == JobStatus.CANCELLED and ending.error is not None:
            self.executor_line(ending.error.message)
        return ending

    def _failed(self, kind: str, message: str, hint: str | None = None, exit_code: int | None = None) -> Ending:
        return endings.failed(kind, message, hint if hint is not None else hint_for(kind, self.hints), exit_code)
