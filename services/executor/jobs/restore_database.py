"""`restore_pg`, `restore_mysql`: a database dump of an archive restored into a target database.

Three steps. `borg list` finds the dump (`borgflow-dumps/<kind>/<database>.dump`) and its
size; `createdb` (PostgreSQL) or `CREATE DATABASE IF NOT EXISTS` (MySQL) makes the target
when it is missing; then `borg extract --stdout` streams the dump through the executor into
`pg_restore --no-owner` or `mariadb`, no temporary file, the bytes counted on the way as the
job's progress. A failure says which side failed: the archive (no such dump, borg's own
errors) or the target (connection, privileges, version, anything else) with a hint.

The target's password is fetched from the api when the job runs (the job's options hold only
a mask of it) and is only in the database tool's environment.
"""

from __future__ import annotations

import json
from typing import ClassVar

import msgspec

from services.executor import databases
from services.executor.borgproc import BorgUnavailable, run_captured
from services.executor.databases import Server
from services.executor.endings import Ending
from services.executor.exceptions import SecretUnavailable
from services.executor.jobs.pipe import PipeExit, Side, run_pipe
from services.executor.jobs.plugin import PluginJob, completed
from services.executor.jobs.process import ProcessUnavailable
from services.executor.outcomes import BorgMessage, classify
from services.executor.parse import LogEntry, parse_line
from shared.events import Progress
from shared.submit import RestoreDatabaseOptions

LIST_TIMEOUT_S = 300.0
KINDS = {"restore_pg": "postgresql", "restore_mysql": "mysql"}


def borg_failure(
    job: PluginJob, what: str, code: int, entries: list[LogEntry], side: str = "the archive side failed: "
) -> Ending:
    """A borg step that failed: the archive's side, classified as any borg failure."""
    verdict = classify(code, [BorgMessage(level=e.level, message=e.message, msgid=e.msgid) for e in entries], job.hints)
    error = verdict.error
    kind = error.kind if error is not None else "borg_error"
    message = f"{side}{what}: " + (error.message if error is not None else f"exit code {code}")
    return job.failed(kind, message, error.hint if error is not None and error.hint else None, exit_code=code)


class RestoreDatabase:
    types: ClassVar[frozenset[str]] = frozenset(KINDS)
    wants_passphrase: ClassVar[bool] = True

    async def run(self, job: PluginJob) -> Ending:
        spec = job.spec
        kind = KINDS[spec.type]
        try:
            options = msgspec.convert(spec.options, RestoreDatabaseOptions)
        except msgspec.ValidationError as e:
            return job.failed("bad_options", f"the job's options cannot be restored from: {e}")
        if spec.repository is None or not spec.archive:
            return job.failed("bad_options", f"a {spec.type} job needs a repository and an archive")
        location, archive = spec.repository.location, spec.archive
        path = databases.dump_path(kind, options.database)
        target = options.target
        server = Server(kind=kind, host=target.host, port=target.port, user=target.user, database=target.database)
        password: str | None = None
        if target.password is not None:  # given (the job holds a mask): fetched now, kept in the tool's env only
            if job.secrets is None:
                return job.failed("secret_unavailable", "this executor cannot fetch the target database's password")
            try:
                password = (await job.secrets()).target_password
            except SecretUnavailable as e:
                return job.failed("secret_unavailable", f"could not fetch the target database's password: {e}")
            if password is None:
                return job.failed("secret_unavailable", "the api holds no target password for this job: retry it")
        if job.cancelled:
            return job.stopped("the restore")

        # 1. The dump is in the archive (and how big it is, for the progress).
        env = job.borg_environment()
        argv = [job.borg, "list", "--json-lines", "--log-json", "--", f"{location}::{archive}", path]
        try:
            listed = await run_captured(argv, env, LIST_TIMEOUT_S, job.tracker)
        except BorgUnavailable as e:
            return job.failed("borg_missing", str(e))
        if listed.code not in (0, 1) and listed.code < 100:
            return borg_failure(job, f"borg list {location}::{archive}", listed.code, listed.entries)
        sizes = [json.loads(line).get("size") for line in listed.stdout.splitlines() if line.strip()]
        if not sizes:
            return job.failed(
                "dump_not_found",
                f"the archive side failed: archive {archive} holds no {path} (no {kind} dump of database"
                f" {options.database!r} was made into it)",
            )
        total = sizes[0] if isinstance(sizes[0], int) else None
        job.line(f"{path} is in archive {archive} ({total} bytes)")

        # 2. The target database, created when missing.
        created = await self._create(job, server, password)
        if isinstance(created, Ending):
            return created
        if job.cancelled:
            return job.stopped("the restore")

        # 3. borg extract --stdout | pg_restore / mariadb, counted on the way.
        extract = [job.borg, "extract", "--stdout", "--log-json", "--", f"{location}::{archive}", path]
        tool = databases.restore(server, password, job.environ)
        del password
        job.line(f"starting {' '.join(extract)} | {tool.summary}")
        borg_lines: list[LogEntry] = []
        tool_lines: list[str] = []

        def on_line(text: str, side: str) -> None:
            if side == "producer":
                for entry in parse_line(text):
                    if isinstance(entry, LogEntry):
                        borg_lines.append(entry)
                        job.line(entry.message, level=entry.level, source="borg")
            else:
                tool_lines.append(text)
                job.line(text, level="warning", source=tool.argv[0].rsplit("/", 1)[-1])

        def on_bytes(done: int, elapsed: float) -> None:
            percent = min(100.0, 100.0 * done / total) if total else None
            job.progress(
                Progress(
                    action=f"restoring {options.database} into {server.database}",
                    current=done,
                    total=total,
                    percent=percent,
                    bytes_per_s=done / elapsed if elapsed > 0 else None,
                )
            )

        try:
            done = await run_pipe(
                Side(argv=extract, env=env, what="borg"),
                Side(argv=tool.argv, env=tool.env, what=tool.argv[0]),
                on_line=on_line,
                on_bytes=on_bytes,
                cancel=job.cancel,
                grace_s=job.grace_s,
                tracker=job.tracker,
            )
        except ProcessUnavailable as e:
            return job.failed("borg_missing" if e.program == job.borg else "restore_failed", str(e))
        job.line(f"borg exited with {done.producer_code}, {tool.argv[0]} with {done.consumer_code}: {done.bytes} bytes")
        return self._outcome(job, done, server, borg_lines, tool_lines, options.database, created)

    async def _create(self, job: PluginJob, server: Server, password: str | None) -> bool | Ending:
        """Whether the target was created (False: it was there), or the failure."""
        tool = databases.create_database(server, password, job.environ)
        said: list[str] = []
        job.line(f"creating the target database when missing: {tool.summary}")
        try:
            done = await job.run(tool.argv, lambda text, stream: said.append(text), env=tool.env, what=tool.argv[0])
        except ProcessUnavailable as e:
            return job.failed("restore_failed", f"the target side failed: {e}")
        text = "\n".join(said)
        for line in said:
            job.line(line, level="warning", source=tool.argv[0].rsplit("/", 1)[-1])
        if done.signalled:
            return job.stopped(tool.argv[0], done.code)
        if done.code == 0:
            return server.kind == "postgresql"  # MySQL's IF NOT EXISTS does not say
        if server.kind == "postgresql" and databases.already_exists(text):
            job.line(f"database {server.database} exists: restoring into it")
            return False
        kind = databases.failure_kind(text, restoring=True)
        return job.failed(
            kind,
            f"the target side failed: creating database {server.database} on {server.host}:{server.port}: "
            + (databases.last_lines(said) or f"exit code {done.code}"),
        )

    def _outcome(
        self,
        job: PluginJob,
        done: PipeExit,
        server: Server,
        borg_lines: list[LogEntry],
        tool_lines: list[str],
        source: str,
        created: bool,
    ) -> Ending:
        if done.signalled:
            return job.stopped("the restore", done.consumer_code or done.producer_code)
        borg_failed = done.producer_code not in (0, 1) and done.producer_code < 100
        if borg_failed and not done.consumer_first:
            return borg_failure(job, "borg extract", done.producer_code, borg_lines)
        if done.consumer_code != 0:
            kind = databases.failure_kind("\n".join(tool_lines), restoring=True)
            said = databases.last_lines(tool_lines) or f"exit code {done.consumer_code}"
            return job.failed(
                kind,
                f"the target side failed: restoring into {server.describe()}: {said}",
                exit_code=done.consumer_code,
            )
        details: dict[str, object] = {
            "database": source,
            "target": server.database,
            "bytes_restored": done.bytes,
            "created": created,
        }
        return completed(details)
