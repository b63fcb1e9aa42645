"""How the client shows things in a terminal: tables, times, sizes, a progress line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

TERMINAL = ("completed", "warning", "failed", "cancelled")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def when(value: str | None) -> str:
    """A time in the local zone: `19:32:41` today, `2026-11-22 19:32` before."""
    at = parse_time(value)
    if at is None:
        return "-"
    local = at.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def size(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"  # pragma: no cover - the loop returns


def run_time(job: dict[str, Any], now: datetime | None = None) -> float | None:
    """Seconds the job ran, or has run so far."""
    if job.get("duration_s") is not None:
        return float(job["duration_s"])
    started = parse_time(job.get("started_at"))
    if started is None:
        return None
    end = parse_time(job.get("finished_at")) or now or datetime.now(UTC)
    return max(0.0, (end - started).total_seconds())


def subject(job: dict[str, Any]) -> str:
    """What a job acts on: its plan, else its repository, else its agent."""
    return str(
        job.get("plan_name") or job.get("repository_name") or job.get("repository_id") or f"agent {job['agent']}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def action(job: dict[str, Any]) -> str:
    """What a running job does now, by type: files and bytes, files and destination, percent."""
    p = job.get("progress") or {}
    parts: list[str] = []
    if job["type"] == "backup":
        if p.get("nfiles") is not None:
            parts.append(f"{p['nfiles']:,} files")
        if p.get("original_size"):
            parts.append(size(p["original_size"]))
    elif job["type"] == "restore":
        files = p.get("nfiles") if p.get("nfiles") is not None else p.get("current")
        if files is not None:
            parts.append(f"{files:,} files")
        destination = (job.get("options") or {}).get("destination")
        if destination:
            parts.append(f"-> {destination}")
    elif p.get("action"):
        parts.append(str(p["action"]))
    if job["type"] == "backup" and p.get("current_file"):
        parts.append(str(p["current_file"]))
    return ", ".join(parts)


def percent(job: dict[str, Any]) -> float | None:
    value = (job.get("progress") or {}).get("percent")
    return None if value is None else float(value)


def progress_line(job: dict[str, Any], width: int = 80) -> str:
    """`[#########...........]  42.0%  1,234 files, 512.0 MB  ETA 12.0s  running`, within `width`."""
    p = job.get("progress") or {}
    pct = percent(job)
    bar_width = 24
    if pct is None:
        bar = "[" + "?" * 3 + " " * (bar_width - 3) + "]"
        head = f"{bar}     ?"
    else:
        filled = round(bar_width * min(100.0, max(0.0, pct)) / 100)
        mark = "≈" if p.get("estimated") else ""  # an estimate, from an earlier backup of the same paths
        head = f"[{'#' * filled}{'.' * (bar_width - filled)}] {mark}{pct:5.1f}%"
    tail = [job["status"] if job["status"] != "running" else ""]
    if job["status"] == "running" and p.get("eta_s") is not None:
        tail.insert(0, f"ETA {'≈' if p.get('estimated') else ''}{duration(float(p['eta_s']))}")
    doing = action(job) or ("starting" if job["status"] == "running" else "")
    text = "  ".join(x for x in [head, doing, *tail] if x)
    return clip(text, max(20, width - 1))


def job_row(job: dict[str, Any]) -> list[str]:
    return [
        job["id"],
        job["type"],
        job["status"],
        job["agent"],
        clip(subject(job), 30),
        when(job.get("created_at")),
        duration(run_time(job)) if job.get("started_at") else "-",
    ]


JOB_HEADERS = ("ID", "TYPE", "STATUS", "AGENT", "WHAT", "CREATED", "DURATION")
