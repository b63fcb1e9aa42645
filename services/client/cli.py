"""The client commands' arguments, and running one: `borgflow jobs|backup|queue|repo`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from services.client.api import EXIT_AUTH, EXIT_REFUSED, EXIT_UNREACHABLE

COMMANDS = ("jobs", "backup", "queue", "repo")
EPILOG = (
    "The api is $BORGFLOW_API_URL (default http://127.0.0.1:8080); the token is $BORGFLOW_TOKEN "
    "(default: the admin-token file `borgflow up` writes into its default data dir). "
    f"Exit codes: 0 done, {EXIT_UNREACHABLE} api unreachable, {EXIT_AUTH} token refused or not allowed, "
    f"{EXIT_REFUSED} the api refused the request (no such job, conflict); "
    "`backup --wait`: 0 completed, 1 warning, 2 failed or cancelled."
)


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the api's JSON answer (for scripts)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `jobs`, `backup` and `queue` to the `borgflow` command."""
    jobs = sub.add_parser("jobs", help="browse, follow, cancel and retry jobs", epilog=EPILOG)
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    ls = jsub.add_parser("list", help="jobs, newest first", epilog=EPILOG)
    ls.add_argument("--since", help="created since: 30m, 1h, 24h, 7d or an ISO 8601 time")
    ls.add_argument("--type", help="job type(s), comma-separated: backup,check,…")
    ls.add_argument("--status", help="status(es), comma-separated: queued,running,failed,…")
    ls.add_argument("--agent", help="agent name")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    _json(ls)
    show = jsub.add_parser("show", help="one job in detail", epilog=EPILOG)
    show.add_argument("id")
    _json(show)
    log = jsub.add_parser("log", help="a job's log", epilog=EPILOG)
    log.add_argument("id")
    log.add_argument("--follow", "-f", action="store_true", help="stream new lines until the job is done")
    for name, text in (("cancel", "cancel a queued or running job"), ("retry", "run a failed or cancelled job again")):
        p = jsub.add_parser(name, help=text, epilog=EPILOG)
        p.add_argument("id")
        _json(p)

    backup = sub.add_parser("backup", help="queue a backup of a plan", epilog=EPILOG)
    backup.add_argument("plan", metavar="PLAN", help="plan name or id")
    backup.add_argument("--wait", action="store_true", help="show its progress and exit with its outcome")
    _json(backup)

    queue = sub.add_parser("queue", help="the queue at a glance: counts and what runs now", epilog=EPILOG)
    _json(queue)

    repo = sub.add_parser("repo", help="a repository's usage and health", epilog=EPILOG)
    rsub = repo.add_subparsers(dest="repo_command", required=True, metavar="ACTION")
    stats = rsub.add_parser(
        "stats", help="usage, dedup and compression ratios, free space and the projected fill date", epilog=EPILOG
    )
    stats.add_argument("repository", metavar="NAME", help="repository name or id")
    _json(stats)
    verify = rsub.add_parser(
        "verify",
        help="each archive's verification (OK, CORRUPT, MISSING, STALE, UNVERIFIED); --run checks first",
        epilog=EPILOG + " `repo verify`: 0 every archive OK, 1 some STALE or UNVERIFIED, 2 some CORRUPT or MISSING "
        "or the check failed.",
    )
    verify.add_argument("repository", metavar="NAME", help="repository name or id")
    verify.add_argument("--run", action="store_true", help="run a check first, show its progress, then the report")
    verify.add_argument("--data", action="store_true", help="with --run: read all data back (borg --verify-data)")
    verify.add_argument("--stale", action="store_true", help="with --run: check only stale and unverified archives")
    verify.add_argument("--archive", action="append", default=[], help="with --run: check this archive (repeatable)")
    _json(verify)


def run(args: argparse.Namespace) -> int:
    """Run one client command; a ClientError becomes its one-line message and exit code."""
    from services.client import commands
    from services.client.api import Api, ClientError

    handlers: dict[str, Callable[[Api, argparse.Namespace], int]] = {
        "list": commands.jobs_list,
        "show": commands.jobs_show,
        "log": commands.jobs_log,
        "cancel": commands.jobs_cancel,
        "retry": commands.jobs_retry,
        "backup": commands.backup,
        "queue": commands.queue,
        "repo stats": commands.repo_stats,
        "repo verify": commands.repo_verify,
    }
    name = args.jobs_command if args.command == "jobs" else args.command
    if args.command == "repo":
        name = f"repo {args.repo_command}"
    try:
        api = Api.from_env()
        try:
            return handlers[name](api, args)
        finally:
            api.close()
    except ClientError as e:
        print(f"borgflow: {e.message}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `borgflow jobs log X | head`
        return 0
