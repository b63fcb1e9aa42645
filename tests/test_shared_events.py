"""The envelope, the fold and the stream helpers against a real nats-server."""

from __future__ import annotations

import msgspec
import pytest
from nats.js import JetStreamContext

from shared import bus, ids
from shared import events as ev
from shared.exceptions import ConcurrencyConflict, InvalidTransition
from shared.jobs import evolve, fold


def spec(job_id: str) -> ev.JobSpec:
    return ev.JobSpec(id=job_id, type="ping", agent="a1", created_at=ev.utcnow())


def test_envelope_round_trips_with_contract_keys() -> None:
    e = ev.JobFailed(job_id="j1", data=ev.OutcomeData(error=ev.JobError(kind="passphrase", message="m")))
    raw = msgspec.json.decode(ev.encode(e))
    assert set(raw) == {"id", "type", "version", "job_id", "at", "data"}
    assert raw["type"] == "job.failed" and raw["at"].endswith("Z")
    assert ev.decode(ev.encode(e)) == e
    assert ev.subject_of(e) == "borgflow.jobs.j1.failed"


def test_unknown_type_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        ev.decode(b'{"type":"job.exploded","id":"x","job_id":"j","at":"2026-11-23T00:00:00Z","data":{}}')


def test_ids_sort_in_creation_order() -> None:
    made = [ids.new_id() for _ in range(2000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(ids.is_id(i) for i in made)


def test_fold_refuses_transitions_from_the_wrong_state() -> None:
    queued = evolve(None, ev.JobQueued(job_id="j", data=spec("j")), 1)
    with pytest.raises(InvalidTransition):
        evolve(queued, ev.JobCompleted(job_id="j"), 2)
    done = fold(
        [
            (ev.JobQueued(job_id="j", data=spec("j")), 1),
            (ev.JobSent(job_id="j", data=ev.SentData(agent="a1")), 2),
            (ev.JobSent(job_id="j", data=ev.SentData(agent="a2")), 3),  # a second send: skipped
            (ev.JobStarted(job_id="j", data=ev.StartedData(agent="a1")), 4),
            (ev.JobCompleted(job_id="j"), 5),
        ]
    )
    assert done is not None and done.status == "completed" and done.agent == "a1" and done.last_seq == 5


async def test_compare_and_set_refuses_a_stale_writer(js: JetStreamContext) -> None:
    job_id = ids.new_id()
    ack = await bus.publish(js, ev.JobQueued(job_id=job_id, data=spec(job_id)))
    await bus.publish(js, ev.JobSent(job_id=job_id, data=ev.SentData(agent="a1")), expect_last_seq=ack.seq)
    with pytest.raises(ConcurrencyConflict):
        await bus.publish(js, ev.JobSent(job_id=job_id, data=ev.SentData(agent="a2")), expect_last_seq=ack.seq)
    view = await bus.load_job(js, job_id)
    assert view is not None and view.status == "sent" and view.agent == "a1"


async def test_same_event_id_lands_once(js: JetStreamContext) -> None:
    job_id = ids.new_id()
    e = ev.JobQueued(job_id=job_id, data=spec(job_id))
    first = await bus.publish(js, e)
    again = await bus.publish(js, e)
    assert again.duplicate and again.seq == first.seq
