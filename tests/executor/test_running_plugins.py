"""The plug-in interface (services/executor/jobs): a process's lines reach the plug-in as
they come, a cancel stops it (escalating past a process that ignores SIGINT), and a
CommandPlugin turns one command into a job's log, progress and outcome. Real processes
(the test's own Python), a recorder standing in for the job's log and progress.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from services.executor.endings import CancelRequest, Ending
from services.executor.hostinfo import HostFacts
from services.executor.jobs import Command, CommandPlugin, PluginJob, ProcessExit, completed, plugin_for
from services.executor.outcomes import HintContext
from shared.events import JobSpec, JobStatus, Progress, utcnow


@dataclass
class Recorder:
    """The job's log and progress, kept in lists."""

    lines: list[tuple[str, str, str]] = field(default_factory=list)
    progress_seen: list[Progress] = field(default_factory=list)

    def line(self, message: str, *, level: str = "info", source: str = "borg") -> None:
        self.lines.append((message, level, source))

    def progress(self, progress: Progress) -> None:
        self.progress_seen.append(progress)


def plugin_job(tmp_path: Path, out: Recorder, cancel: asyncio.Event | None = None, **options: object) -> PluginJob:
    spec = JobSpec(id="j1", type="test", agent="a1", options=dict(options), created_at=utcnow())
    facts = HostFacts(agent="a1", host="h", pid=1, pid_started_at=None, borg_version="1.4.0", python_version="3")
    return PluginJob(
        spec=spec,
        output=out,
        cancel=cancel or asyncio.Event(),
        cancel_request=lambda: CancelRequest(by="tester"),
        data_dir=tmp_path,
        environ={"PATH": "/usr/bin:/bin", "BORGFLOW_TOKEN": "secret-token"},
        facts=facts,
        hints=HintContext(agent="a1"),
        borg="borg",
        grace_s=0.5,
    )


class Counting(CommandPlugin[list[int]]):
    """Counts to options.n, a number a line, reading each as progress."""

    types: ClassVar[frozenset[str]] = frozenset({"test"})
    what: ClassVar[str] = "counter"

    def command(self, job: PluginJob) -> Command:
        n = int(str(job.spec.options["n"]))
        script = f"import sys\nfor i in range(1, {n} + 1): print(i, flush=True)\nsys.exit({n} % 2)"
        return Command(argv=[sys.executable, "-c", script])

    def start(self, job: PluginJob) -> list[int]:
        return []

    def read(self, job: PluginJob, state: list[int], text: str, stream: str) -> None:
        state.append(int(text))
        job.progress(Progress(current=int(text), total=int(str(job.spec.options["n"]))))

    def outcome(self, job: PluginJob, done: ProcessExit, state: list[int]) -> Ending:
        if done.code != 0:
            return job.failed("counting_failed", f"counted {len(state)} and exited with {done.code}", "count evenly")
        return completed({"counted": len(state)})


async def test_a_process_lines_reach_the_plugin_from_both_streams(tmp_path: Path) -> None:
    out = Recorder()
    seen: list[tuple[str, str]] = []
    script = "import sys\nprint('out one', flush=True)\nprint('err one', file=sys.stderr, flush=True)\nsys.exit(3)"
    done = await plugin_job(tmp_path, out).run(
        [sys.executable, "-c", script], lambda text, stream: seen.append((text, stream)), what="python"
    )
    assert done.code == 3 and not done.signalled
    assert sorted(seen) == [("err one", "stderr"), ("out one", "stdout")]


async def test_a_child_gets_no_executor_secret(tmp_path: Path) -> None:
    out = Recorder()
    seen: list[str] = []
    script = "import os\nfor k in sorted(os.environ): print(k)"
    await plugin_job(tmp_path, out).run([sys.executable, "-c", script], lambda text, stream: seen.append(text))
    assert "BORGFLOW_TOKEN" not in seen
    assert "BORGFLOW_JOB_ID" in seen and "PATH" in seen


async def test_a_cancel_stops_a_process_that_ignores_sigint(tmp_path: Path) -> None:
    out = Recorder()
    cancel = asyncio.Event()
    job = plugin_job(tmp_path, out, cancel)
    script = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)"
    )
    run = asyncio.create_task(job.run([sys.executable, "-c", script], lambda text, stream: cancel.set()))
    done = await asyncio.wait_for(run, 20)
    assert done.signalled and not done.killed
    assert done.code == 128 + 15  # SIGINT ignored; SIGTERM ended it
    said = [message for message, _, _ in out.lines]
    assert "cancelled by user by tester: sending SIGINT to process" in said
    assert "cancelled by user by tester: sending SIGTERM to process" in said


async def test_a_command_plugin_reports_progress_and_its_outcome(tmp_path: Path) -> None:
    out = Recorder()
    ending = await Counting().run(plugin_job(tmp_path, out, n=4))
    assert ending.status == JobStatus.COMPLETED and ending.result is not None
    assert ending.result.details == {"counted": 4}
    assert [p.current for p in out.progress_seen] == [1, 2, 3, 4]
    assert out.lines[-1][0].startswith("counter exited with 0 after")

    failed = await Counting().run(plugin_job(tmp_path, Recorder(), n=3))
    assert failed.status == JobStatus.FAILED and failed.error is not None
    assert (failed.error.kind, failed.error.hint, failed.error.message) == (
        "counting_failed",
        "count evenly",
        "counted 3 and exited with 1",
    )


async def test_a_command_plugin_cancelled_before_it_starts_runs_nothing(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    cancel.set()
    out = Recorder()
    ending = await Counting().run(plugin_job(tmp_path, out, cancel, n=2))
    assert ending.status == JobStatus.CANCELLED and ending.error is not None
    assert ending.error.message == "cancelled by user by tester before counter started"
    assert out.progress_seen == []


async def test_a_missing_program_fails_the_job_with_a_hint(tmp_path: Path) -> None:
    class Missing(Counting):
        def command(self, job: PluginJob) -> Command:
            return Command(argv=[str(tmp_path / "no-such-program")])

    ending = await Missing().run(plugin_job(tmp_path, Recorder(), n=1))
    assert ending.status == JobStatus.FAILED and ending.error is not None
    assert "cannot run" in ending.error.message and "Install counter" in ending.error.hint


def test_ping_is_a_plugin() -> None:
    assert plugin_for("ping") is not None
    assert plugin_for("backup") is None
