"""Traces: one job is one trace, across the api, the dispatcher, the executor and the notifier.

Configured only by the standard OpenTelemetry variables:

    OTEL_TRACES_EXPORTER   otlp | console | none (comma-separated for several); default
                           none, or otlp when OTEL_EXPORTER_OTLP_ENDPOINT is set
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS
    OTEL_SERVICE_NAME      default borgflow-<service>
    OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG

How a job's spans hang together: the api opens `job.accept` and puts its W3C
`traceparent` into the job's spec (`JobSpec.traceparent`), so whoever holds the job
continues its trace: the dispatcher's `job.send`, the executor's `job.run` (with a
child span per borg or script process and its exit code) and the notifier's
`notify`. Every event published carries a `traceparent` header too (bus.publish):
the context it was published in, or a fresh unsampled one when there is none.

Attributes are ids, names, types and exit codes; never a passphrase, a command line,
an environment or a notification URL (which may carry a token).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from shared.version import VERSION

log = logging.getLogger(__name__)

TRACER = "borgflow"
TRACEPARENT = "traceparent"


def tracer() -> trace.Tracer:
    """The tracer of whichever provider is installed (a no-op one until `configure`)."""
    return trace.get_tracer(TRACER, VERSION)


def _exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    otlp_set = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    names = (env.get("OTEL_TRACES_EXPORTER") or ("otlp" if otlp_set else "none")).lower()
    out: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "console":
            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            out.append(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_* itself
        elif name not in ("none", ""):
            log.warning("unknown OTEL_TRACES_EXPORTER %r: use otlp, console or none", name)
    return out


def configure(service: str, env: Mapping[str, str]) -> TracerProvider | None:
    """Install this process's tracer provider as the OTEL_* variables say.

    A provider is installed even with no exporter, so that spans get real ids and
    the `traceparent` of every event links to something; such spans cost a few
    microseconds and go nowhere. A provider installed before (by a test, or an
    auto-instrumentation) is left alone: returns None then.
    """
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return None
    name = env.get("OTEL_SERVICE_NAME") or f"borgflow-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name, "service.version": VERSION}))
    for exporter in _exporters(env):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def shutdown() -> None:
    """Flush and stop the installed provider (at process exit)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, None when there is none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


def inject(headers: dict[str, str]) -> None:
    """Put the current trace context into message headers; a fresh unsampled one without any."""
    propagate.inject(headers)
    if TRACEPARENT not in headers:
        # Not recorded anywhere (flags 00), but an event is never without a trace context.
        headers[TRACEPARENT] = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


def context_of(headers: Mapping[str, str] | None = None, traceparent: str | None = None) -> otel_context.Context | None:
    """The trace context in message headers, else in a stored traceparent; None when neither has one."""
    for carrier in (headers, {TRACEPARENT: traceparent} if traceparent else None):
        if carrier and TRACEPARENT in carrier:
            ctx = propagate.extract(dict(carrier))
            if trace.get_current_span(ctx).get_span_context().is_valid:
                return ctx
    return None


def link_to(traceparent: str | None) -> list[trace.Link]:
    """A link to another trace (a chained job's parent), for a span that starts its own."""
    ctx = context_of(traceparent=traceparent)
    if ctx is None:
        return []
    return [trace.Link(trace.get_current_span(ctx).get_span_context())]
