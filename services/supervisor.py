"""`borgflow up`'s services, each in a process of its own, kept running and stopped together.

One Python process runs on one core; the api, the dispatcher, the projector and the
executor all busy at once need more. So `up` starts each service as `borgflow <service>`
(the same command a fleet runs), restarts one that dies (with backoff), and on SIGINT or
SIGTERM asks every one to stop (SIGTERM), waits for them, and kills what is left. A child
also dies with `up` itself (PR_SET_PDEATHSIG), so a killed `up` leaves nothing behind.

With BORGFLOW_METRICS_LISTEN set, each child serves its probes on a port of its own on
loopback, and `up` serves one /healthz (every child healthy) and one /metrics (every
child's page, each sample labelled with its `service`) on the address asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from shared.probes import Receive, Send, not_http, respond, serve_asgi

log = logging.getLogger("borgflow.up")
PROBE_TIMEOUT_S = 3.0

PR_SET_PDEATHSIG = 1
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0


class Child(msgspec.Struct, kw_only=True):
    """One service process: how it is started, and (once started) where its probes are."""

    name: str
    args: list[str]
    env: dict[str, str]
    metrics_url: str | None = None


def borgflow_command() -> list[str]:
    """How to run `borgflow` here (the console script beside this interpreter, else -m)."""
    script = Path(sys.executable).parent / "borgflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


def _die_with_parent() -> None:
    """In the child, before exec: a SIGTERM when `up` dies, however it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


async def _spawn(child: Child) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *borgflow_command(),
        *child.args,
        env=child.env,
        stdin=asyncio.subprocess.DEVNULL,
        # Its own session: a Ctrl-C reaches `up` alone, which stops the children in order
        # (a child that stopped on its own Ctrl-C would look like one that died).
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )


async def keep(child: Child, stop: asyncio.Event, grace_s: float) -> None:
    """Run the child until `stop`; start it again (with backoff) whenever it exits by itself."""
    delay = FIRST_BACKOFF_S
    while not stop.is_set():
        proc = await _spawn(child)
        exited = asyncio.ensure_future(proc.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            await _stop(child.name, proc, exited, grace_s)
            return
        log.error("%s exited with %s; starting it again in %.1fs", child.name, proc.returncode, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_BACKOFF_S)


async def _stop(name: str, proc: asyncio.subprocess.Process, exited: asyncio.Future[int], grace_s: float) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(exited), grace_s)
    except TimeoutError:
        log.warning("%s did not stop in %gs: killing it", name, grace_s)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await exited


def environment(base: Mapping[str, str], **values: str | None) -> dict[str, str]:
    """`base` with BORGFLOW_* variables set (None: removed)."""
    env = dict(base)
    for key, value in values.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


# --------------------------------------------------------------------------- one /healthz, one /metrics


class Probes:
    """/healthz and /metrics of `up`, gathered from its children's own."""

    def __init__(self, children: list[Child]) -> None:
        self.children = [c for c in children if c.metrics_url]
        self.http = httpx.AsyncClient(timeout=PROBE_TIMEOUT_S)

    async def problems(self) -> dict[str, str]:
        async def one(child: Child) -> tuple[str, str | None]:
            try:
                r = await self.http.get(f"{child.metrics_url}/healthz")
            except httpx.HTTPError as e:
                return child.name, f"not answering ({type(e).__name__})"
            if r.status_code == 200:
                return child.name, None
            try:
                wrong = r.json().get("problems", {})
            except ValueError:
                wrong = {}
            return child.name, "; ".join(f"{k}: {v}" for k, v in wrong.items()) or f"answered {r.status_code}"

        answers = await asyncio.gather(*(one(c) for c in self.children))
        return {name: problem for name, problem in answers if problem}

    async def metrics(self) -> bytes:
        pages = await asyncio.gather(
            *(self.http.get(f"{c.metrics_url}/metrics") for c in self.children), return_exceptions=True
        )
        families: dict[str, Metric] = {}
        for child, page in zip(self.children, pages, strict=True):
            if isinstance(page, BaseException) or page.status_code != 200:
                continue
            for family in text_string_to_metric_families(page.text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    labels = {**sample.labels, "service": child.name}
                    merged.samples.append(sample._replace(labels=labels))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Gathered(list(families.values())))
        text: bytes = generate_latest(registry)
        return text

    async def app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if await not_http(scope, receive, send):
            return
        if scope["path"] == "/healthz":
            wrong = await self.problems()
            body = msgspec.json.encode({"status": "starting", "problems": wrong} if wrong else {"status": "ok"})
            await respond(send, 503 if wrong else 200, body, "application/json")
        elif scope["path"] == "/metrics":
            await respond(send, 200, await self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            await respond(send, 404, b'{"detail":"try /healthz or /metrics"}', "application/json")

    async def serve(self, listen: str, stop: asyncio.Event) -> None:
        try:
            await serve_asgi(self.app, listen, stop)
        finally:
            await self.http.aclose()


class _Gathered:
    """A collector that hands prometheus-client families parsed from the children's pages."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families
