"""Job types that are not plain borg: one module per type, behind one small interface.

The runner (services/executor/runner.py) looks a job's type up in `REGISTRY` before
its borg path. A type found there is handed over whole: the runner fetches the
repository passphrase first when the plug-in `wants_passphrase` (and the job has a
repository with one), then calls `await plugin.run(job)` and publishes the `Ending` it
returns as the job's outcome, exactly as for borg jobs (logs first, then the outcome,
once, with the job's last progress).

What a plug-in gets (`PluginJob`, in plugin.py):

- `spec`: the JobSpec (type, options, repository, plan, agent);
- `line(text, level, source)` and `progress(Progress)`: the job's log and progress,
  batched and published by the runner;
- `cancel` (an asyncio.Event) and `cancel_request()`: set on a user's cancel, a stall
  or the executor's shutdown; `stopped(what, exit_code)` is the matching Ending;
- `data_dir`, `environ` (the executor's environment: read configuration from it, never
  pass it on), `child_environment()` (secrets withheld, the job's BORGFLOW_* context
  set) and `borg_environment()` (with the passphrase, for borg only);
- `passphrase`, when asked for; `facts` and `hints` (the agent, the repository);
- `await run(argv, on_line, env=, cwd=, what=)`: runs an argument list (never a shell
  string) in its own session, each output line to `on_line(text, stream)`, stopped
  with SIGINT, SIGTERM, SIGKILL on a cancel, recorded so that a restarted executor
  finds and stops it; `failed(kind, message, hint)` is a failed Ending.

Most types are one command: subclass `CommandPlugin` and write `command` (the argv,
or BadJob), `start` (a fresh reading state), `read` (one line: log it, move the
progress) and `outcome` (exit code and state → Ending); see s3_sync.py. A type with
more steps implements `Plugin.run` itself (ping.py is the smallest; package_install.py
runs apt-get twice when it must).

Adding a type: its module here and a line in REGISTRY; its tag in shared/events.py
JobType (and WRITING_TYPES if it takes borg's exclusive lock), its options in
shared/submit.py OPTIONS, its body in services/api/job_bodies.py, its error kinds'
hints, its icon on the Queue page; docs/job-types.md says the same at more length.
"""

from __future__ import annotations

from services.executor.jobs.package_install import PackageInstall
from services.executor.jobs.ping import Ping
from services.executor.jobs.plugin import Command, CommandPlugin, Plugin, PluginJob, completed
from services.executor.jobs.plugin_test import PluginTest
from services.executor.jobs.process import OnLine, ProcessExit, ProcessUnavailable
from services.executor.jobs.restore_database import RestoreDatabase
from services.executor.jobs.s3_sync import S3Sync
from services.executor.jobs.update_agent import UpdateAgent
from services.executor.jobs.update_borg import UpdateBorg

_PLUGINS: tuple[Plugin, ...] = (
    Ping(),
    S3Sync(),
    PackageInstall(),
    UpdateBorg(),
    UpdateAgent(),
    RestoreDatabase(),
    PluginTest(),
)

REGISTRY: dict[str, Plugin] = {job_type: plugin for plugin in _PLUGINS for job_type in plugin.types}


def plugin_for(job_type: str) -> Plugin | None:
    """The plug-in that runs `job_type`, None for a borg job."""
    return REGISTRY.get(job_type)


__all__ = [
    "REGISTRY",
    "Command",
    "CommandPlugin",
    "OnLine",
    "Plugin",
    "PluginJob",
    "ProcessExit",
    "ProcessUnavailable",
    "completed",
    "plugin_for",
]
