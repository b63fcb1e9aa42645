"""`plugin_test`: a plan checked without a backup, part by part.

Each database is dumped to nowhere (`pg_dump --file=/dev/null`, `mariadb-dump
--result-file=/dev/null`: the whole dump runs, so a table the user may not read fails it as
a backup would); each pre/post script must exist and be executable on the agent; the
repository must answer (`borg list --short --last 1`). Every part is checked, whatever
fails first, and the job log says how each went; the job fails naming every part that
failed, with the hint for the first.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from typing import ClassVar

import msgspec

from services.executor import databases
from services.executor.borgproc import BorgUnavailable, run_captured
from services.executor.databases import Server
from services.executor.endings import Ending
from services.executor.exceptions import SecretUnavailable
from services.executor.jobs.plugin import PluginJob, completed
from services.executor.jobs.process import ProcessUnavailable
from services.executor.jobs.restore_database import borg_failure
from services.executor.outcomes import hint_for
from shared.events import DatabaseRef

REPOSITORY_TIMEOUT_S = 120.0


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    part: str
    kind: str
    message: str
    hint: str


def script_problem(command: str, path: str) -> str | None:
    """Why a plan's script cannot run on this agent (None: it can); pure but for the file system."""
    try:
        argv = shlex.split(command)
    except ValueError as e:
        return f"cannot be split into arguments: {e}"
    if not argv:
        return "is empty"
    program = argv[0]
    if "/" not in program:
        found = shutil.which(program, path=path)
        return None if found else f"{program} is not on the agent's PATH"
    if not os.path.isfile(program):
        return f"{program} does not exist"
    if not os.access(program, os.X_OK):
        return f"{program} is not executable"
    return None


class PluginTest:
    types: ClassVar[frozenset[str]] = frozenset({"plugin_test"})
    wants_passphrase: ClassVar[bool] = True

    async def run(self, job: PluginJob) -> Ending:
        plan = job.spec.plan
        if plan is None:
            return job.failed("bad_options", "a plugin_test job needs a plan", "Queue it with a plan_id")
        problems: list[Problem] = []
        passwords: dict[str, str] = {}
        if any(db.has_password for db in plan.databases):
            try:
                passwords = (await job.secrets()).databases if job.secrets is not None else {}
            except SecretUnavailable as e:
                return job.failed("secret_unavailable", f"could not fetch the database passwords: {e}")
        for db in plan.databases:
            if job.cancelled:
                return job.stopped("the plugin test")
            problem = await self._database(job, db, passwords.get(db.key))
            if problem is not None:
                problems.append(problem)
        passwords.clear()
        path = job.environ.get("PATH", os.defpath)
        for command in [*plan.pre_scripts, *plan.post_scripts]:
            said = await asyncio.to_thread(script_problem, command, path)
            if said is None:
                job.line(f"script {command}: exists and is executable")
            else:
                message = f"script {command!r} {said}"
                job.line(message, level="error")
                problems.append(
                    Problem(part=f"script {command}", kind="script_missing", message=message, hint=self._hint(job))
                )
        if job.cancelled:
            return job.stopped("the plugin test")
        repository = await self._repository(job)
        if repository is not None:
            problems.append(repository)
        checked = len(plan.databases) + len(plan.pre_scripts) + len(plan.post_scripts) + 1
        if not problems:
            return completed({"checked": checked, "databases": len(plan.databases)})
        first = problems[0]
        message = "; ".join(f"{p.part}: {p.message}" for p in problems)
        return job.failed(first.kind, f"{len(problems)} of {checked} checks failed: {message}", first.hint)

    def _hint(self, job: PluginJob, kind: str = "script_missing") -> str:
        return hint_for(kind, job.hints)

    async def _database(self, job: PluginJob, db: DatabaseRef, password: str | None) -> Problem | None:
        server = Server.of(db)
        tool = databases.dump(server, password, job.environ, to=os.devnull)
        said: list[str] = []
        job.line(f"dumping {server.describe()} to nowhere: {tool.summary}")
        try:
            done = await job.run(tool.argv, lambda text, stream: said.append(text), env=tool.env, what=tool.argv[0])
        except ProcessUnavailable as e:
            hint = self._hint(job, "dump_failed")
            return Problem(part=f"database {db.key}", kind="dump_failed", message=str(e), hint=hint)
        for line in said:
            job.line(line, level="warning", source=tool.argv[0].rsplit("/", 1)[-1])
        if done.code == 0:
            job.line(f"database {db.key}: dumps")
            return None
        kind = databases.failure_kind("\n".join(said), restoring=False)
        message = f"the dump of {server.describe()} failed: {databases.last_lines(said) or f'exit code {done.code}'}"
        job.line(message, level="error")
        return Problem(part=f"database {db.key}", kind=kind, message=message, hint=self._hint(job, kind))

    async def _repository(self, job: PluginJob) -> Problem | None:
        repo = job.spec.repository
        if repo is None:
            return None
        argv = [job.borg, "list", "--short", "--last", "1", "--log-json", "--", repo.location]
        job.line(f"asking the repository: {' '.join(argv)}")
        try:
            done = await run_captured(argv, job.borg_environment(), REPOSITORY_TIMEOUT_S, job.tracker)
        except BorgUnavailable as e:
            hint = self._hint(job, "borg_missing")
            return Problem(part="repository", kind="borg_missing", message=str(e), hint=hint)
        if done.code in (0, 1) or done.code >= 100:
            job.line(f"repository {repo.location}: answers")
            return None
        failed = borg_failure(job, f"borg list {repo.location}", done.code, done.entries, side="")
        error = failed.error
        assert error is not None
        return Problem(part="repository", kind=error.kind, message=error.message, hint=error.hint)
