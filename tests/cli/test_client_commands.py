"""The client commands as a person runs them: the real `borgflow` against `borgflow up`.

One system for the module; each test makes what it needs (plans by name, jobs).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.testing import free_port
from tests.support.upsystem import UpSystem, borgflow_exe, make_source

pytestmark = pytest.mark.slow


class Cli:
    """Runs `borgflow …` with the system's address and token in its environment."""

    def __init__(self, system: UpSystem, home: Path) -> None:
        self.system = system
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("BORGFLOW_", "XDG_DATA"))}
        self.env |= {"BORGFLOW_API_URL": system.base, "BORGFLOW_TOKEN": system.token, "HOME": str(home)}

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [borgflow_exe(), *args], env=self.env | env, capture_output=True, text=True, timeout=120, check=False
        )

    def json(self, *args: str) -> Any:
        out = self(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpSystem]:
    work = tmp_path_factory.mktemp("cli")
    up = UpSystem(work / "data", work).start()
    repo = up.ok("POST", "/api/repositories", {"name": "main", "location": str(work / "repo"), "agent": "local"})
    init = up.ok("POST", "/api/jobs", {"type": "init", "repository_id": repo["id"], "options": {"encryption": "none"}})
    assert up.wait_job(init["id"])["status"] == "completed"
    docs = make_source(work / "src")
    up.ok("POST", "/api/plans", {"name": "docs", "repository_id": repo["id"], "paths": [str(docs)]})
    slow_src = work / "slow"
    slow_src.mkdir()
    for i in range(3):
        (slow_src / f"f{i}").write_bytes(os.urandom(2 * 1024 * 1024))
    up.ok("POST", "/api/plans", {"name": "slow", "repository_id": repo["id"], "paths": [str(slow_src)],
                                 "compression": "lzma,6", "queue_behavior": "queue"})  # fmt: skip
    up.ok("POST", "/api/plans", {"name": "missing", "repository_id": repo["id"], "paths": ["/no/such/dir"]})
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture
def cli(system: UpSystem, tmp_path: Path) -> Cli:
    return Cli(system, tmp_path)


def test_backup_wait_then_list_show_and_log(cli: Cli) -> None:
    out = cli("backup", "docs", "--wait")
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout and "docs" in out.stderr
    job = cli.json("jobs", "list", "--type", "backup", "--status", "completed", "--since", "1h")["items"][0]
    assert job["trigger"] == "cli" and job["plan_name"] == "docs"

    table = cli("jobs", "list", "--since", "1h")
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["ID", "TYPE", "STATUS", "AGENT", "WHAT", "CREATED", "DURATION"]
    assert any(line.startswith(job["id"]) and "completed" in line for line in table.stdout.splitlines())

    show = cli("jobs", "show", job["id"])
    assert show.returncode == 0
    facts = dict(line.split(None, 1) for line in show.stdout.splitlines() if line.strip())
    assert facts["status"].strip() == "completed" and "docs" in facts["plan"]
    assert cli.json("jobs", "show", job["id"])["id"] == job["id"]

    log = cli("jobs", "log", job["id"])
    assert log.returncode == 0 and "borg exited with 0" in log.stdout
    assert log.stdout == cli.system.http.get(f"/api/jobs/{job['id']}/log").text
    followed = cli("jobs", "log", job["id"], "--follow")  # a finished job: its whole log, then the end
    assert followed.returncode == 0 and followed.stdout == log.stdout


def test_backup_exit_codes_follow_the_outcome(cli: Cli) -> None:
    failed = cli("backup", "missing", "--wait")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "failed" in failed.stdout and "source_not_found" in failed.stdout and "hint:" in failed.stdout
    plan_id = next(p["id"] for p in cli.system.ok("GET", "/api/plans")["items"] if p["name"] == "docs")
    queued = cli("backup", plan_id)  # by id, without waiting
    assert queued.returncode == 0 and "queued" in queued.stdout
    assert cli.system.wait_job(queued.stdout.split()[1])["status"] == "completed"


def test_live_progress_bar_on_a_terminal(cli: Cli) -> None:
    """On a terminal `--wait` redraws one progress line in place (stderr)."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the follower side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    proc = subprocess.run(
        [borgflow_exe(), "backup", "slow", "--wait"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        timeout=120,
        check=False,
    )
    os.close(follower)
    reader.join(10)
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    redraws = screen.split("\r\x1b[2K")
    assert len(redraws) >= 3, screen  # drawn again as the job went on
    assert any("[" in r and "files" in r for r in redraws), screen
    assert "completed" in proc.stdout


def test_cancel_retry_queue_and_follow(cli: Cli) -> None:
    # A ping for an agent that never comes stays queued.
    waiting = cli.system.ok("POST", "/api/jobs", {"type": "ping", "agent": "nobody"})
    q = cli("queue")
    assert q.returncode == 0 and q.stdout.splitlines()[0].split()[:2] == ["IN", "QUEUE"]
    assert cli.json("queue")["in_queue"] >= 1

    out = cli("jobs", "cancel", waiting["id"])
    assert out.returncode == 0 and out.stdout.strip() == f"job {waiting['id']} cancelled"
    again = cli("jobs", "cancel", waiting["id"])
    assert again.returncode == 5 and "already cancelled" in again.stderr
    retried = cli.json("jobs", "retry", waiting["id"])
    assert retried["retry_of"] == waiting["id"] and retried["status"] == "queued"
    listed = cli.json("jobs", "list", "--agent", "nobody", "--status", "queued")["items"]
    assert [j["id"] for j in listed] == [retried["id"]]
    assert cli("jobs", "cancel", retried["id"]).returncode == 0

    # `jobs log --follow` of a running job streams until the job ends.
    slow = next(p["id"] for p in cli.system.ok("GET", "/api/plans")["items"] if p["name"] == "slow")
    job = cli.system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": slow})
    followed = cli("jobs", "log", job["id"], "--follow")
    assert followed.returncode == 0, followed.stderr
    assert "borg exited with 0" in followed.stdout.splitlines()[-1]
    assert cli.system.ok("GET", f"/api/jobs/{job['id']}")["status"] == "completed"


def test_clear_errors_and_exit_codes(cli: Cli, tmp_path: Path) -> None:
    port = free_port()
    out = cli("queue", BORGFLOW_API_URL=f"http://127.0.0.1:{port}")
    assert out.returncode == 3
    assert out.stderr.startswith(f"borgflow: cannot reach the borgflow api at http://127.0.0.1:{port}: ")
    assert out.stderr.rstrip().endswith("is `borgflow up` running?") and len(out.stderr.splitlines()) == 1
    out = cli("jobs", "log", "x", "--follow", BORGFLOW_API_URL=f"http://127.0.0.1:{port}")
    assert out.returncode == 3 and "cannot reach" in out.stderr

    out = cli("jobs", "list", BORGFLOW_TOKEN="bf_wrong")
    assert out.returncode == 4 and "refused the token" in out.stderr and "BORGFLOW_TOKEN" in out.stderr
    viewer = cli.system.ok("POST", "/api/tokens", {"name": "wall", "role": "viewer"})["token"]
    waiting = cli.system.ok("POST", "/api/jobs", {"type": "ping", "agent": "nobody"})
    out = cli("jobs", "cancel", waiting["id"], BORGFLOW_TOKEN=viewer)
    assert out.returncode == 4 and "not allowed" in out.stderr and "viewer" in out.stderr
    assert cli("jobs", "cancel", waiting["id"]).returncode == 0

    for args in (("jobs", "show", "nope"), ("jobs", "log", "nope"), ("jobs", "log", "nope", "--follow")):
        out = cli(*args)
        assert out.returncode == 5 and "no job nope" in out.stderr, (args, out.stderr)
    out = cli("backup", "no-such-plan", "--wait")
    assert out.returncode == 5 and "no plan named 'no-such-plan'" in out.stderr

    # Without $BORGFLOW_TOKEN: the admin-token file of the default data dir, else a clear error.
    no_token = {k: v for k, v in cli.env.items() if k != "BORGFLOW_TOKEN"}
    home = tmp_path / "home"
    out = subprocess.run([borgflow_exe(), "queue"], env=no_token | {"HOME": str(home)}, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 4 and "no token" in out.stderr
    token_file = home / ".local" / "share" / "borgflow" / "admin-token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(cli.system.token + "\n")
    out = subprocess.run([borgflow_exe(), "queue", "--json"], env=no_token | {"HOME": str(home)},
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "in_progress" in json.loads(out.stdout)
