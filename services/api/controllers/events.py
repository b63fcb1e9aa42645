"""WS /api/events: event envelopes (docs/events.md) as they happen, filtered.

A token limited to one project gets only the events of that project's jobs (and the
agents' online/offline, which belong to no project). A job's project is read once,
from the `job.queued` envelope or the read model, and remembered (`rt.projects`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from litestar import Controller, WebSocket, websocket
from nats.aio.msg import Msg

from services.api import sockets
from services.api.auth import READ, principal_of_connection, project_scope
from services.api.controllers import safe_id
from services.api.errors import NotFound
from services.api.runtime import Runtime

log = logging.getLogger(__name__)

# Envelopes waiting for a slow client; beyond this the client is dropped (it can re-read state).
MAX_BACKLOG = 10_000
ALL_SUBJECTS = ("borgflow.jobs.>", "borgflow.progress.>", "borgflow.agents.>")


class _Head(msgspec.Struct):
    type: str = ""
    job_id: str | None = None


class _Spec(msgspec.Struct):
    project: str = "default"


class _Queued(msgspec.Struct):
    data: _Spec


_head = msgspec.json.Decoder(_Head)
_queued = msgspec.json.Decoder(_Queued)


def _remember_project(rt: Runtime, head: _Head, raw: bytes) -> None:
    """`job.queued` carries the job's project: remember it before any later event asks."""
    if head.type != "job.queued" or head.job_id is None:
        return
    # Unreadable: looked up in the read model when needed.
    with contextlib.suppress(msgspec.MsgspecError):
        rt.projects.remember(head.job_id, _queued.decode(raw).data.project)


def subjects_for(job_id: str | None) -> tuple[str, ...]:
    if job_id is None:
        return ALL_SUBJECTS
    return (f"borgflow.jobs.{job_id}.>", f"borgflow.progress.{job_id}")


class EventController(Controller):
    path = "/api/events"
    tags = ("events",)

    @websocket(opt={"permission": READ})
    async def events(self, socket: WebSocket[Any, Any, Any], rt: Runtime) -> None:
        """Query `job_id` (one job) and `type` (a prefix such as `job.`) narrow what is sent.

        A token limited to a project is refused (4404) a `job_id` it may not see.
        """
        job_id = socket.query_params.get("job_id") or None
        prefix = socket.query_params.get("type") or ""
        project = project_scope(principal_of_connection(socket))
        if job_id is not None:
            try:
                safe_id(job_id, "job")
            except NotFound:
                await socket.close(code=4400, reason="job_id is not a job id")
                return
            if project is not None and await rt.projects.project_of(rt.pool, rt.js, job_id) != project:
                # As log follow answers: a job of another project is no job at all.
                await socket.close(code=4404, reason=f"no job {job_id}")
                return
        queue: asyncio.Queue[tuple[_Head, bytes]] = asyncio.Queue(MAX_BACKLOG)
        overflowed = asyncio.Event()

        async def on_msg(msg: Msg) -> None:
            try:
                head = _head.decode(msg.data)
            except msgspec.MsgspecError:
                return
            if not head.type.startswith(prefix) or (job_id and head.job_id != job_id):
                return
            if project is not None:
                _remember_project(rt, head, msg.data)
            try:
                queue.put_nowait((head, msg.data))
            except asyncio.QueueFull:
                overflowed.set()

        async def visible(head: _Head) -> bool:
            if project is None or head.job_id is None:
                return True  # every project, or an event of no job (an agent's)
            # Looked up here, not in on_msg: a lookup may await, and NATS delivers one message at a time.
            return await rt.projects.project_of(rt.pool, rt.js, head.job_id) == project

        subs = [await rt.nc.subscribe(subject, cb=on_msg) for subject in subjects_for(job_id)]
        try:
            # Subscribed on the server before the client hears "accepted": nothing in between is lost.
            await rt.nc.flush()
            await socket.accept()

            async def send_events() -> None:
                # An overflow means a full queue, so this loop is never parked on get() then.
                while not overflowed.is_set():
                    head, data = await queue.get()
                    if await visible(head):
                        await socket.send_text(data.decode())
                log.warning("dropping a websocket client that does not keep up")
                await socket.close(code=1013, reason="too slow: reconnect and re-read state")

            await sockets.serve(socket, send_events())
        finally:
            for sub in subs:
                await sub.unsubscribe()
