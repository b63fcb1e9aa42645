"""A killed borg's lock is broken only when nobody else may hold it: `borg break-lock`
removes every holder, so a reader that took a shared lock meanwhile (a person's
`borg list`, a check), or a borg on another host sharing the filesystem, keeps its lock.

Readers take the lock through borg's own locking code in a helper process, as `borg list`
does, and hold it until the test lets them go."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from services.executor import cleanup, locks
from services.executor.commands import borg_environment
from services.executor.locks import Holder
from shared.config import default_borg_bin
from tests.executor.conftest import Template, eventually
from tests.executor.test_running_scripts import Lines

# Takes the repository's lock shared, exactly as a reading borg command does, says so,
# and holds it until its stdin closes.
_READER = """
import sys
from borg.locking import Lock
from borg.logger import setup_logging
setup_logging()  # borg logs the stale entries it drops, as a reading command would
lock = Lock(sys.argv[1], exclusive=False, timeout=10).acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


@asynccontextmanager
async def _reader(repo: Path, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process holding a shared lock on `repo` for the block."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _READER,
        str(repo / "lock"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"locked\n"
        yield proc
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _roster(repo: Path) -> dict[str, list[list[object]]]:
    doc: dict[str, list[list[object]]] = json.loads((repo / "lock.roster").read_text())
    return doc


def _repo(template: Template, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(template.repo, repo, symlinks=True)
    return repo


def _env(tmp_path: Path) -> dict[str, str]:
    return borg_environment(os.environ, data_dir=tmp_path / "agent", passphrase=None)


async def test_a_reader_that_came_after_the_kill_keeps_its_shared_lock(template: Template, tmp_path: Path) -> None:
    repo = _repo(template, tmp_path)
    # The job's borg, SIGKILLed as a cancel's last resort: its exclusive lock stays.
    job = await asyncio.create_subprocess_exec(
        default_borg_bin(),
        "with-lock",
        str(repo),
        "sleep",
        "60",
        env={**os.environ, "BORG_BASE_DIR": str(tmp_path / "me" / "borg")},
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    await eventually((repo / "lock.exclusive").exists, timeout=20, what="the job's borg holding the lock")
    os.killpg(job.pid, signal.SIGKILL)
    await job.wait()
    # Before the job's cleanup runs, a reader takes the lock (borg drops the dead entry itself).
    async with _reader(repo) as reader:
        env = _env(tmp_path)
        out = Lines()
        await cleanup.break_lock(default_borg_bin(), str(repo), env, out)

        [holder] = _roster(repo)["shared"]
        assert holder[1] == reader.pid  # the reader's lock survived
        host = locks.borg_host_id(env)
        assert holder[0] == host  # the host id borg writes is the one the executor works out
        assert out.lines == [
            (
                f"borg was killed: the lock on {repo} is also held by pid {reader.pid} on {host}, which may "
                "still run: not broken (borg removes a dead process's entry itself the next time it takes the lock)",
                "warning",
                "executor",
            )
        ]


async def test_a_killed_reader_leaves_the_other_readers_lock_alone(template: Template, tmp_path: Path) -> None:
    repo = _repo(template, tmp_path)
    async with _reader(repo) as other:
        async with _reader(repo) as job:  # the job's borg extract, say, killed
            os.killpg(job.pid, signal.SIGKILL)
            await job.wait()
        assert {entry[1] for entry in _roster(repo)["shared"]} == {other.pid, job.pid}
        out = Lines()
        await cleanup.break_lock(default_borg_bin(), str(repo), _env(tmp_path), out)
        assert other.pid in {entry[1] for entry in _roster(repo)["shared"]}
        [(message, level, _)] = out.lines
        assert level == "warning" and f"held by pid {other.pid} on " in message and str(job.pid) not in message


async def test_a_holder_on_another_host_is_never_taken_for_dead(template: Template, tmp_path: Path) -> None:
    repo = _repo(template, tmp_path)
    # A borg on another machine that shares the repository's filesystem: its pid means nothing here.
    async with _reader(repo, {"BORG_HOST_ID": "backup2.example@42"}) as elsewhere:
        os.killpg(elsewhere.pid, signal.SIGKILL)  # no such pid on this host now
        await elsewhere.wait()
    out = Lines()
    await cleanup.break_lock(default_borg_bin(), str(repo), _env(tmp_path), out)
    assert _roster(repo)["shared"] == [["backup2.example@42", elsewhere.pid, 0]]
    [(message, level, _)] = out.lines
    assert level == "warning" and f"pid {elsewhere.pid} on backup2.example@42" in message


async def test_a_lock_only_dead_borgs_of_this_host_hold_is_broken(template: Template, tmp_path: Path) -> None:
    repo = _repo(template, tmp_path)
    async with _reader(repo) as job:  # the job's borg extract, say, killed: nobody else reads
        os.killpg(job.pid, signal.SIGKILL)
        await job.wait()
    assert [entry[1] for entry in _roster(repo)["shared"]] == [job.pid]
    out = Lines()
    await cleanup.break_lock(default_borg_bin(), str(repo), _env(tmp_path), out)
    assert cleanup.lock_holders(str(repo)) == (False, set())
    assert out.lines == [(f"borg was killed: broke the lock it left on {repo}", "info", "executor")]


# --------------------------------------------------------------------------- the decision itself


def test_only_holders_that_may_still_run_block_breaking() -> None:
    here, running = "vm@1", {10, 11}
    dead_here, live_here = Holder(here, 20), Holder(here, 10)
    dead_elsewhere, live_elsewhere = Holder("nas@2", 21), Holder("nas@2", 11)

    def may_be_live(*holders: Holder) -> list[Holder]:
        return locks.may_be_live(holders, host_id=here, running=running.__contains__)

    assert may_be_live() == []
    assert may_be_live(dead_here) == []
    assert may_be_live(dead_here, live_here) == [live_here]
    # Another host's pids cannot be looked up here: whatever they are, they count as live.
    assert may_be_live(dead_here, dead_elsewhere) == [dead_elsewhere]
    assert may_be_live(live_elsewhere) == [live_elsewhere]


def test_borgs_host_id_is_borg_host_id_when_set() -> None:
    assert locks.borg_host_id({"BORG_HOST_ID": "pinned@7"}) == "pinned@7"
    assert locks.borg_host_id({}).endswith(f"@{uuid.getnode()}")
