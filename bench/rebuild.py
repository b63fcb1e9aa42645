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
import sys
import time
from pathlib import Path

import nats

from bench.control_plane import PY_SPY, add_history, projected, rebuild_rate
from bench.system import System
from shared.streams import ensure_streams

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


async def measure(jobs: int, profile_it: bool) -> None:
    system = System(services=("projector",))
    try:
        await system.start()
        nc = await nats.connect(system.nats.url)
        await ensure_streams(nc.jetstream())
        began = time.monotonic()
        await add_history(nc, jobs)
        await projected(system, nc)
        print(f"{jobs:,} jobs appended and projected in {time.monotonic() - began:.1f} s", flush=True)
        profile = ARTIFACTS / "rebuild-profile.txt" if profile_it else None
        if profile is not None:
            ARTIFACTS.mkdir(exist_ok=True)
        rate = await rebuild_rate(system, nc, profile)
        print(f"rebuild: {rate:,.0f} events/s" + (f", profile in {profile}" if profile else ""))
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
