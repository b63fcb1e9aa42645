"""What `update_borg` and `update_agent` share: a venv of its own, pip into it, and the new
program's `--version` asked before anything uses it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from services.executor.endings import Ending
from services.executor.jobs.plugin import PluginJob
from services.executor.jobs.process import ProcessExit, ProcessUnavailable
from shared.events import Progress

# pip must never stop to ask, and its progress bars are noise in a job log.
PIP_FLAGS = ("--disable-pip-version-check", "--no-input", "--progress-bar", "off")


async def step(job: PluginJob, argv: list[str], what: str, printed: list[str] | None = None) -> ProcessExit | Ending:
    """Run one step, its output the job's log (stdout lines also into `printed`).

    Its exit (for the caller to judge), or the Ending when it could not start or was stopped.
    """
    job.line(f"starting {' '.join(argv)}")

    def on_line(text: str, stream: str) -> None:
        if printed is not None and stream == "stdout":
            printed.append(text)
        job.line(text, level="info", source=what)

    try:
        done = await job.run(argv, on_line, what=what)
    except ProcessUnavailable as e:
        return job.failed("update_failed", str(e), f"Agent {job.agent} could not run {what}: check its Python")
    job.line(f"{what} exited with {done.code} after {done.elapsed_s:.1f}s")
    if done.signalled and done.code != 0:
        return job.stopped(what, done.code)
    return done


def version_said(printed: list[str]) -> str:
    """The last word of the last line a `--version` printed ("borg 1.4.5" → "1.4.5"), else ""."""
    words = printed[-1].split() if printed else []
    return words[-1] if words else ""


class Refused(NamedTuple):
    """A step ran and said no: why, for the type's own failure message."""

    why: str
    exit_code: int | None = None


async def install(
    job: PluginJob,
    target: Path,
    requirement: str,
    program: str,
    accept: Callable[[str], bool],
    prepare: Callable[[Path], None] | None = None,
) -> str | Ending | Refused:
    """`python -m venv target` (the executor's own Python), `prepare(target)` if given, its pip
    installing `requirement`, then `target/bin/<program> --version`: the version it said when
    `accept` takes it. An Ending when a step could not start or was stopped."""
    python = str(target / "bin" / "python")
    steps = [
        ("creating a venv", "venv", [sys.executable, "-m", "venv", str(target)]),
        (f"installing {requirement}", "pip", [python, "-m", "pip", "install", *PIP_FLAGS, requirement]),
    ]
    for action, what, argv in steps:
        job.progress(Progress(action=action))
        done = await step(job, argv, what)
        if isinstance(done, Ending):
            return done
        if done.code != 0:
            return Refused(f"{what} exited with {done.code}", done.code)
        if what == "venv" and prepare is not None:
            await asyncio.to_thread(prepare, target)
    job.progress(Progress(action=f"verifying {program} --version"))
    printed: list[str] = []
    done = await step(job, [str(target / "bin" / program), "--version"], program, printed)
    if isinstance(done, Ending):
        return done
    said = version_said(printed)
    if done.code != 0 or not said or not accept(said):
        return Refused(f"the new {program} --version said {said or 'nothing'} (exit {done.code})")
    return said
