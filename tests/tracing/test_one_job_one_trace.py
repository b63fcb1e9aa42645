"""One job is one trace: a backup through the api, the dispatcher, the executor (a span per borg
and script process, with its exit code) and the notifier shares one trace id; and no span holds
a passphrase or a notification URL. Every service runs in this process, recording its spans in
memory; borg is real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from services.api.app import ApiDeps
from services.api.app import run as run_api
from services.dispatcher.app import run as run_dispatcher
from services.executor.app import run as run_executor
from services.notifier.app import run as run_notifier
from services.projector.app import run as run_projector
from shared import bus, tokens
from shared.config import Settings
from shared.testing import NatsServer, free_port
from tests.notifier.conftest import Receiver
from tests.support.upsystem import make_source
from tests.support.waiting import eventually

ADMIN = "trace-admin-token-0123456789"
AGENT_TOKEN = "trace-agent-token-0123456789"
PASSPHRASE = "tr4ce-n0-secret-passphrase"


class Recorder(SpanProcessor):
    """Keeps the spans that end while it is on (the provider lives as long as the process)."""

    def __init__(self) -> None:
        self.on = False
        self.spans: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.on:
            self.spans.append(span)


_recorder = Recorder()


@pytest.fixture
def spans() -> Iterator[Recorder]:
    """Spans of this test only, from the process's one tracer provider (installed once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_recorder)
        trace.set_tracer_provider(provider)
    _recorder.spans.clear()
    _recorder.on = True
    yield _recorder
    _recorder.on = False
    _recorder.spans.clear()


@pytest_asyncio.fixture(loop_scope="session")
async def system(
    spans: Recorder, nats_server: NatsServer, database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with pool.acquire() as conn:
        await tokens.ensure_token(conn, "agent local", "agent", AGENT_TOKEN, agent="local")  # type: ignore[arg-type]
    port = free_port()
    settings = Settings(
        nats_url=nats_server.url,
        database_url=database_url,
        api_url=f"http://127.0.0.1:{port}",
        admin_token=ADMIN,
        token=AGENT_TOKEN,
        listen_port=port,
        data_dir=str(tmp_path / "agent"),
        heartbeat_interval_s=1,
    )
    stop = asyncio.Event()
    nc = await bus.connect(nats_server.url, "api")
    tasks = [
        asyncio.create_task(run_api(settings, stop, ApiDeps(pool=pool, nc=nc))),
        asyncio.create_task(run_projector(settings, stop)),
        asyncio.create_task(run_dispatcher(settings, stop)),
        asyncio.create_task(run_executor(settings, stop)),
        asyncio.create_task(run_notifier(settings, stop)),
    ]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=settings.api_url, headers=headers, timeout=20) as client:

        async def healthy() -> bool:
            try:
                return (await client.get("/api/health")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, timeout=30, what="the api")
        yield client
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await nc.close()


async def run_backup(client: httpx.AsyncClient, tmp_path: Path, receiver: Receiver) -> dict[str, Any]:
    """An encrypted repository, a plan with a pre-script, one backup; returns the finished backup."""
    target = {"name": "everything", "url": receiver.url, "events": ["*"]}
    assert (await client.post("/api/notifications", json=target)).status_code == 201
    body = {"name": "r", "location": str(tmp_path / "repo"), "agent": "local", "passphrase": PASSPHRASE}
    repo = (await client.post("/api/repositories", json=body)).json()
    init = (await client.post("/api/jobs", json={"type": "init", "repository_id": repo["id"]})).json()
    await finished(client, init["id"])
    plan = {"name": "p", "repository_id": repo["id"], "paths": [str(make_source(tmp_path / "src", files=5))],
            "pre_scripts": ["/bin/true"]}  # fmt: skip
    plan_id = (await client.post("/api/plans", json=plan)).json()["id"]
    job = (await client.post("/api/jobs", json={"type": "backup", "plan_id": plan_id})).json()
    done = await finished(client, job["id"])
    assert done["status"] == "completed", done.get("error")
    await eventually(lambda: _delivered(receiver, "backup"), timeout=20, what="the backup's notification")
    return done


async def _delivered(receiver: Receiver, word: str) -> bool:
    return any(word in t.lower() for t in receiver.titles())


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        j: dict[str, Any] = (await client.get(f"/api/jobs/{job_id}")).json()
        return j if j["status"] in ("completed", "warning", "failed", "cancelled") else None

    return await eventually(done, timeout=60, what=f"job {job_id}")


def of_job(spans: Sequence[ReadableSpan], job_id: str) -> list[ReadableSpan]:
    """Every span in the trace of the job's `job.accept` span."""
    accept = [s for s in spans if s.name == "job.accept" and (s.attributes or {}).get("borgflow.job_id") == job_id]
    assert len(accept) == 1, f"one job.accept span for {job_id}: {[s.name for s in spans]}"
    trace_id = accept[0].context.trace_id
    return [s for s in spans if s.context.trace_id == trace_id]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {sorted(s.name for s in spans)}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_backup_is_one_trace_from_api_to_notifier(
    system: httpx.AsyncClient, spans: Recorder, tmp_path: Path
) -> None:
    receiver = Receiver()
    done = await run_backup(system, tmp_path, receiver)

    async def notify_ended() -> bool:
        # The notifier's spans end a moment after the receiver has the message.
        return sum(s.name == "notify" for s in of_job(spans.spans, done["id"])) == 2

    await eventually(notify_ended, timeout=10, what="the notifier's span")
    job = of_job(spans.spans, done["id"])

    accept, send, run = one(job, "job.accept"), one(job, "job.send"), one(job, "job.run")
    assert parent_of(send) == accept.context.span_id
    assert parent_of(one(job, "job.claim")) == send.context.span_id
    assert parent_of(run) == send.context.span_id
    assert (run.attributes or {})["borgflow.status"] == "completed"
    create = one(job, "borg create")
    assert parent_of(create) == run.context.span_id and (create.attributes or {})["process.exit_code"] == 0
    script = one(job, "script true")
    assert parent_of(script) == run.context.span_id and (script.attributes or {})["process.exit_code"] == 0
    # The notifier's spans hang in the same trace: one for the completion it told the target about.
    notified = sorted(str((s.attributes or {}).get("borgflow.event")) for s in job if s.name == "notify")
    assert notified == ["job.completed", "job.started"]
    delivery = [s for s in job if s.name == "notify.target"]
    assert delivery and all(parent_of(d) in {n.context.span_id for n in job if n.name == "notify"} for d in delivery)
    assert {s.name for s in job} >= {"job.accept", "job.send", "job.claim", "job.run", "borg create", "notify"}


async def test_no_span_holds_a_secret(system: httpx.AsyncClient, spans: Recorder, tmp_path: Path) -> None:
    receiver = Receiver()
    await run_backup(system, tmp_path, receiver)
    assert len(spans.spans) > 10
    everything = json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
                "status": s.status.description,
                "resource": dict(s.resource.attributes),
            }
            for s in spans.spans
        ],
        default=str,
    )
    assert PASSPHRASE not in everything
    assert receiver.url not in everything and "127.0.0.1" not in everything  # a URL may carry a token
    assert ADMIN not in everything and AGENT_TOKEN not in everything
