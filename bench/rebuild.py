"""A projection rebuild alone: its events/s and who spends the CPU.

    .venv/bin/python -m bench.rebuild [--jobs 100000] [--profile]

Appends `--jobs` finished pings (four events each) to BORGFLOW_JOBS of a private NATS and
Postgres, lets the projector write them, drops the read model, starts the projector again
and times the replay (what `make bench` reports as "projection rebuild", without the rest
of that bench). `--profile` records the projector's replay with py-spy into
artifacts/rebuild-profile.txt (collapsed stacks, as flamegraph.pl and speedscope read them).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

import asyncpg
import nats

from bench.control_plane import add_history, projected
from bench.system import System
from services.projector import store
from shared.streams import JOBS, ensure_streams

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PY_SPY = str(Path(sys.executable).parent / "py-spy")


async def measure(jobs: int, profile: bool) -> None:
    system = System(services=("projector",))
    try:
        await system.start()
        nc = await nats.connect(system.nats.url)
        await ensure_streams(nc.jetstream())
        began = time.monotonic()
        await add_history(nc, jobs)
        await projected(system, nc)
        print(f"{jobs:,} jobs appended and projected in {time.monotonic() - began:.1f} s", flush=True)
        total = (await nc.jetstream().stream_info(JOBS)).state.messages
        system.procs["projector"].kill()
        system.procs["projector"].wait()
        conn = await asyncpg.connect(system.database_url)
        try:
            await store.drop_read_model(conn)
        finally:
            await conn.close()
        began, before = time.monotonic(), system.cpu_seconds()
        system.start_service("projector")
        spy = None
        if profile:
            ARTIFACTS.mkdir(exist_ok=True)
            out = ARTIFACTS / "rebuild-profile.txt"
            pid = str(system.procs["projector"].pid)
            spy = await asyncio.create_subprocess_exec(PY_SPY, "record", "-p", pid, "-f", "raw", "-o", str(out))
        await projected(system, nc)
        took, after = time.monotonic() - began, system.cpu_seconds()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on an interrupt
            await spy.wait()
        print(f"rebuild: {total:,} events in {took:.1f} s = {total / took:,.0f} events/s")
        for name in ("projector", "postgres", "nats"):
            print(f"  {name}: {after[name] - before.get(name, 0.0):.1f} s CPU")
        await nc.close()
    finally:
        system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile and not Path(PY_SPY).exists():
        parser.error(f"--profile needs py-spy: {Path(sys.executable).parent / 'pip'} install py-spy")
    asyncio.run(measure(args.jobs, args.profile))


if __name__ == "__main__":
    main()
