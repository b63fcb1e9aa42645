"""Three projectors on one database write exactly the read model one writes alone.

They start together on a backlog of a fleet's mix of events, and go on as more
is appended, each dawdling at random inside its batches' transactions. One stalls
holding its first batch of jobs until the others have applied what undoes it
(deletions, prunes); another holding its first batch of progress until the jobs
projection has deleted those jobs. While a stalled one holds a projection's lock
the others cannot move on, so it stalls for as long as it is patient. Then a single projector rebuilds
the read model from the streams, and every table must be the same.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from nats.js import JetStreamContext

from services.projector import store
from services.projector.app import Projector, rebuild, run
from shared import bus, db, ids, readmodel
from shared.config import Settings
from shared.runtime import cancel_and_wait, resilient
from shared.testing import NatsServer
from tests.projector.mix import REPOSITORIES, Appender, Malformed, Mix, Step, interleave
from tests.support.waiting import eventually

SEED = 11
JOBS, PROGRESS, AGENTS = PROJECTIONS = (store.JOBS, store.PROGRESS, store.AGENTS)
# A random pause in every batch's transaction, as a slow commit or a busy host gives.
DAWDLE_S = 0.02
# How long a stalling projector holds its first batches when the others cannot move on:
# the one holding progress outlasts the one holding jobs, so that jobs are deleted while
# it holds their progress, unless the deletion waits for it.
STALL_S = 2.0

Snapshot = dict[str, list[dict[str, Any]]]
P = TypeVar("P", bound=Projector)


class Dawdling(Projector):
    """A projector slow to commit: a random pause in each batch's transaction, holding its lock."""

    def __init__(self, pool: asyncpg.Pool, js: JetStreamContext, rng: random.Random) -> None:
        super().__init__(pool, js)
        self.rng = rng

    async def holding(self, name: str, last: int) -> None:
        await asyncio.sleep(self.rng.uniform(0, DAWDLE_S))


class Stalling(Dawdling):
    """Stalls in its first batch of some projections until another projection passes a target.

    As a projector paused mid-transaction would: `stalls` maps a projection it stalls
    in to the one it waits for; the test sets `targets` (sequences) when it knows them.
    Should the others be unable to move on while it holds the lock, it waits `patience_s`.
    """

    def __init__(
        self, pool: asyncpg.Pool, js: JetStreamContext, rng: random.Random, stalls: dict[str, str], patience_s: float
    ) -> None:
        super().__init__(pool, js, rng)
        self.stalls = stalls
        self.patience_s = patience_s
        self.entered = {name: asyncio.Event() for name in stalls}
        self.targets: dict[str, int] = {}

    async def holding(self, name: str, last: int) -> None:
        if name not in self.stalls or self.entered[name].is_set():
            return await super().holding(name, last)
        self.entered[name].set()
        deadline = time.monotonic() + self.patience_s
        while time.monotonic() < deadline and not await self._passed(self.stalls[name]):
            await asyncio.sleep(0.02)

    async def _passed(self, name: str) -> bool:
        if name not in self.targets:
            return False
        async with self.pool.acquire() as conn:  # not the batch's: what the others have committed
            return await readmodel.get_checkpoint(conn, name) >= self.targets[name]


class Fleet:
    """Projectors each with a pool and a NATS connection of its own, as in processes of their own."""

    def __init__(self, nats: str, database: str) -> None:
        self.nats, self.database = nats, database
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: list[Callable[[], Awaitable[None]]] = []

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(*self._tasks)
        for close in reversed(self._closing):
            await close()

    async def add(self, make: Callable[[asyncpg.Pool, JetStreamContext], P]) -> P:
        pool = await db.create_pool(self.database, min_size=1, max_size=8)
        self._closing.append(pool.close)
        nc = await bus.connect(self.nats, "projector")
        self._closing.append(nc.close)
        return make(pool, nc.jetstream())

    def start(self, p: Projector, *names: str) -> None:
        followers = {JOBS: p.jobs, PROGRESS: p.progress, AGENTS: p.agents}
        self._tasks += [asyncio.create_task(resilient(f"projector-{n}", followers[n])) for n in names]


async def snapshot(pool: asyncpg.Pool) -> Snapshot:
    """Every read-model table, in a fixed order; counters without their zero rows (a count that
    went up and down again leaves one, a rebuild none)."""
    out: Snapshot = {}
    async with pool.acquire() as conn:
        for table in store.READ_MODEL_TABLES:
            rows = [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {table}::text")]
            out[table] = [r for r in rows if r.get("n", 1) != 0]
    return out


async def appended(mix: Mix, out: Appender, histories: list[list[Step]]) -> None:
    await out.run(interleave(mix.rng, histories))


async def test_three_projectors_write_what_one_rebuilds(
    nats_server: NatsServer, js: JetStreamContext, database_url: str, pool: asyncpg.Pool
) -> None:
    rng = random.Random(SEED)
    mix = Mix(rng)
    out = Appender(js)
    # A backlog the projectors start on: each takes it as its first batch.
    await appended(
        mix,
        out,
        [
            *(mix.backup(r) for r in REPOSITORIES for _ in range(6)),
            mix.backup("r1", "warning"),
            mix.backup("r2", "failed"),
            mix.check_retried("r1"),
            mix.requeued(),
            mix.cancelled(running=False),
            mix.cancelled(running=True),
            mix.heartbeats(3),
        ],
    )
    async with Fleet(nats_server.url, database_url) as fleet:
        # One stalls in the jobs it holds until the others have applied what undoes them; one
        # in the progress it holds until the jobs projection has deleted those jobs.
        held_jobs = await fleet.add(
            lambda p, j: Stalling(p, j, random.Random(SEED + 1), {JOBS: JOBS, AGENTS: AGENTS}, STALL_S)
        )
        held_progress = await fleet.add(
            lambda p, j: Stalling(p, j, random.Random(SEED + 2), {PROGRESS: JOBS}, 2 * STALL_S)
        )
        dawdling = await fleet.add(lambda p, j: Dawdling(p, j, random.Random(SEED + 3)))
        projectors = (held_jobs, held_progress, dawdling)
        # What stalls starts first: had another written the backlog before it read where
        # to start from, it would have no batch of it to hold.
        fleet.start(held_jobs, JOBS, AGENTS)
        fleet.start(held_progress, PROGRESS)

        async def started() -> bool:
            return {JOBS, AGENTS} <= held_jobs.positions.keys() and PROGRESS in held_progress.positions

        await eventually(started, what="the stalling projectors started")
        fleet.start(held_jobs, PROGRESS)
        fleet.start(held_progress, JOBS, AGENTS)
        fleet.start(dawdling, *PROJECTIONS)

        async def stalled() -> bool:
            return all(e.is_set() for p in (held_jobs, held_progress) for e in p.entered.values())

        await eventually(stalled, what="two projectors holding their first batches")

        # What undoes the backlog, appended while one projector holds it in its transactions.
        undo = [
            mix.delete_finished(8),
            mix.prune("r1", 3),
            mix.delete_archive("r2"),
            mix.backup("r1"),
            mix.heartbeats(2),
        ]
        await appended(mix, out, undo)
        held_jobs.targets = held_progress.targets = dict(out.ends)
        for _ in range(6):
            await appended(
                mix,
                out,
                [
                    mix.delete_finished(2),
                    mix.prune("r2", 1),
                    mix.backup(rng.choice(list(REPOSITORIES))),
                    mix.backup(rng.choice(list(REPOSITORIES)), "warning"),
                    mix.check_retried("r2"),
                    mix.requeued(),
                    mix.cancelled(running=rng.random() < 0.5),
                    mix.heartbeats(1),
                ],
            )
        await out.append(Malformed(f"borgflow.jobs.{ids.new_id()}.started"))
        # Last, what no deletion purges: each stream ends on a message its followers get.
        await out.run([*mix.unfinished(), *mix.heartbeats(1)])

        async def all_caught_up() -> bool:
            return all(p.positions.get(n, -1) >= out.ends[n] for p in projectors for n in PROJECTIONS)

        await eventually(all_caught_up, timeout=60, what=f"three projectors at {out.ends}")
    live = await snapshot(pool)

    assert mix.deleted and mix.removed
    back = {r["id"] for r in live["jobs"]} & set(mix.deleted)
    assert not back, f"deleted jobs are back: {sorted(back)}"
    back_archives = {(r["repository_id"], r["name"]) for r in live["archives"]} & set(mix.removed)
    assert not back_archives, f"removed archives are back: {sorted(back_archives)}"

    await rebuild(pool)
    assert not any((await snapshot(pool)).values())
    stop = asyncio.Event()
    alone = asyncio.create_task(run(Settings(nats_url=nats_server.url, database_url=database_url), stop))

    async def rebuilt() -> bool:
        async with pool.acquire() as conn:
            return all([await readmodel.get_checkpoint(conn, n) >= out.ends[n] for n in PROJECTIONS])

    await eventually(rebuilt, timeout=60, what="a single projector's rebuild")
    stop.set()
    await asyncio.wait_for(alone, 10)
    one = await snapshot(pool)
    for table in store.READ_MODEL_TABLES:
        assert live[table] == one[table], f"{table}: three projectors and one differ (seed {SEED})"
