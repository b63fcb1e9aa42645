"""The executor's own tunables; how it connects and who it is come from shared Settings."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec


class ExecutorOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Timings of one executor. The defaults suit production; tests shorten some."""

    cancel_grace_s: float = 10.0
    """After SIGINT, how long borg may take to checkpoint and stop before SIGTERM (as long again: SIGKILL)."""
    progress_interval_s: float = 1.0
    """At most one progress event per job this often (plus a final one)."""
    log_flush_s: float = 0.2
    """Log lines are published at least this often while a job runs."""
    log_batch_lines: int = 200
    """A log event holds at most this many lines; a full batch is published at once."""
    log_line_max_chars: int = 8192
    """Longer lines (tracebacks, huge paths) are cut so one batch stays far below NATS's max payload."""
    shutdown_timeout_s: float = 30.0
    """On stop, how long running jobs get to be interrupted and reported before the executor gives up."""
    consumer_ack_wait_s: float = 30.0
    """An unacknowledged sent/cancel message is redelivered after this long."""
    fetch_batch: int = 64
    """Messages fetched from the job stream at once."""
    hook_timeout_s: float = 300.0
    """A plan's pre- or post-script still running after this long is killed (and counts as failed)."""
    cleanup_lock_wait_s: int = 5
    """borg's --lock-wait for the housekeeping after a cancel (removing checkpoint archives)."""
    secret_patience_s: float = 60.0
    """How long a passphrase fetch keeps retrying network errors and 5xx answers (the api answers 503
    while Postgres or NATS restarts) before the job fails as secret_unavailable."""
    log_hold_s: float = 30.0
    """A job that ends while NATS is away holds its last log lines this long for NATS to come back
    (then drops them); its outcome itself waits as long as it takes."""


# Environment variables an operator may set on an agent; everything else keeps its default.
_ENV = {
    "cancel_grace_s": "BORGFLOW_CANCEL_GRACE_S",
    "hook_timeout_s": "BORGFLOW_HOOK_TIMEOUT_S",
    "secret_patience_s": "BORGFLOW_SECRET_PATIENCE_S",
}


def options_from_env(env: Mapping[str, str]) -> ExecutorOptions:
    """Options from an environment mapping (only the few an operator tunes per agent)."""
    values = {field: env[var] for field, var in _ENV.items() if env.get(var)}
    return msgspec.convert(values, ExecutorOptions, strict=False)
