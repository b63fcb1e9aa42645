"""The fault table: run the kill -9 scenarios and print one row per piece killed.

    .venv/bin/python -m bench.fault_table

Each row comes from a test that checks the invariants (and fails if any is broken):
tests/faults/test_kill_and_restart.py kills each service, NATS and Postgres of a
one-server system; tests/faults/test_fleet_failover.py kills the leader of BORGFLOW_JOBS
in a 3-server NATS cluster, and the active one of two dispatchers. This prints what they
measured; recovery is from the kill until jobs start again (or every service is healthy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "fault-table.jsonl"


def main() -> int:
    REPORT.unlink(missing_ok=True)
    tests = ["tests/faults/test_kill_and_restart.py", "tests/faults/test_fleet_failover.py"]
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", *tests])
    rows = [json.loads(line) for line in REPORT.read_text().splitlines()] if REPORT.exists() else []
    print("\n| killed (-9) | jobs | lost | started twice | max running (limit) | recovery s | outcomes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        print(
            f"| {r['killed']} | {r['jobs']} | {r['lost']} | {r['started_twice']} | "
            f"{r['max_active']} ({r['limit']}) | {r['recovery_s']} | {outcomes} |"
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
