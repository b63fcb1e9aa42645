"""Following a job live over the api's websockets: its events (to its end) and its log."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import Any, TextIO

from websockets.exceptions import ConnectionClosed

from services.client import render
from services.client.api import EXIT_UNREACHABLE, Api, close_error, decode

# With no event for this long, the job is read again (an event may have been missed in a reconnect).
RECHECK_S = 30.0
RECONNECTS = 5
# A job's status, in the order of its life: an answer from a lagging read model never moves it back.
RANK = {"queued": 0, "sent": 1, "running": 2, "completed": 3, "warning": 3, "failed": 3, "cancelled": 3}


def apply(job: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    """The job after one event envelope (only what following it needs)."""
    kind = str(envelope.get("type", ""))
    data = envelope.get("data") or {}
    if kind == "job.progress":
        return job | {"progress": data}
    status = {"job.sent": "sent", "job.started": "running", "job.requeued": "queued"}.get(kind)
    if kind in ("job.completed", "job.warning", "job.failed", "job.cancelled"):
        status = kind.removeprefix("job.")
    if status is None or (RANK[status] < RANK[job["status"]] and kind != "job.requeued"):
        return job
    changes: dict[str, Any] = {"status": status}
    if kind == "job.started":
        changes["started_at"] = envelope.get("at")
    if status in render.TERMINAL:
        changes |= {"finished_at": envelope.get("at"), "error": data.get("error"), "result": data.get("result")}
        if data.get("progress"):
            changes["progress"] = data["progress"]
    return job | changes


def fresher(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    return mine if RANK[mine["status"]] > RANK[theirs["status"]] else theirs


class ProgressDisplay:
    """A live progress line on a terminal (redrawn in place), or plain lines on anything else."""

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
        self.shown = ""
        self.last_status = ""
        self.last_decile = -1

    def show(self, job: dict[str, Any]) -> None:
        if self.tty:
            line = render.progress_line(job, shutil.get_terminal_size().columns)
            if line != self.shown:
                self.out.write("\r\x1b[2K" + line)
                self.out.flush()
                self.shown = line
            return
        # Not a terminal (a log, CI): a line per status change and per tenth of the way.
        pct = render.percent(job)
        decile = -1 if pct is None else int(pct // 10)
        if job["status"] != self.last_status or decile > self.last_decile:
            self.out.write(render.progress_line(job, 200) + "\n")
            self.out.flush()
            self.last_status, self.last_decile = job["status"], max(decile, self.last_decile)

    def done(self) -> None:
        if self.tty and self.shown:
            self.out.write("\n")
            self.out.flush()


def wait(api: Api, job: dict[str, Any], on_change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Follow `job` over WS /api/events until it finishes; returns it as it ended."""
    reconnects = 0
    while True:
        try:
            with api.websocket("/api/events", job_id=job["id"]) as ws:
                # Subscribed first, then read: nothing that happens in between is missed.
                job = fresher(job, api.get(f"/api/jobs/{job['id']}"))
                on_change(job)
                while job["status"] not in render.TERMINAL:
                    try:
                        message = ws.recv(timeout=RECHECK_S)
                    except TimeoutError:
                        job = fresher(job, api.get(f"/api/jobs/{job['id']}"))
                    else:
                        job = apply(job, decode(message))
                    on_change(job)
                return job
        except ConnectionClosed as e:
            error = close_error(api, e.rcvd.code if e.rcvd else None, e.rcvd.reason if e.rcvd else "")
            reconnects += 1
            if (error is not None and error.code != EXIT_UNREACHABLE) or reconnects > RECONNECTS:
                raise error or api.unreachable("the connection closed") from None


def log_lines(api: Api, job_id: str, write: Callable[[str], None]) -> None:
    """Every line of the job's log, then live ones until the job is done (WS log/follow)."""
    with api.websocket(f"/api/jobs/{job_id}/log/follow") as ws:
        try:
            for message in ws:
                line = decode(message)
                level = str(line.get("level", "info")).upper()
                write(f"{line.get('at', '')} {level:<5} [{line.get('source', '')}] {line.get('message', '')}\n")
        except ConnectionClosed:
            pass  # the reason is read below, from the same close frame
        code = ws.close_code
        error = close_error(api, code, ws.close_reason or "")
    if error is not None:
        raise error
