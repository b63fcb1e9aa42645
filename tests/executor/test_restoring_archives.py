"""restore and restore_check with real borg: what lands on disk, and what the job reports."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.executor.conftest import Executor, Template, job_log, job_progress


def tree(root: Path) -> dict[str, bytes | str | None]:
    """Every entry under `root`: a file's bytes, a symlink's target, None for a directory."""
    out: dict[str, bytes | str | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_dir():
            out[rel] = None
        else:
            out[rel] = path.read_bytes()
    return out


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_a_restore_is_byte_identical_to_the_source_in_a_new_destination(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    destination = tmp_path / "restores" / "today"  # neither exists yet
    job = await executor.run_job(executor.spec("restore", repo, archive="t-3", destination=str(destination)))
    assert job.status == "completed", job.error
    restored = tree(destination / "src")
    assert restored == tree(template.src)  # every file's bytes, every link, every directory
    assert stat.S_IMODE(destination.stat().st_mode) == 0o700
    assert job.result is not None
    files = sum(1 for content in restored.values() if isinstance(content, bytes))
    assert job.result.details == {
        "destination": str(destination),
        "files": len(restored) + 1,  # borg also lists `src` itself
        "bytes": sum(len(content) for content in restored.values() if isinstance(content, bytes)),
    }
    assert files > 30
    assert job.progress is not None and job.progress.action == "finished" and job.progress.percent == 100.0
    assert job.progress.nfiles == len(restored) + 1 and job.progress.current == job.result.details["bytes"]
    assert job_progress(executor, job.id)[-1] == job.progress
    log = job_log(executor, job.id)
    assert any(line.message == f"created the destination {destination} (mode 0700)" for line in log)
    assert any(line.message == "src/dir1/file3.txt" and line.source == "borg" for line in log)


async def test_a_restore_of_selected_paths_writes_only_those(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    destination = tmp_path / "restore"
    destination.mkdir(mode=0o755)
    job = await executor.run_job(
        executor.spec(
            "restore",
            repo,
            archive="t-3",
            destination=str(destination),
            paths=["src/dir1", "src/empty.txt"],
            strip_components=1,
        )
    )
    assert job.status == "completed", job.error
    assert tree(destination) == {"empty.txt": b"", "dir1": None} | {
        f"dir1/{name}": content for name, content in tree(template.src / "dir1").items()
    }
    assert stat.S_IMODE(destination.stat().st_mode) == 0o755  # an existing destination is left as it was


async def test_a_restore_check_lists_the_files_and_writes_nothing(
    executor: Executor, template: Template, tmp_path: Path
) -> None:
    repo = executor.copy_of(template)
    before = sorted([*entries(tmp_path), "agent"])  # the executor's own data dir comes
    job = await executor.run_job(executor.spec("restore_check", repo, archive="t-3"))
    assert job.status == "completed", job.error
    source = tree(template.src)
    assert job.result is not None
    details = job.result.details
    assert details["files"] == len(source) + 1
    assert set(details["paths"]) == {"src", *(f"src/{rel}" for rel in source)}
    assert details["bytes"] == sum(len(c) for c in source.values() if isinstance(c, bytes))
    # nothing written: not next to the repository, not where the executor runs
    assert entries(tmp_path) == before
    assert not (Path.cwd() / "src" / "only-in-t1.bin").exists() and not (Path.cwd() / "src" / "dir0").exists()
