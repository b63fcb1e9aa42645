"""A job's log: the whole of it as a text download, or followed live over a websocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, WebSocket, get, websocket
from litestar.response import Stream

from services.api import logstream, sockets
from services.api.auth import READ, Principal, principal_of_connection
from services.api.controllers.jobs import job_view
from services.api.errors import NotFound
from services.api.runtime import Runtime

# Lines are sent to the client in chunks of about this many bytes.
CHUNK_BYTES = 64 * 1024


class LogController(Controller):
    path = "/api/jobs"
    tags = ("jobs",)

    @get("/{job_id:str}/log", opt={"permission": READ}, media_type="text/plain; charset=utf-8")
    async def download(self, rt: Runtime, principal: Principal, job_id: str) -> Stream:
        """The whole log as `text/plain`, one line each: `<time> <LEVEL> [<source>] <message>`."""
        await job_view(rt, job_id, principal)  # 404 for an unknown job (or one of another project)

        async def chunks() -> AsyncIterator[bytes]:
            buf: list[str] = []
            size = 0
            async for line in logstream.read_log(rt.js, job_id):
                text = logstream.format_line(line)
                buf.append(text)
                size += len(text)
                if size >= CHUNK_BYTES:
                    yield "".join(buf).encode()
                    buf, size = [], 0
            if buf:
                yield "".join(buf).encode()

        return Stream(
            chunks(),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
        )

    @websocket("/{job_id:str}/log/follow", opt={"permission": READ})
    async def follow(self, socket: WebSocket[Any, Any, Any], rt: Runtime, job_id: str) -> None:
        """Every log line from the start, then live ones, as JSON; closes when the job is done."""
        try:
            await job_view(rt, job_id, principal_of_connection(socket))
        except NotFound:
            await socket.close(code=4404, reason=f"no job {job_id}")
            return
        await socket.accept()

        async def send_lines() -> None:
            async for line in logstream.follow_log(rt.js, rt.nc, job_id):
                await socket.send_text(
                    msgspec.json.encode(
                        {
                            "at": logstream.format_time(line.at),
                            "level": line.level,
                            "message": line.message,
                            "source": line.source,
                        }
                    ).decode()
                )

        await sockets.serve(socket, send_lines())
