"""What a person adding a machine does: `borgflow up` here, and on the new machine
`set -a; . borgflow.env; borgflow executor --agent NAME`. The new executor enrols for its
own agent token, runs jobs on an encrypted repository, and keeps its token across restarts.
Every process shows /healthz and /metrics; logs can be JSON lines."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from shared.testing import free_port, wait_until
from tests.support.upsystem import UpSystem, borgflow_exe, data_dir, make_source

pytestmark = pytest.mark.slow

PASSPHRASE = "fleet-secret-passphrase-42"


def test_a_second_agent_joins_with_borgflow_env(tmp_path: Path) -> None:
    data = data_dir("bf-fleet-")
    metrics_port = free_port()
    system = UpSystem(data, tmp_path).start(BORGFLOW_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
    executor: subprocess.Popen[bytes] | None = None
    machine = tmp_path / "web-1"  # the other machine's data dir
    ex_log = tmp_path / "executor.log"
    try:
        up_log = system.log.read_text()
        before_up = up_log.split("borgflow is up")[0]
        # borgflow's own first-run lines (migrations, where the secret key is) are not chatter.
        ours = ("applied migrations", "shared.secretkeys:")
        chatter = [line for line in before_up.splitlines() if line.strip() and not any(o in line for o in ours)]
        assert not chatter, "library chatter before 'borgflow is up':\n" + "\n".join(chatter)

        env = dict(os.environ)
        env.update(dict(line.split("=", 1) for line in (data / "borgflow.env").read_text().splitlines()))
        executor_metrics = free_port()
        env.update(
            BORGFLOW_DATA_DIR=str(machine),
            BORGFLOW_LOG_FORMAT="json",
            BORGFLOW_HEARTBEAT_S="1",
            BORGFLOW_METRICS_LISTEN=f"127.0.0.1:{executor_metrics}",
        )

        def start_executor() -> subprocess.Popen[bytes]:
            with ex_log.open("ab") as out:
                return subprocess.Popen(
                    [borgflow_exe(), "executor", "--agent", "web-1"], env=env, stdout=out, stderr=subprocess.STDOUT
                )

        executor = start_executor()
        wait_until(lambda: _online(system, "web-1"), 60, "agent web-1 online")

        repo_path = tmp_path / "repo-web-1"
        body = {"name": "web", "location": str(repo_path), "agent": "web-1", "passphrase": PASSPHRASE}
        repo = system.ok("POST", "/api/repositories", body)
        init = system.ok("POST", "/api/jobs", {"type": "init", "repository_id": repo["id"]})
        assert system.wait_job(init["id"])["status"] == "completed", ex_log.read_text()[-3000:]
        plan = system.ok("POST", "/api/plans", {"name": "web", "repository_id": repo["id"],
                                                 "paths": [str(make_source(tmp_path / "src"))]})  # fmt: skip
        backup = system.ok("POST", "/api/jobs", {"type": "backup", "plan_id": plan["id"]})
        done = system.wait_job(backup["id"])
        assert done["status"] == "completed" and done["agent"] == "web-1", done.get("error")

        token_file = machine / "executor-web-1" / "agent-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        agent_tokens = [t for t in system.ok("GET", "/api/tokens")["items"] if t["agent"] == "web-1"]
        assert len(agent_tokens) == 1 and agent_tokens[0]["role"] == "agent"

        # Restarted, it uses the token it keeps: no second enrolment (which would be refused).
        executor.send_signal(signal.SIGTERM)
        assert executor.wait(15) == 0
        executor = start_executor()
        wait_until(lambda: _online(system, "web-1", after=done["finished_at"]), 60, "web-1 back")
        again = system.ok("POST", "/api/jobs", {"type": "check", "repository_id": repo["id"]})
        assert system.wait_job(again["id"])["status"] == "completed", ex_log.read_text()[-3000:]
        assert len([t for t in system.ok("GET", "/api/tokens")["items"] if t["agent"] == "web-1"]) == 1

        # JSON log lines, one object each, with the job they are about.
        lines = [json.loads(line) for line in ex_log.read_text().splitlines() if line.strip()]
        assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
        assert any(line.get("job_id") == backup["id"] for line in lines)
        assert PASSPHRASE not in ex_log.read_text() and PASSPHRASE not in system.log.read_text()

        # Health and metrics: on the metrics ports of `borgflow up` and of the executor, and on
        # the api's own port. Each process reports what it sees itself.
        for port in (metrics_port, executor_metrics):
            probe = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert probe.status_code == 200 and probe.json()["status"] == "ok", probe.text
        # The read model may trail the last job's end by a moment.
        page = wait_until(
            lambda: _page_with(
                f"http://127.0.0.1:{metrics_port}/metrics", 'borgflow_jobs{service="api",status="completed"} 3.0'
            ),
            15,
            "three completed jobs in borgflow_jobs",
        )
        for name in ("borgflow_jobs{", "borgflow_queue_waiting", "borgflow_events_total{", "borgflow_consumer_lag{"):
            assert name in page, f"{name} missing from the metrics of borgflow up"
        ran = httpx.get(f"http://127.0.0.1:{executor_metrics}/metrics", timeout=5).text
        # (It was restarted after the backup: it has run one check since.)
        assert 'borgflow_job_duration_seconds_count{status="completed",type="check"} 1.0' in ran, ran
        assert 'borgflow_enqueue_to_start_seconds_count{type="check"} 1.0' in ran
        assert 'borgflow_processes_total{command="borg check",exit_code="0"} 1.0' in ran
        assert "borgflow_dispatcher_active" not in ran  # only dispatchers show their gauges
        api_page = httpx.get(system.base + "/metrics", timeout=5)
        assert api_page.status_code == 200 and "borgflow_events_total" in api_page.text
        assert PASSPHRASE not in page
    finally:
        if executor is not None and executor.poll() is None:
            executor.send_signal(signal.SIGTERM)
            executor.wait(15)
        system.stop()


def _page_with(url: str, line: str) -> str | None:
    page = httpx.get(url, timeout=5).text
    return page if line in page else None


def _online(system: UpSystem, agent: str, after: str | None = None) -> bool:
    for a in system.ok("GET", "/api/agents")["items"]:
        if a["name"] == agent and a["online"]:
            return after is None or a["last_seen"] > after
    return False
