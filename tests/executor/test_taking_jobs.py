"""Which sent jobs an executor takes, how it claims them (once), its heartbeat, and what it
does with messages it cannot use."""

from __future__ import annotations

import msgspec

from shared import bus
from shared import events as ev
from shared.streams import job_subject
from tests.executor.conftest import AGENT, Executor, job_types, wait_for_event


async def test_a_job_sent_to_another_agent_is_left_alone(executor: Executor) -> None:
    theirs = executor.spec("ping", agent="b2")
    await executor.send(theirs)
    # Messages are handled in stream order: once a later ping of ours has ended, theirs was seen.
    assert (await executor.run_job(executor.spec("ping"))).status == "completed"
    assert await job_types(executor.js, theirs.id) == ["job.queued", "job.sent"]


async def test_a_duplicate_sent_does_not_run_the_job_twice(harness: Executor) -> None:
    spec = harness.spec("ping")
    sent_seq = await harness.send(spec)
    # A second, distinct sent for the same job, appended before the executor starts.
    await bus.publish(harness.js, ev.JobSent(job_id=spec.id, data=ev.SentData(agent=AGENT)), expect_last_seq=sent_seq)
    harness.start()
    done = await harness.outcome(spec.id)
    assert done.status == "completed"
    # And a third one after the job ended.
    await bus.publish(harness.js, ev.JobSent(job_id=spec.id, data=ev.SentData(agent=AGENT)))
    assert (await harness.run_job(harness.spec("ping"))).status == "completed"
    types = await job_types(harness.js, spec.id)
    assert types == ["job.queued", "job.sent", "job.sent", "job.started", "job.completed", "job.sent"]


async def test_a_redelivered_sent_of_a_running_job_is_not_claimed_again(executor: Executor) -> None:
    # The same message id twice: JetStream stores it once, so the executor sees one sent.
    spec = executor.spec("ping")
    queued = await bus.publish(executor.js, ev.JobQueued(job_id=spec.id, data=spec))
    sent = ev.JobSent(job_id=spec.id, data=ev.SentData(agent=AGENT))
    first = await bus.publish(executor.js, sent, expect_last_seq=queued.seq)
    again = await bus.publish(executor.js, sent)
    assert again.duplicate and again.seq == first.seq
    assert (await executor.outcome(spec.id)).status == "completed"
    assert (await job_types(executor.js, spec.id)).count("job.started") == 1


async def test_jobs_sent_while_the_executor_was_down_run_when_it_is_back(harness: Executor) -> None:
    harness.start()
    assert (await harness.run_job(harness.spec("ping"))).status == "completed"
    await harness.halt()
    later = harness.spec("ping")
    await harness.send(later)
    harness.start()
    assert (await harness.outcome(later.id)).status == "completed"


async def test_malformed_and_unknown_messages_are_skipped(executor: Executor) -> None:
    await executor.js.publish("borgflow.jobs.x.sent", b"{not json")
    await executor.js.publish(
        "borgflow.jobs.y.sent",
        b'{"type":"job.exploded","id":"1","job_id":"y","at":"2026-11-23T00:00:00Z","data":{}}',
    )
    await executor.js.publish("borgflow.jobs.z.cancel_requested", msgspec.json.encode({"type": "job.cancel_requested"}))
    assert (await executor.run_job(executor.spec("ping"))).status == "completed"


async def test_heartbeat_says_who_and_what_runs(executor: Executor) -> None:
    msg = await wait_for_event(
        executor.js, f"borgflow.agents.{AGENT}.heartbeat", lambda t: t == "agent.heartbeat", timeout=10
    )
    beat = ev.decode(msg.data)
    assert isinstance(beat, ev.AgentHeartbeat)
    assert beat.data.agent == AGENT and beat.data.slots == 1 and beat.data.interval_s == 0.5
    assert beat.data.borg_version is not None and beat.data.borg_version.startswith("1.4")
    assert beat.data.host and beat.data.pid and beat.data.running == []


async def test_the_started_event_carries_the_claim(executor: Executor) -> None:
    spec = executor.spec("ping")
    sent_seq = await executor.send(spec)
    await executor.outcome(spec.id)
    events = await bus.job_events(executor.js, spec.id)
    started = [(e, seq) for e, seq in events if isinstance(e, ev.JobStarted)]
    assert len(started) == 1
    event, seq = started[0]
    assert isinstance(event, ev.JobStarted)
    assert seq == sent_seq + 1  # appended right on top of the sent it claimed
    assert event.data.agent == AGENT and event.data.host and event.data.pid and event.data.pid_started_at
    assert event.data.borg_version is not None
    assert job_subject(spec.id) == f"borgflow.jobs.{spec.id}.*"
