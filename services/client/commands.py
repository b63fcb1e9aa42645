"""The client commands: `borgflow jobs …`, `borgflow backup`, `borgflow queue`, `borgflow repo …`.

Each returns the process's exit code; failures raise ClientError (services/client/api.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.client import render
from services.client.api import Api, ClientError
from services.client.follow import ProgressDisplay, log_lines, wait

# `borgflow backup --wait`: the job's outcome as the exit code.
OUTCOME_EXIT = {"completed": 0, "warning": 1, "failed": 2, "cancelled": 2}


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _job_path(job_id: str, tail: str = "") -> str:
    if not job_id or any(c in job_id for c in "/?#. "):
        raise ClientError(f"no job {job_id!r}")
    return f"/api/jobs/{job_id}{tail}"


def jobs_list(api: Api, args: argparse.Namespace) -> int:
    filters = {"since": args.since, "type": args.type, "status": args.status, "agent": args.agent}
    page = api.get("/api/jobs", limit=args.limit, **filters)
    if args.json:
        _print_json(page)
        return 0
    items = page["items"]
    if not items:
        print("no jobs match" if any(filters.values()) else "no jobs")
        return 0
    print(render.table(render.JOB_HEADERS, [render.job_row(j) for j in items]))
    if page.get("next_cursor"):
        print(f"(the newest {len(items)}; --limit shows more)")
    return 0


def _facts(job: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [
        ("id", job["id"]),
        ("type", job["type"]),
        ("status", job["status"] + (" (cancel requested)" if job.get("cancel_requested") else "")),
        ("agent", job["agent"]),
        ("project", job.get("project") or ""),
        ("plan", f"{job.get('plan_name') or ''} ({job['plan_id']})".strip() if job.get("plan_id") else ""),
        (
            "repository",
            f"{job.get('repository_name') or ''} ({job['repository_id']})" if job.get("repository_id") else "",
        ),
        ("archive", job.get("archive") or ""),
        ("trigger", job["trigger"] + (f" by {job['requested_by']}" if job.get("requested_by") else "")),
        ("created", render.when(job.get("created_at"))),
        ("started", render.when(job.get("started_at"))),
        ("finished", render.when(job.get("finished_at"))),
        ("duration", render.duration(render.run_time(job)) if job.get("started_at") else "-"),
        ("retry of", job.get("retry_of") or ""),
    ]
    waiting = job.get("waiting")
    if waiting:
        position = f"#{waiting['position']}: " if waiting.get("position") else ""
        facts.append(("waiting", f"{position}{waiting.get('detail') or waiting['reason']}"))
    if job.get("progress"):
        facts.append(("progress", render.progress_line(job, 200)))
    for key, value in (job.get("options") or {}).items():
        facts.append((f"option {key}", json.dumps(value) if isinstance(value, dict | list) else str(value)))
    result = job.get("result") or {}
    if result.get("archive"):
        facts.append(("result archive", str(result["archive"])))
    stats = result.get("stats") or {}
    if stats.get("nfiles") is not None:
        facts.append(("result files", f"{stats['nfiles']:,}"))
    if stats.get("original_size") is not None:
        facts.append(("result size", render.size(stats["original_size"])))
    if job.get("log_note"):
        facts.append(("log", f"not kept: {job['log_note']}"))
    error = job.get("error")
    if error:
        facts += [("error", f"{error['kind']}: {error['message']}")]
        if error.get("exit_code") is not None:
            facts.append(("exit code", str(error["exit_code"])))
        if error.get("hint"):
            facts.append(("hint", error["hint"]))
    return [(k, v) for k, v in facts if v]


def jobs_show(api: Api, args: argparse.Namespace) -> int:
    job = api.get(_job_path(args.id))
    if args.json:
        _print_json(job)
        return 0
    facts = _facts(job)
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        print(f"{key.ljust(width)}  {value}")
    return 0


def jobs_log(api: Api, args: argparse.Namespace) -> int:
    if args.follow:
        _job_path(args.id)
        log_lines(api, args.id, _write_out)
        return 0
    with api.stream(_job_path(args.id, "/log")) as chunks:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0


def _write_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def jobs_cancel(api: Api, args: argparse.Namespace) -> int:
    job = api.post(_job_path(args.id, "/cancel"))
    if args.json:
        _print_json(job)
    elif job["status"] == "cancelled":
        print(f"job {job['id']} cancelled")
    else:
        print(f"job {job['id']} is {job['status']}: asked its agent to stop it")
    return 0


def jobs_retry(api: Api, args: argparse.Namespace) -> int:
    job = api.post(_job_path(args.id, "/retry"))
    if args.json:
        _print_json(job)
    else:
        print(f"job {job['id']} {job['status']} (attempt {job.get('attempt', 1)}, retry of {args.id})")
    return 0


def find_plan(api: Api, name_or_id: str) -> dict[str, Any]:
    """The plan with this id, else the one plan with this name."""
    return _find(api, "/api/plans", "plan", "plans", name_or_id)


def find_repository(api: Api, name_or_id: str) -> dict[str, Any]:
    """The repository with this id, else the one repository with this name."""
    return _find(api, "/api/repositories", "repository", "repositories", name_or_id)


def _find(api: Api, path: str, one: str, many: str, name_or_id: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = api.get(path)["items"]
    by_id = [i for i in items if i["id"] == name_or_id]
    if by_id:
        return by_id[0]
    named = [i for i in items if i["name"] == name_or_id]
    if len(named) > 1:
        projects = ", ".join(sorted(i["project"] for i in named))
        raise ClientError(f"{many} named {name_or_id!r} exist in projects {projects}: give the {one}'s id")
    if not named:
        known = ", ".join(sorted(i["name"] for i in items)[:10]) or "none"
        raise ClientError(f"no {one} named {name_or_id!r} or with that id ({many}: {known})")
    return named[0]


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def repo_stats(api: Api, args: argparse.Namespace) -> int:
    repo = find_repository(api, args.repository)
    stats = api.get(f"/api/repositories/{repo['id']}/stats")
    if args.json:
        _print_json(stats)
        return 0
    if stats["archives"] is None and stats["original_size"] is None:
        print(f"repository {repo['name']}: not measured yet (a backup, prune or compact measures it)")
        return 0
    used, free = stats["disk_used"], stats["disk_free"]
    disk = "-"
    if used is not None and free is not None:
        disk = f"{render.size(used)} used, {render.size(free)} free ({100 * free / max(used + free, 1):.1f}% free)"
    full = stats["projected_full_at"]
    facts = [
        ("repository", f"{repo['name']} ({repo['id']})"),
        ("archives", str(stats["archives"]) if stats["archives"] is not None else "-"),
        ("original size", render.size(stats["original_size"])),
        ("compressed size", render.size(stats["compressed_size"])),
        ("stored (dedup)", render.size(stats["deduplicated_size"])),
        ("compression", _ratio(stats["compression_ratio"])),
        ("deduplication", _ratio(stats["dedup_ratio"])),
        ("disk", disk),
        ("full at", render.when(full) if full else "not growing"),
        ("history", f"{len(stats['history'])} day(s)"),
    ]
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        print(f"{key.ljust(width)}  {value}")
    return 0


# `borgflow repo verify`: the worst result decides the exit code.
VERIFY_EXIT = {"OK": 0, "STALE": 1, "UNVERIFIED": 1, "CORRUPT": 2, "MISSING": 2}


def repo_verify(api: Api, args: argparse.Namespace) -> int:
    repo = find_repository(api, args.repository)
    if (args.data or args.stale or args.archive) and not args.run:
        raise ClientError("--data, --stale and --archive go with --run (they choose what the check verifies)")
    final: dict[str, Any] | None = None
    if args.run:
        options: dict[str, Any] = {"verify_data": args.data, "stale_only": args.stale, "archives": args.archive}
        body = {"type": "check", "repository_id": repo["id"], "trigger": "cli"}
        job = api.post("/api/jobs", body | {"options": {k: v for k, v in options.items() if v}})
        print(f"job {job['id']}: check of repository {repo['name']!r}", file=sys.stderr)
        display = ProgressDisplay(sys.stderr)
        try:
            final = wait(api, job, display.show)
        finally:
            display.done()
    report = api.get(f"/api/repositories/{repo['id']}/verification")
    items: list[dict[str, Any]] = report["items"]
    if args.json:
        _print_json(report | ({"job": api.get(_job_path(final["id"]))} if final else {}))
    else:
        if final is not None:
            error = final.get("error")
            summary = f"job {final['id']} {final['status']}"
            if error and final["status"] != "completed":
                summary += f": {error['kind']}: {error['message']}" + (
                    f" (hint: {error['hint']})" if error.get("hint") else ""
                )
            print(summary)
        if not items:
            print(f"repository {repo['name']}: no archives known yet (a backup or a check finds them)")
        else:
            rows = [
                [i["archive"], i["result"], render.when(i["verified_at"]) if i["verified_at"] else "never",
                 render.clip(i["detail"] or "", 70)]
                for i in items
            ]  # fmt: skip
            print(render.table(("ARCHIVE", "RESULT", "VERIFIED", "DETAIL"), rows))
    worst = max((VERIFY_EXIT[i["result"]] for i in items), default=0)
    if final is not None and final["status"] in ("failed", "cancelled"):
        worst = 2
    return worst


def backup(api: Api, args: argparse.Namespace) -> int:
    plan = find_plan(api, args.plan)
    job = api.post("/api/jobs", {"type": "backup", "plan_id": plan["id"], "trigger": "cli"})
    if not args.wait:
        if args.json:
            _print_json(job)
        else:
            print(
                f"job {job['id']} queued: backup of plan {plan['name']!r}"
                + (f" ({job['message']})" if job.get("message") else "")
            )
        return 0
    print(f"job {job['id']}: backup of plan {plan['name']!r}", file=sys.stderr)
    display = ProgressDisplay(sys.stderr)
    try:
        final = wait(api, job, display.show)
    finally:
        display.done()
    if args.json:
        _print_json(api.get(_job_path(job["id"])) | {"status": final["status"]})
    else:
        summary = f"job {final['id']} {final['status']}"
        if final.get("started_at"):
            summary += f" after {render.duration(render.run_time(final))}"
        error = final.get("error")
        if error and final["status"] != "completed":
            summary += f": {error['kind']}: {error['message']}"
            if error.get("hint"):
                summary += f" (hint: {error['hint']})"
        print(summary)
    return OUTCOME_EXIT[final["status"]]


def queue(api: Api, args: argparse.Namespace) -> int:
    q = api.get("/api/queue")
    if args.json:
        _print_json(q)
        return 0
    diff = q["completed_24h"] - q["completed_prev_24h"]
    trend = "up" if diff > 0 else "down" if diff < 0 else "same"
    print(
        render.table(
            ("IN QUEUE", "COMPLETED 24H", "FAILED 24H", "AVG RUN TIME (LAST 50)"),
            [[
                str(q["in_queue"]),
                f"{q['completed_24h']} ({trend}, {q['completed_prev_24h']} the day before)",
                str(q["failed_24h"]) + (" !" if q["failed_24h"] else ""),
                render.duration(q["avg_duration_s_last_50"]),
            ]],
        )
    )  # fmt: skip
    print()
    running = q["in_progress"]
    if not running:
        print("nothing in progress")
        return 0
    print("IN PROGRESS")
    rows = [
        [j["id"], j["type"], j["agent"], render.clip(render.subject(j), 24), render.duration(render.run_time(j)),
         render.progress_line(j, 70)]
        for j in running
    ]  # fmt: skip
    print(render.table(("ID", "TYPE", "AGENT", "WHAT", "RUNNING", "PROGRESS"), rows))
    return 0
