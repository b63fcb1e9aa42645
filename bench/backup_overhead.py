"""What a backup through borgflow costs over the same `borg create` run by hand.

    .venv/bin/python -m bench.backup_overhead [--files 2000] [--runs 5]

Starts `borgflow up` on a temp data dir, then alternates: a backup job through the
API (POST -> its terminal event seen on WS /api/events, so the measurement does not
load the api), and `borg create` run directly on the same data into a twin repository
(plain, as a person types it, and with the flags the executor adds). Prints per-run times, medians,
and the ratio. Both repositories are repokey-blake2 with lz4, both deduplicate
against their previous archives, so runs 2.. are incremental in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

from tests.support.upsystem import UpSystem, borg_exe

PASSPHRASE = "bench-passphrase"


def make_data(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(os.urandom(8192) + bytes(8192))


def touch_some(root: Path, n: int, run: int) -> None:
    """Change a few files so every run has a little new data, like a real nightly."""
    for i, path in enumerate(sorted(root.rglob("*.txt"))[:n]):
        path.write_bytes(os.urandom(4096) + f"{run}-{i}".encode())


def borg_env(base: Path) -> dict[str, str]:
    return dict(
        os.environ,
        BORG_PASSPHRASE=PASSPHRASE,
        BORG_BASE_DIR=str(base),
        TZ="UTC",
        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bf-bench-"))
    src = work / "src"
    make_data(src, args.files)
    env = borg_env(work / "direct-base")
    direct_repo = work / "direct-repo"
    subprocess.run(
        [borg_exe(), "init", "-e", "repokey-blake2", str(direct_repo)], env=env, check=True, capture_output=True
    )

    system = UpSystem(work / "data", work).start()
    try:
        repo = system.ok(
            "POST",
            "/api/repositories",
            {"name": "bench", "location": str(work / "sys-repo"), "agent": "local", "passphrase": PASSPHRASE},
        )
        init = system.ok("POST", "/api/jobs", {"type": "init", "repository_id": repo["id"]})
        assert system.wait_job(init["id"])["status"] == "completed"
        plan = system.ok("POST", "/api/plans", {"name": "bench", "repository_id": repo["id"], "paths": [str(src)]})
        through: list[float] = []
        direct: list[float] = []
        flagged: list[float] = []
        ws_url = f"ws://127.0.0.1:{system.port}/api/events?type=job.&token={system.token}"
        terminal = {"job.completed", "job.warning", "job.failed", "job.cancelled"}
        for run in range(args.runs):
            touch_some(src, 20, run)
            with connect(ws_url) as ws:
                t0 = time.perf_counter()
                job = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
                while True:
                    e = json.loads(ws.recv(timeout=120))
                    if e["job_id"] == job["id"] and e["type"] in terminal:
                        break
                through.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(
                [borg_exe(), "create", "--compression", "lz4", f"{direct_repo}::run{run}", str(src)],
                env=env,
                check=True,
                capture_output=True,
            )
            direct.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(
                [
                    borg_exe(),
                    "create",
                    "--log-json",
                    "--progress",
                    "--json",
                    "--compression=lz4",
                    f"{direct_repo}::flags{run}",
                    str(src),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            flagged.append(time.perf_counter() - t0)
            print(
                f"run {run + 1}: borgflow {through[-1]:.3f}s  borg create {direct[-1]:.3f}s"
                f"  borg create --log-json --progress --json {flagged[-1]:.3f}s",
                flush=True,
            )
    finally:
        system.stop()
    mt, md, mf = statistics.median(through), statistics.median(direct), statistics.median(flagged)
    print(f"\n{args.files} files, {args.runs} runs (first run is the full backup, the rest incremental)")
    print(
        f"median through borgflow: {mt:.3f}s   median borg create by hand: {md:.3f}s"
        f"   with the executor's flags: {mf:.3f}s"
    )
    print(f"ratio: {mt / md:.3f} ({(mt / md - 1) * 100:+.1f}%)")
    print(f"first (full) run: borgflow {through[0]:.3f}s vs {direct[0]:.3f}s -> {through[0] / direct[0]:.3f}")


if __name__ == "__main__":
    sys.exit(main())
