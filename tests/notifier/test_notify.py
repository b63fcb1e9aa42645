"""Job events reach the targets that want them, through real apprise to local receivers, once each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
from nats.js import JetStreamContext

from shared import bus
from shared import events as ev
from tests.notifier.conftest import FAST, PAGE_URL, Receiver, StartNotifier, add_target, ledger
from tests.scheduler.helpers import Running
from tests.support.events import run_history, spec
from tests.support.waiting import eventually

OFFSITE = ev.RepositoryRef(id="r1", name="offsite", location="/srv/offsite", agent="a1")
PLAN = ev.PlanRef(id="p1", name="web", repository_id="r1")
PASSPHRASE = ev.JobError(kind="passphrase", message="wrong passphrase", exit_code=52, hint="Fix the passphrase.")


def failed(job_id: str, error: ev.JobError = PASSPHRASE) -> ev.JobFailed:
    return ev.JobFailed(job_id=job_id, data=ev.OutcomeData(error=error))


async def delivered(pool: asyncpg.Pool, target_id: str, n: int) -> bool:
    return sum(1 for d in await ledger(pool, target_id) if d["ok"]) >= n


async def test_a_failed_job_is_notified_once_with_what_a_person_needs(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    receiver = receivers()
    target = await add_target(pool, receiver.url, ["*.failed"])
    await start_notifier()
    await run_history(js, spec("backup"))  # completed: not wanted by a "*.failed" target
    bad = spec("backup", repository=OFFSITE, repository_id="r1", plan=PLAN, plan_id="p1")
    await run_history(js, bad, failed(bad.id))

    await eventually(lambda: delivered(pool, target, 1), what="a delivery")
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert "backup failed" in body["title"] and "web" in body["title"]
    for words in (
        "Status: failed",
        "Agent: a1",
        "Repository: offsite",
        "Plan: web",
        "Duration: ",
        "Error (passphrase): wrong passphrase",
        "What to do: Fix the passphrase.",
        "Exit code: 52",
        f"{PAGE_URL}/queue/{bad.id}",
    ):
        assert words in body["message"]
    assert (await ledger(pool, target))[0]["event_type"] == "backup.failed"


async def test_patterns_choose_the_events(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    backups, checks, everything, defaults = (receivers() for _ in range(4))
    for r, events in ((backups, ["backup.*"]), (checks, ["check.failed"]), (everything, ["*"]), (defaults, [])):
        await add_target(pool, r.url, events, name=f"t{r.port}")
    await start_notifier()
    ok = spec("backup", repository=OFFSITE, repository_id="r1")
    stats = {"nfiles": 1200, "original_size": 5_000_000, "compressed_size": 2_000_000, "deduplicated_size": 300_000}
    result = ev.JobResult(exit_code=0, archive="web-2026-11-23", stats=stats)
    await run_history(js, ok, ev.JobCompleted(job_id=ok.id, data=ev.OutcomeData(result=result)))
    check = spec("check", repository=OFFSITE, repository_id="r1")
    await run_history(js, check, failed(check.id, ev.JobError(kind="integrity", message="3 orphaned chunks")))

    async def settled() -> bool:
        return len(everything.bodies) == 4 and len(backups.bodies) == 2 and len(checks.bodies) == 1

    await eventually(settled, what="every wanted event delivered")
    assert sorted(backups.titles()) == sorted(
        ["borgflow: backup started — offsite", "borgflow: backup completed — offsite"]
    )
    completed = next(b["message"] for b in backups.bodies if "completed" in b["title"])
    assert "Archive: web-2026-11-23" in completed and "Files: 1200, original 5.0 MB" in completed
    assert "deduplicated 300.0 kB" in completed
    assert checks.titles() == ["borgflow: check failed — offsite"]
    # A target that names no events gets failures and warnings.
    await eventually(lambda: _count(defaults, 1), what="the default target")
    assert defaults.titles() == ["borgflow: check failed — offsite"]


async def _count(r: Receiver, n: int) -> bool:
    return len(r.bodies) >= n


async def test_every_failure_is_its_own_notification(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    receiver = receivers()
    target = await add_target(pool, receiver.url, ["backup.failed"])
    await start_notifier()
    # The same plan failing the same way two nights running: two events, two messages.
    nights = [spec("backup", plan=PLAN, plan_id="p1", repository=OFFSITE, repository_id="r1") for _ in range(2)]
    for night in nights:
        await run_history(js, night, failed(night.id))
    await eventually(lambda: delivered(pool, target, 2), what="both failures")
    assert len(receiver.bodies) == 2
    assert {d["job_id"] for d in await ledger(pool, target)} == {n.id for n in nights}


async def test_a_refused_delivery_is_retried_until_it_lands_once(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    flaky, steady = receivers(), receivers()
    flaky.refuse = 2
    await add_target(pool, steady.url, ["*.failed"], name="steady")
    target = await add_target(pool, flaky.url, ["*.failed"], name="flaky")
    await start_notifier()
    job = spec("backup")
    await run_history(js, job, failed(job.id))

    await eventually(lambda: delivered(pool, target, 1), what="the third attempt")
    assert flaky.attempts == 3 and len(flaky.bodies) == 1
    # The retries were of the target that refused; the other one heard it once.
    assert len(steady.bodies) == 1


async def test_a_target_that_keeps_refusing_is_given_up_with_the_error_recorded(
    start_notifier: StartNotifier, receivers: Callable[[], Receiver], js: JetStreamContext, pool: asyncpg.Pool
) -> None:
    down = receivers()
    down.refuse = -1  # refuses everything
    target = await add_target(pool, down.url, ["*.failed"])
    await start_notifier()
    job = spec("backup")
    await run_history(js, job, failed(job.id))

    async def given_up() -> list[dict[str, object]] | None:
        rows = await ledger(pool, target)
        return rows if rows and "gave up" in str(rows[0]["error"]) else None

    rows = await eventually(given_up, what="the notification given up")
    assert rows is not None and len(rows) == 1 and not rows[0]["ok"]
    assert str(rows[0]["error"]).startswith(f"gave up after {len(FAST.backoff_s) + 1} attempts: ")
    assert down.attempts == len(FAST.backoff_s) + 1


async def test_no_duplicate_when_the_notifier_dies_between_delivering_and_acking(
    start_notifier: StartNotifier,
    running: Running,
    receivers: Callable[[], Receiver],
    js: JetStreamContext,
    pool: asyncpg.Pool,
) -> None:
    receiver = receivers()
    target = await add_target(pool, receiver.url, ["*.failed"])
    job = spec("backup")
    failure = failed(job.id)
    delivered_once = asyncio.Event()

    async def die_before_ack(event_id: str) -> None:
        if event_id == failure.id:
            delivered_once.set()
            await asyncio.Event().wait()  # the test kills the notifier while it waits here

    first = await start_notifier(after_handled=die_before_ack)
    await run_history(js, job, failure)
    await asyncio.wait_for(delivered_once.wait(), 15)
    assert len(receiver.bodies) == 1
    await running.kill(*first)

    # A new notifier gets the unacked event again (after ack_wait) and finds it delivered.
    redelivered: list[str] = []

    async def note(event_id: str) -> None:
        redelivered.append(event_id)

    await start_notifier(after_handled=note)
    await eventually(lambda: _has(redelivered, failure.id), what="the redelivery handled")

    async def acked() -> bool:
        info = await js.consumer_info("BORGFLOW_JOBS", "notifier")
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await eventually(acked, what="the event acked")
    assert len(receiver.bodies) == 1
    assert [d["ok"] for d in await ledger(pool, target)] == [True]
    assert await bus.last_job_seq(js, job.id) > 0


async def _has(items: list[str], item: str) -> bool:
    return item in items
