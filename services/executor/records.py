"""The jobs this executor holds, in a small file under its data dir, so that a restarted
executor knows what its previous run left behind.

`<data_dir>/executor-<agent>/running.json` holds one entry per job from just before it
is claimed until its terminal event has landed: the job's type and repository, the
archive a backup writes, the process it runs now (borg or a script; pid and start time)
and, once the job has ended, its outcome while it waits to be published. The file is
replaced atomically (write a temporary file, fsync, rename), so a crash leaves the old
version or the new one, never half of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import datetime
from pathlib import Path

import msgspec

from services.executor import processes
from shared.events import JobSpec, Outcome, utcnow

log = logging.getLogger(__name__)

FILE_NAME = "running.json"


class RecordedProcess(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    started_at: float | None
    """psutil's create_time(): with the pid, it tells our process from one that reused the pid."""
    what: str
    """"borg" (the job's own command or housekeeping after it) or "script"."""


class RunningJob(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    type: str
    location: str | None = None
    """The repository's location (a local one may have a stale lock to break)."""
    archive: str | None = None
    """The archive a backup's `borg create` writes, once it started."""
    started_at: datetime
    executor_pid: int
    executor_started_at: float | None = None
    process: RecordedProcess | None = None
    outcome: Outcome | None = None
    """The job's terminal event, from when it is decided until it has landed on the stream."""


class _File(msgspec.Struct, kw_only=True):
    version: int = 1
    jobs: dict[str, RunningJob] = {}


def state_dir(data_dir: str | Path, agent: str) -> Path:
    return Path(data_dir) / f"executor-{agent}"


class RunningRecords:
    """The file, and the executor's current view of it.

    Every change is on disk before the call that made it returns, but changes made
    together share one write: a writer writes everything changed until it starts, and
    whoever waited behind it finds their change already written (a group commit). Forty
    jobs claimed from one batch cost one write and one fsync, not forty.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._jobs: dict[str, RunningJob] = {}
        self._lock = asyncio.Lock()
        self._write_failed = False
        self._changed = 0  # changes made so far
        self._written = 0  # changes on disk
        self._pid = os.getpid()
        self._pid_started_at = processes.started_at(self._pid)

    def load(self) -> dict[str, RunningJob]:
        """What the file holds now (at start: what the previous run left). A broken file is set aside."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as e:
            log.error("cannot read %s: %s", self.path, e)
            raw = b""
        jobs: dict[str, RunningJob] = {}
        if raw.strip():
            try:
                jobs = msgspec.json.decode(raw, type=_File).jobs
            except msgspec.MsgspecError as e:
                aside = self.path.with_name(f"{FILE_NAME}.broken-{utcnow():%Y%m%dT%H%M%S}")
                log.error("%s is not readable (%s): moved it to %s", self.path, e, aside.name)
                with contextlib.suppress(OSError):
                    self.path.replace(aside)
        self._jobs = dict(jobs)
        return jobs

    @property
    def jobs(self) -> dict[str, RunningJob]:
        return dict(self._jobs)

    async def claiming(self, spec: JobSpec) -> None:
        """Before the claim is appended: a crash right after it still leaves the job on record."""
        repo = spec.repository
        self._jobs[spec.id] = RunningJob(
            job_id=spec.id,
            type=spec.type,
            location=repo.location if repo else None,
            started_at=utcnow(),
            executor_pid=self._pid,
            executor_started_at=self._pid_started_at,
        )
        await self._save()

    async def spawned(self, job_id: str, pid: int, what: str, *, archive: str | None = None) -> None:
        """A process of the job has started: it is the one to look for after a crash."""
        current = self._jobs.get(job_id)
        if current is None:
            return
        process = RecordedProcess(pid=pid, started_at=processes.started_at(pid), what=what)
        changes: dict[str, object] = {"process": process}
        if archive is not None:
            changes["archive"] = archive
        self._jobs[job_id] = msgspec.structs.replace(current, **changes)
        await self._save()

    async def ended(self, job_id: str, outcome: Outcome) -> None:
        """The job's outcome is decided: kept here until it has landed on the stream."""
        current = self._jobs.get(job_id)
        if current is None:
            return
        self._jobs[job_id] = msgspec.structs.replace(current, outcome=outcome)
        await self._save()

    async def forget(self, job_id: str) -> None:
        if self._jobs.pop(job_id, None) is not None:
            await self._save()

    async def _save(self) -> None:
        # One writer at a time, each writing the latest state: the last rename wins and
        # holds every change made before it.
        self._changed += 1
        mine = self._changed
        async with self._lock:
            if self._written >= mine:
                return  # the writer before us wrote our change too
            upto = self._changed
            data = msgspec.json.encode(_File(jobs=dict(self._jobs)))
            writing = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.path, data))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # The thread writes on regardless: the next writer must not start on the
                # same temporary file before it is done.
                await asyncio.wait({writing})
                if not writing.cancelled():
                    writing.exception()  # retrieved here: nobody else will look at it
                raise
            except OSError as e:
                # The job goes on; only crash recovery is blinder for it (the heartbeat
                # still names the job).
                if not self._write_failed:
                    log.error("cannot write %s: %s", self.path, e)
                self._write_failed = True
            else:
                self._written = upto
                if self._write_failed:
                    log.info("writing %s again", self.path)
                self._write_failed = False


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    # The rename itself is durable only once the directory is.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
