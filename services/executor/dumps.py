"""Streaming a plan's database dumps into its backup, with no copy on disk.

A temporary directory holds one FIFO per database at `borgflow-dumps/<kind>/<database>.dump`;
borg runs with that directory as its working directory, the relative path `borgflow-dumps`
among its paths, and `--read-special`, so it reads each FIFO as a file's contents and
stores exactly that path. Each dump (`pg_dump -Fc`, `mariadb-dump`) starts before borg and
writes to a pipe of ours; a feeder copies it into its FIFO.

Why a feeder rather than the dump writing the FIFO itself: borg opens a FIFO blocking,
so a FIFO nobody ever opens for writing (a dump that failed before opening its output)
would hang borg for ever. The feeder opens the write end as soon as borg opens the read
end, whatever the dump does, and closes it when the dump's output ends; a dump that
failed leaves a short file in the archive, and the backup then deletes that archive. If
borg ends without reading a FIFO, the feeder still blocked in its open is released by
opening the read end ourselves. Dumps still running when borg has ended are stopped.

The passwords are only in each dump's own environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from services.executor import commands, databases, endings
from services.executor.borgproc import (
    STREAM_LIMIT,
    BorgUnavailable,
    Output,
    Tracker,
    run_captured,
    signal_group,
    text_lines,
)
from services.executor.databases import Server
from services.executor.endings import Ending
from services.executor.outcomes import HintContext, exit_code_of, hint_for
from shared.events import DatabaseRef, JobResult, JobStatus

CHUNK = 1 << 20
# After borg has ended, how long a dump gets to finish on its own before it is stopped.
FINISH_TIMEOUT_S = 10.0
DELETE_TIMEOUT_S = 120.0


@dataclass
class Dump:
    """One database's dump on its way into the archive."""

    db: DatabaseRef
    fifo: Path
    proc: asyncio.subprocess.Process | None = None
    bytes: int = 0
    fed: bool = False
    """The whole output went into the FIFO (borg read it to its end)."""
    opened: bool = False
    stderr: list[str] = field(default_factory=list)
    code: int | None = None
    problem: str | None = None
    feeder: asyncio.Task[None] | None = None
    reader: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.fed and self.problem is None

    def failure(self) -> str:
        """What went wrong, in a sentence with the server's own message."""
        what = Server.of(self.db).describe()
        said = databases.last_lines(self.stderr)
        if self.problem is not None:
            return f"the dump of {what} {self.problem}" + (f": {said}" if said else "")
        return f"the dump of {what} failed (exit code {self.code})" + (f": {said}" if said else "")


class DumpSession:
    """The FIFOs and dumps of one backup: `start()` before borg, `finish()` after it."""

    def __init__(
        self,
        dbs: Sequence[DatabaseRef],
        passwords: Mapping[str, str],
        environ: Mapping[str, str],
        out: Output,
        tracker: Tracker | None = None,
    ) -> None:
        self._dbs = list(dbs)
        self._passwords = dict(passwords)
        self._environ = environ
        self._out = out
        self._tracker = tracker
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.dumps: list[Dump] = []

    @property
    def cwd(self) -> str:
        """Where borg runs: `borgflow-dumps` is relative to it."""
        assert self._tmp is not None, "start() first"
        return self._tmp.name

    async def start(self) -> None:
        """Make the FIFOs and start every dump (they block until borg reads them)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="borgflow-dumps-")
        base = Path(self._tmp.name)
        for db in self._dbs:
            fifo = base / databases.dump_path(db.kind, db.database)
            fifo.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(fifo, 0o600)
            self.dumps.append(Dump(db=db, fifo=fifo))
        for d in self.dumps:
            await self._start(d)

    async def _start(self, d: Dump) -> None:
        tool = databases.dump(Server.of(d.db), self._passwords.get(d.db.key), self._environ)
        self._out.line(
            f"starting {tool.summary} into {databases.dump_path(d.db.kind, d.db.database)}", source="executor"
        )
        try:
            d.proc = await asyncio.create_subprocess_exec(
                *tool.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=tool.env,
                start_new_session=True,  # stopped as a group with whatever it starts
                limit=STREAM_LIMIT,
            )
        except OSError as e:
            d.problem = f"could not start ({tool.argv[0]}: {e.strerror or e})"
            d.code = 127
        if d.proc is not None and self._tracker is not None:
            await self._tracker.spawned(d.proc.pid, "dump")
        d.feeder = asyncio.create_task(self._feed(d))
        if d.proc is not None and d.proc.stderr is not None:
            d.reader = asyncio.create_task(self._read_stderr(d, d.proc.stderr))

    async def _read_stderr(self, d: Dump, stream: asyncio.StreamReader) -> None:
        source = "pg_dump" if d.db.kind == "postgresql" else "mariadb-dump"
        async for line in text_lines(stream):
            text = line.rstrip()
            d.stderr.append(text)
            self._out.line(text, level="warning", source=source)

    async def _feed(self, d: Dump) -> None:
        """Open the FIFO's write end (when borg opens its read end) and copy the dump into it."""
        fd = await asyncio.to_thread(os.open, d.fifo, os.O_WRONLY)
        d.opened = True
        try:
            if d.proc is None or d.proc.stdout is None:
                return  # nothing to give: borg reads an empty file, and the backup fails
            while chunk := await d.proc.stdout.read(CHUNK):
                await asyncio.to_thread(_write_all, fd, chunk)
                d.bytes += len(chunk)
            d.fed = True
        except BrokenPipeError:
            d.problem = d.problem or "was not read to its end by borg"
        finally:
            os.close(fd)

    async def finish(self) -> list[Dump]:
        """After borg: release feeders borg never reached, wait for (or stop) every dump; the dumps."""
        for d in self.dumps:
            if d.feeder is not None and not d.opened:
                # borg never opened this FIFO: opening its read end lets the feeder's open return.
                with contextlib.suppress(OSError):
                    os.close(os.open(d.fifo, os.O_RDONLY | os.O_NONBLOCK))
                d.problem = d.problem or "was not read by borg"
        for d in self.dumps:
            await self._end(d)
        return self.dumps

    async def _end(self, d: Dump) -> None:
        if d.proc is not None:
            # A dump borg did not read to its end would wait on its pipe for ever: stopped at once.
            wait_s = FINISH_TIMEOUT_S if d.problem is None else 0
            try:
                await asyncio.wait_for(d.proc.wait(), wait_s)
            except TimeoutError:
                signal_group(d.proc, signal.SIGTERM)
                d.problem = d.problem or "did not end with the backup and was stopped"
                await d.proc.wait()
            d.code = exit_code_of(d.proc.returncode or 0)
        for task in (d.feeder, d.reader):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await asyncio.wait_for(task, FINISH_TIMEOUT_S)

    async def close(self) -> None:
        """Stop whatever still runs and remove the FIFOs (after a cancel or a crash too)."""
        for d in self.dumps:
            if d.proc is not None and d.proc.returncode is None:
                signal_group(d.proc, signal.SIGKILL)
                await d.proc.wait()
            if d.feeder is not None and not d.feeder.done():
                if not d.opened:  # its thread is blocked opening the FIFO: let the open return
                    with contextlib.suppress(OSError):
                        os.close(os.open(d.fifo, os.O_RDONLY | os.O_NONBLOCK))
                # Awaited, not cancelled: a cancelled task would drop the descriptor its thread opens.
                with contextlib.suppress(TimeoutError, OSError):
                    await asyncio.wait_for(asyncio.shield(d.feeder), FINISH_TIMEOUT_S)
            if d.reader is not None and not d.reader.done():
                d.reader.cancel()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise BrokenPipeError from e
            raise


async def conclude(
    session: DumpSession,
    ending: Ending,
    *,
    borg: str,
    location: str,
    archive: str | None,
    env: dict[str, str],
    out: Output,
    hints: HintContext,
    lock_wait: int,
    tracker: Tracker | None = None,
) -> tuple[Ending, bool]:
    """The backup's ending once its dumps are in (or not), and whether its archive is a good one.

    Every dump whole: the ending as borg made it, with the dumps' sizes in its details. A
    dump that failed fails the backup (`dump_failed`) even when borg succeeded, and the
    archive borg committed with a short dump in it is deleted: no archive is left that
    looks like a good backup but restores a broken database. A backup that failed or was
    cancelled anyway keeps its own ending; the dumps' failures are in its log.
    """
    dumps = await session.finish()
    failed = [d for d in dumps if not d.ok]
    for d in failed:
        out.line(d.failure(), level="error", source="executor")
    if not failed:
        details = {"dumps": {databases.dump_path(d.db.kind, d.db.database): d.bytes for d in dumps}}
        result = ending.result or JobResult()
        merged = msgspec.structs.replace(result, details=result.details | details)
        return msgspec.structs.replace(ending, result=merged), True
    if ending.status not in (JobStatus.COMPLETED, JobStatus.WARNING):
        return ending, False
    removed = archive is None or await _delete_archive(borg, location, archive, env, out, lock_wait, tracker)
    message = "; ".join(d.failure() for d in failed)
    if archive is not None:
        message += (
            f"; archive {archive} was deleted"
            if removed
            else f"; archive {archive} could not be deleted: delete it by hand (borg delete {location}::{archive})"
        )
    return endings.failed("dump_failed", message, hint_for("dump_failed", hints)), False


async def _delete_archive(
    borg: str,
    location: str,
    archive: str,
    env: dict[str, str],
    out: Output,
    lock_wait: int,
    tracker: Tracker | None,
) -> bool:
    argv = commands.delete_archives_command(borg, location, [archive], lock_wait)
    try:
        done = await run_captured(argv, env, DELETE_TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not delete archive {archive}: {e}", level="error", source="executor")
        return False
    if done.code != 0:
        said = "; ".join(e.message for e in done.entries if e.level in ("error", "critical"))
        out.line(f"deleting archive {archive} failed (exit code {done.code}): {said}", level="error", source="executor")
        return False
    out.line(f"deleted archive {archive}: a database dump in it is not whole", source="executor")
    return True
