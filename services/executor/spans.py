"""A span per process a job runs (borg or a script), with its exit code: the leaves of a job's trace.

Only the command's name goes into the span (`borg create`, `script pre-backup.sh`):
never its arguments, which hold paths and patterns, nor its environment, which holds
the passphrase.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

from shared import metrics, tracing


def borg_command(argv: Sequence[str]) -> str:
    """`borg create` for `[".../borg", "create", ...]` (the first word after the program that is not an option)."""
    word = next((a for a in argv[1:] if not a.startswith("-")), "")
    return f"borg {word}".strip()


def script_command(argv: Sequence[str]) -> str:
    return f"script {os.path.basename(argv[0])}" if argv else "script"


@contextmanager
def process_span(command: str) -> Iterator[Span]:
    """A child span of the current one for one process; `ended(span, code)` records how it exited."""
    with tracing.tracer().start_as_current_span(command, kind=trace.SpanKind.INTERNAL) as span:
        span.set_attribute("process.command", command.split(" ", 1)[0])
        yield span


def ended(span: Span, command: str, exit_code: int | None) -> None:
    """Record a process's exit code on its span and in the process counter."""
    label = "none" if exit_code is None else str(exit_code)
    span.set_attribute("process.exit_code", -1 if exit_code is None else exit_code)
    if exit_code not in (0, 1):  # borg's 1 is a warning, not an error
        span.set_status(StatusCode.ERROR, f"exited with {label}")
    metrics.PROCESSES.labels(command=command, exit_code=label).inc()
