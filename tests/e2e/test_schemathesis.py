"""schemathesis, a fuzzer nobody here wrote, against a live `borgflow up`: no 500s, no
undocumented status codes, no answer that breaks its own schema, stateful phase on."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.upsystem import UpSystem

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
# Revoking tokens runs last, with the token operations alone (so the stateful phase can
# make a token and revoke it): once the fuzzer has made a second admin it may rightly
# revoke its own token (force=true), and everything after that would only meet 401s.
REVOKE = "ApiTokensTokenIdRevoke"


def schemathesis(system: UpSystem, cwd: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{system.base}/schema/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "20",
            "--seed",
            "20261203",
            # One worker: with two threads, hypothesis' ast.parse hits CPython 3.11's
            # shared AST recursion counter ("AST constructor recursion depth mismatch",
            # python/cpython#106905), a runtime error that says nothing about the api.
            "--workers",
            "1",
            # A loaded CI machine: a slow answer is not a failure (a 500 still is), and
            # hypothesis' own "generation too slow" check says nothing about the api.
            "--request-timeout",
            "60",
            "--suppress-health-check",
            "too_slow",
            "--header",
            f"Authorization: Bearer {system.token}",
            "--no-color",
            *selection,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )


def failures(run: subprocess.CompletedProcess[str]) -> str:
    """What went wrong: the failures and errors sections come before the summary."""
    out = run.stdout
    start = min((i for i in (out.find(" FAILURES ="), out.find(" ERRORS =")) if i >= 0), default=0)
    return out[start:][-30000:] + run.stderr[-2000:]


@pytest.mark.timeout(1500)
def test_schemathesis_finds_nothing(tmp_path: Path) -> None:
    # The local executor serves an agent no generated body can name, so whatever the fuzzer
    # queues (a backup of "/", a restore into it) waits for an agent that never comes.
    system = UpSystem(tmp_path / "data", tmp_path).start(BORGFLOW_AGENT=f"fuzz-{secrets.token_hex(8)}")
    try:
        everything_else = schemathesis(system, tmp_path, "--exclude-operation-id", REVOKE)
        summary = everything_else.stdout[-5000:]
        print(summary)
        assert everything_else.returncode == 0, failures(everything_else)
        assert "Rate limited" not in summary, "the fuzzer's own token was refused: nothing behind it was tested"
        # Here the fuzzer ends up revoking its own token, and then meets 401s and 429s (as a
        # guesser would): those answers must be documented too.
        tokens = schemathesis(system, tmp_path, "--include-path-regex", "^/api/tokens")
        print(tokens.stdout[-5000:])
        assert tokens.returncode == 0, failures(tokens)
    finally:
        system.stop()
