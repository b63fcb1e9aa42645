"""An s3_sync reads its repository: beside other readers, never beside a writer; a plan's
`sync_after` chains one after each successful backup, behind its prune and compact."""

from __future__ import annotations

import msgspec

from services.dispatcher.chains import children_of
from services.dispatcher.domain import Job, decide
from shared import events as ev
from shared.config import SystemSettings
from shared.jobs import fold
from tests.support.events import spec

LIMITS = SystemSettings()


def job(i: int, type_: str, agent: str = "a1") -> Job:
    return Job(id=f"j{i}", type=type_, agent=agent, repository_id="r1", order=i)


def test_a_sync_overlaps_readers_but_never_a_writer() -> None:
    sync = job(1, "s3_sync", "a1")
    assert decide([sync], [job(0, "restore", "a2")], LIMITS).start == ["j1"]
    for writer in ("backup", "prune", "compact", "check", "delete_archive"):
        waiting = decide([sync], [job(0, writer, "a2")], LIMITS)
        assert waiting.start == [] and waiting.waiting["j1"].reason == "repository_busy", writer
        # And a writer waits for the sync.
        assert decide([job(2, writer, "a2")], [sync], LIMITS).start == [], writer


def test_a_plan_chains_its_sync_after_its_prune_and_compact() -> None:
    plan = ev.PlanRef(
        id="p1",
        name="nightly",
        repository_id="r1",
        paths=["/srv"],
        prune_after=True,
        compact_after=True,
        retention=ev.Retention(keep_daily=7),
        sync_after=ev.SyncAfter(remote="s3:bucket/nightly", bwlimit="10M"),
    )
    repo = ev.RepositoryRef(id="r1", name="main", location="/srv/repo", agent="a1")
    s = spec("backup", plan=plan, plan_id="p1", repository=repo, repository_id="r1")
    done = fold(
        [
            (ev.JobQueued(job_id=s.id, data=s), 1),
            (ev.JobSent(job_id=s.id, data=ev.SentData(agent="a1")), 2),
            (ev.JobStarted(job_id=s.id, data=ev.StartedData(agent="a1")), 3),
            (ev.JobCompleted(job_id=s.id), 4),
        ]
    )
    assert done is not None
    children = children_of(s, done)
    assert [c.type for c in children] == ["prune", "compact", "s3_sync"]
    sync = children[-1]
    assert sync.options == {"remote": "s3:bucket/nightly", "bwlimit": "10M"}
    assert (sync.repository_id, sync.parent_id, sync.trigger) == ("r1", s.id, "chain")
    # Without sync_after, nothing is mirrored.
    plain = msgspec.structs.replace(s, plan=msgspec.structs.replace(plan, sync_after=None))
    assert "s3_sync" not in [c.type for c in children_of(plain, done)]
