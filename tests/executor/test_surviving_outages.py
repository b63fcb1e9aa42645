"""Short outages of what a running job depends on: the api answering 503 while its
database restarts (the passphrase fetch waits it out) and NATS restarting (progress and
logs may wait or drop, the terminal event lands exactly once)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import msgspec
import pytest

from services.executor.exceptions import SecretUnavailable
from services.executor.secrets import HttpSecretSource, retry_after
from shared import ids
from shared.events import JobLog, decode
from shared.streams import LOGS
from shared.testing import NatsServer, free_port
from tests.executor.conftest import (
    PASSPHRASE,
    TOKEN,
    Executor,
    SecretServer,
    Template,
    eventually,
    job_types,
    stream_messages,
)

# --------------------------------------------------------------------------- the api restarting


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    now = datetime(2026, 11, 23, 16, 20, tzinfo=UTC)
    assert retry_after("3") == 3.0
    assert retry_after(" 0.5 ") == 0.5
    assert retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now) == 7.0
    assert retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None and retry_after("") is None


async def test_a_passphrase_fetch_waits_out_503s_as_retry_after_asks(secret_server: SecretServer) -> None:
    job_id = ids.new_id()
    secret_server.passphrases[job_id] = PASSPHRASE
    secret_server.unavailable, secret_server.retry_after = 2, "0.4"
    source = HttpSecretSource(secret_server.url, TOKEN, patience_s=10)
    began = time.monotonic()
    try:
        assert await source.passphrase(job_id) == PASSPHRASE
    finally:
        await source.aclose()
    assert time.monotonic() - began >= 0.8  # twice the 0.4 s the api asked for
    assert secret_server.requests == [(job_id, True)] * 3


async def test_a_passphrase_fetch_gives_up_when_the_outage_outlasts_its_patience(
    secret_server: SecretServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret_server.unavailable = 1000
    source = HttpSecretSource(secret_server.url, TOKEN, patience_s=0.6)
    with pytest.raises(SecretUnavailable, match=r"answered 503 \(tried \d+ times in 0.6s\)"):
        await source.passphrase("j1")
    await source.aclose()
    assert len(secret_server.requests) >= 3  # retried with backoff, not once
    nobody = HttpSecretSource(f"http://127.0.0.1:{free_port()}", TOKEN, patience_s=0.6)
    with pytest.raises(SecretUnavailable, match="ConnectError"):
        await nobody.passphrase("j1")
    await nobody.aclose()
    assert len([r for r in caplog.records if r.getMessage() == "passphrase fetch failed, retrying"]) >= 4


async def test_an_encrypted_job_started_while_the_api_restarts_runs_once_it_is_back(executor: Executor) -> None:
    repo = executor.repository()
    executor.secrets.unavailable = 2  # no Retry-After: the executor's own backoff
    job = await executor.run_job(executor.spec("init", repo))
    assert job.status == "completed", job.error
    assert executor.secrets.requests == [(job.id, True)] * 3


# --------------------------------------------------------------------------- NATS restarting


@pytest.mark.parametrize("log_hold_s", [30.0, 0.0], ids=["logs wait for NATS", "logs dropped"])
async def test_a_backups_outcome_lands_once_when_nats_restarts_as_it_ends(
    harness: Executor,
    nats_server: NatsServer,
    template: Template,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    log_hold_s: float,
) -> None:
    caplog.set_level(logging.WARNING)
    harness.options = msgspec.structs.replace(harness.options, log_hold_s=log_hold_s)
    harness.start()
    repo = harness.copy_of(template)
    go = tmp_path / "go"
    # A post-script holds the job until the test has NATS down: the job then ends without it.
    hold = f"sh -c 'while [ ! -e {go} ]; do sleep 0.02; done; echo said while NATS was down'"
    spec = harness.spec("backup", repo, harness.plan(repo, [str(template.src)], post_scripts=[hold]))
    await harness.send(spec)
    subject = f"borgflow.logs.{spec.id}"
    await eventually(
        lambda: any(b"running post-script 1/1" in m.data for m in harness.seen if m.subject == subject),
        what="the backup done and its post-script running",
    )

    nats_server.kill()
    go.touch()
    # The outcome is decided; its publish waits for NATS (after the job's log, if that may wait).
    waiting = (
        "NATS is away: the job's last log lines wait for it, then its outcome"
        if log_hold_s
        else "NATS is away: the outcome waits for it"
    )
    await eventually(lambda: any(r.getMessage() == waiting for r in caplog.records), what="the outcome waiting")
    nats_server.start()
    await eventually(lambda: harness.nc.is_connected, what="the test's own connection back")

    job = await harness.outcome(spec.id, timeout=30)
    assert job.status == "completed", job.error
    assert job.result is not None and job.result.archive
    assert await job_types(harness.js, spec.id) == ["job.queued", "job.sent", "job.started", "job.completed"]
    batches = [decode(raw) for raw in await stream_messages(harness.js, LOGS)]
    lines = [line.message for b in batches if isinstance(b, JobLog) and b.job_id == spec.id for line in b.data.lines]
    assert "running post-script 1/1: " + hold in lines
    # The lines said during the outage were held for NATS, or dropped: never the outcome.
    assert ("said while NATS was down" in lines) == bool(log_hold_s)
    # An outage is logged once per kind of publish, not once per try.
    troubles = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot publish")]
    assert len(troubles) == len(set(troubles)) <= 2
    # The executor still takes jobs.
    assert (await harness.run_job(harness.spec("ping"))).status == "completed"
