"""The fault table of issue 4: run the kill -9 scenarios and print one row per piece killed.

    .venv/bin/python -m bench.fault_table

Each row comes from tests/faults/test_kill_and_restart.py, which checks the invariants
(and fails if any is broken); this prints what it measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "fault-table.jsonl"


def main() -> int:
    REPORT.unlink(missing_ok=True)
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/faults"])
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
