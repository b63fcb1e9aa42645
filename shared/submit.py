"""Accepting a job: validate a POST /api/jobs body, snapshot its configuration, apply the
plan's queue behaviour, append `job.queued`. Every trigger goes through here (api, cli,
schedules, retries, chains), so the rules hold whoever asks.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import nats.errors
from msgspec import Meta
from nats.js import JetStreamContext

from shared import bus, direct, ids, readmodel, tracing, verification
from shared.config import DebianPackage
from shared.db import TRANSIENT, Conn
from shared.events import (
    JOB_TYPES,
    Estimate,
    JobQueued,
    JobSpec,
    JobType,
    PlanRef,
    RepositoryRef,
    Retention,
    utcnow,
)
from shared.exceptions import BorgflowError
from shared.jobs import evolve
from shared.streams import ENDED_EVENTS, JOBS, job_subject

log = logging.getLogger(__name__)

QUEUED_BEHIND_MESSAGE = "Backup queued — will start when the current backup completes"
SECRET_KEYS = ("passphrase", "password", "secret", "token")
# Job types that act on an agent, not on a repository or plan.
AGENT_TYPES = frozenset({"ping", "package_install", "update_borg", "update_agent"})
MASK = "********"


class InvalidRequest(BorgflowError):
    """Bad input: `field` names what is wrong (answered as 422)."""

    def __init__(self, field: str, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail
        self.status = status


class NotFound(InvalidRequest):
    """A referenced thing does not exist (answered as 404 for a path id, 422 for a body field)."""


class Rejected(BorgflowError):
    """The request is valid but the system's rules refuse it now (answered as 409)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class QueueingUnconfirmed(BorgflowError, TimeoutError):
    """`job.queued` was sent but NATS did not confirm it in time: it may have landed, or land later.

    The job has its id all the same. Appending it again with the same message id lands
    it once (JetStream's de-duplication): a retry with the same Idempotency-Key does.
    Still a TimeoutError, so a caller that handled the bare timeout carries on as before.
    """

    def __init__(self, spec: JobSpec) -> None:
        super().__init__(f"job.queued of job {spec.id} was sent but not confirmed in time")
        self.spec = spec


# --------------------------------------------------------------------------- request shapes


class JobRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of POST /api/jobs."""

    type: JobType
    plan_id: str | None = None
    repository_id: str | None = None
    archive: str | None = None
    agent: str | None = None
    options: dict[str, Any] = {}
    priority: int = 0
    trigger: Literal["manual", "cli", "api", "hook"] = "manual"


class _Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class RestoreOptions(_Options):
    destination: str
    paths: list[str] = []
    strip_components: int = 0


class RestoreCheckOptions(_Options):
    paths: list[str] = []


class CheckOptions(_Options):
    repository_only: bool = False
    verify_data: bool = False
    archives_only: bool = False
    max_duration: int | None = None
    archives: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=1000)]],
        Meta(max_length=10000, description="verify only these archives (default: all)"),
    ] = []
    stale_only: Annotated[
        bool,
        Meta(
            description="verify only the archives whose last verification is older than the repository's "
            "keep_verified_days, or that were never verified (resolved into `archives` when queued)"
        ),
    ] = False


class PruneOptions(_Options):
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: str | None = None


# borg 1.4's encryption modes (`borg init --encryption`).
Encryption = Literal[
    "none",
    "authenticated",
    "authenticated-blake2",
    "repokey",
    "repokey-blake2",
    "keyfile",
    "keyfile-blake2",
]


class InitOptions(_Options):
    encryption: Encryption = "repokey-blake2"
    append_only: bool = False


class EmptyOptions(_Options):
    pass


class PingOptions(_Options):
    pass


class DatabaseTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The database a dump is restored into; `password` is a secret, kept apart from the job."""

    host: Annotated[str, Meta(min_length=1, max_length=255)]
    port: Annotated[int, Meta(ge=1, le=65535)]
    user: Annotated[str, Meta(min_length=1, max_length=255)]
    database: Annotated[str, Meta(min_length=1, max_length=255)]
    password: str | None = None


class RestoreDatabaseOptions(_Options):
    database: Annotated[str, Meta(min_length=1, max_length=255, description="the dumped database's name")]
    target: DatabaseTarget


# rclone's --bwlimit: a rate with an optional unit (B K M G T P), upload:download, or "off".
BWLIMIT_PATTERN = r"^(off|[0-9]+(\.[0-9]+)?[BbKkMmGgTtPp]?(:[0-9]+(\.[0-9]+)?[BbKkMmGgTtPp]?)?)$"
Bwlimit = Annotated[
    str, Meta(pattern=BWLIMIT_PATTERN, description="rclone's bandwidth limit in bytes per second, e.g. 10M")
]


class S3SyncOptions(_Options):
    remote: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=1000,
            pattern=r"^[^-]",
            description="an rclone remote and path on the agent (`s3:bucket/borg`, or a local directory)",
        ),
    ]
    bwlimit: Bwlimit | None = None


class PackageInstallOptions(_Options):
    packages: Annotated[
        list[DebianPackage],
        Meta(min_length=1, max_length=100, description="Debian packages, each on the settings' package_allow_list"),
    ]


# A public PEP 440 version in its canonical form (1.4.5, 1.4.0rc1, 2.0.0b14, 1.2.post1): what pip
# asks an index for. Anything else (ranges, local versions, a shell word) is not one.
PEP_440 = r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?$"
Pep440Version = Annotated[
    str, Meta(pattern=PEP_440, max_length=64, description="a PEP 440 version of borgbackup (1.4.5)")
]
BorgflowVersion = Annotated[
    str,
    Meta(
        pattern=PEP_440,
        max_length=64,
        description="a PEP 440 version of borgflow (default: the newest the agent's source has)",
    ),
]


class UpdateBorgOptions(_Options):
    version: Pep440Version


class UpdateAgentOptions(_Options):
    version: BorgflowVersion | None = None


OPTIONS: dict[str, type[_Options]] = {
    "backup": EmptyOptions,
    "restore": RestoreOptions,
    "restore_check": RestoreCheckOptions,
    "check": CheckOptions,
    "prune": PruneOptions,
    "compact": EmptyOptions,
    "delete_archive": EmptyOptions,
    "init": InitOptions,
    "ping": PingOptions,
    "s3_sync": S3SyncOptions,
    "package_install": PackageInstallOptions,
    "update_borg": UpdateBorgOptions,
    "update_agent": UpdateAgentOptions,
    "restore_pg": RestoreDatabaseOptions,
    "restore_mysql": RestoreDatabaseOptions,
    "plugin_test": EmptyOptions,
}
assert set(OPTIONS) == set(JOB_TYPES)


def parse_request(body: Any) -> JobRequest:
    """A JobRequest from decoded JSON, or InvalidRequest naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("body", "the body must be a JSON object")
    if "type" not in body:
        raise InvalidRequest("type", f"type is required: one of {', '.join(JOB_TYPES)}")
    if body["type"] not in JOB_TYPES:
        raise InvalidRequest("type", f"unknown job type {body['type']!r}: one of {', '.join(JOB_TYPES)}")
    try:
        return msgspec.convert(body, JobRequest)
    except msgspec.ValidationError as e:
        raise InvalidRequest(field_of(e), str(e)) from e


def field_of(error: msgspec.ValidationError, prefix: str = "") -> str:
    """The field a msgspec validation error names (`... - at `$.options.paths``)."""
    text = str(error)
    if "at `$." in text:
        path = text.rsplit("at `$.", 1)[1].rstrip("`")
        return prefix + path.split("[")[0]
    if "missing required field `" in text:
        return prefix + text.split("missing required field `", 1)[1].split("`")[0]
    if "unknown field `" in text:
        return prefix + text.split("unknown field `", 1)[1].split("`")[0]
    return prefix.rstrip(".") or "body"


def readable_problem(field: str, message: str) -> str:
    """msgspec's words, unless they are a regular expression nobody should have to read."""
    if "matching regex" not in message:
        return message
    if field.rsplit(".", 1)[-1] == "version":
        return "must be a version such as 1.4.5 (PEP 440: digits and dots, optionally a1, b2, rc1, .post1, .dev1)"
    return "is not in the form this field takes (docs/api.md describes it)"


def _options(req: JobRequest) -> _Options:
    try:
        opts = msgspec.convert(req.options, OPTIONS[req.type])
    except msgspec.ValidationError as e:
        field = field_of(e, "options.")
        raise InvalidRequest(field, f"{field}: {readable_problem(field, str(e).split(' - at ')[0])}") from e
    if isinstance(opts, RestoreOptions):
        check_destination(opts.destination)
        _check_paths(opts.paths)
    if isinstance(opts, RestoreCheckOptions):
        _check_paths(opts.paths)
    if isinstance(opts, RestoreDatabaseOptions):
        check_database_name(opts.database, "options.database")
    if isinstance(opts, CheckOptions):
        if opts.max_duration is not None and opts.max_duration <= 0:
            raise InvalidRequest("options.max_duration", "options.max_duration must be a positive number of seconds")
        if opts.archives_only and (opts.repository_only or opts.max_duration is not None):
            raise InvalidRequest(
                "options.archives_only",
                "options.archives_only cannot go with repository_only or max_duration (a partial check "
                "covers the repository only)",
            )
        if opts.verify_data and (opts.repository_only or opts.max_duration is not None):
            raise InvalidRequest(
                "options.verify_data",
                "options.verify_data needs the archive check: it cannot go with repository_only or max_duration",
            )
        for name in ("archives", "stale_only"):
            if getattr(opts, name) and (opts.repository_only or opts.max_duration is not None):
                raise InvalidRequest(
                    f"options.{name}",
                    f"options.{name} needs the archive check: it cannot go with repository_only or max_duration",
                )
        if opts.stale_only and opts.archives:
            raise InvalidRequest("options.stale_only", "options.stale_only picks the archives: give it or archives")
    if isinstance(opts, PruneOptions):
        keeps = [v for k, v in msgspec.structs.asdict(opts).items() if k.startswith("keep_") and v]
        if not keeps and req.plan_id is None:
            raise InvalidRequest("options", "a prune needs at least one keep rule (keep_daily, ...) or a plan_id")
    return opts


def check_destination(dest: str) -> None:
    if not dest or not posixpath.isabs(dest):
        raise InvalidRequest("options.destination", "options.destination must be an absolute path")
    if ".." in dest.split("/"):
        raise InvalidRequest("options.destination", "options.destination must not contain '..'")


def _check_paths(paths: list[str]) -> None:
    for p in paths:
        if not p or ".." in p.split("/") or "\x00" in p:
            raise InvalidRequest("options.paths", f"options.paths: {p!r} is not a path inside the archive")


def target_password(req: JobRequest) -> str | None:
    """A database restore's target password, as given (the job keeps only a mask of it)."""
    target = req.options.get("target") if req.type in ("restore_pg", "restore_mysql") else None
    password = target.get("password") if isinstance(target, dict) else None
    return password if isinstance(password, str) else None


def check_database_name(name: str, field: str) -> None:
    """A database name is a file name in the archive (`borgflow-dumps/<kind>/<name>.dump`)."""
    if "/" in name or "\x00" in name or name in (".", "..") or name.startswith("-"):
        raise InvalidRequest(field, f"{field}: {name!r} cannot be a database's dump file name")


def mask_secrets(options: dict[str, Any]) -> dict[str, Any]:
    """Options as they may be shown: any secret-looking value masked."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if any(s in k.lower() for s in SECRET_KEYS):
            out[k] = MASK
        elif isinstance(v, dict):
            out[k] = mask_secrets(v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- configuration


async def load_repository(conn: Conn, repo_id: str, field: str = "repository_id") -> RepositoryRef:
    row = await conn.fetchrow(
        "SELECT id, name, location, agent, passphrase_enc IS NOT NULL AS has_passphrase, project,"
        " storage_low_percent, EXISTS (SELECT 1 FROM repository_stats s WHERE s.repository_id = r.id"
        " AND s.figures->>'archives' IS NOT NULL) AS archives_counted FROM repositories r WHERE id = $1",
        repo_id,
    )
    if row is None:
        raise NotFound(field, f"{field}: no repository with id {repo_id!r}")
    return RepositoryRef(
        id=row["id"],
        name=row["name"],
        location=row["location"],
        agent=row["agent"],
        has_passphrase=row["has_passphrase"],
        storage_low_percent=row["storage_low_percent"],
        archives_counted=row["archives_counted"],
    )


async def load_plan(conn: Conn, plan_id: str, field: str = "plan_id") -> PlanRef:
    row = await conn.fetchrow("SELECT config FROM plans WHERE id = $1", plan_id)
    if row is None:
        raise NotFound(field, f"{field}: no plan with id {plan_id!r}")
    return msgspec.convert(row["config"], PlanRef)


async def project_of(conn: Conn, repo_id: str | None, plan_id: str | None) -> str:
    if plan_id:
        return str(await conn.fetchval("SELECT project FROM plans WHERE id = $1", plan_id) or "default")
    if repo_id:
        return str(await conn.fetchval("SELECT project FROM repositories WHERE id = $1", repo_id) or "default")
    return "default"


# --------------------------------------------------------------------------- accepting


class Origin(msgspec.Struct, kw_only=True):
    """Who and what asks for a job, beyond the request body."""

    requested_by: str | None = None
    trigger: str | None = None
    schedule_id: str | None = None
    retry_of: str | None = None
    parent_id: str | None = None
    attempt: int = 1
    job_id: str | None = None
    created_at: datetime | None = None
    msg_id: str | None = None


async def build_spec(conn: Conn, req: JobRequest, origin: Origin) -> JobSpec:
    """Validate `req` against the configuration and snapshot what the job will run with."""
    opts = _options(req)
    repo: RepositoryRef | None = None
    plan: PlanRef | None = None
    if req.type == "backup" and not req.plan_id:
        raise InvalidRequest("plan_id", "plan_id is required for a backup")
    if req.plan_id:
        plan = await load_plan(conn, req.plan_id)
        repo = await load_repository(conn, plan.repository_id, "plan_id")
        if req.repository_id and req.repository_id != plan.repository_id:
            raise InvalidRequest("repository_id", "repository_id does not match the plan's repository")
    elif req.type not in AGENT_TYPES:
        if not req.repository_id:
            raise InvalidRequest("repository_id", f"repository_id is required for a {req.type} job")
        repo = await load_repository(conn, req.repository_id)
    if req.type == "plugin_test" and not req.plan_id:
        raise InvalidRequest("plan_id", "plan_id is required for a plugin_test job")
    if req.type in ("restore", "restore_check", "delete_archive", "restore_pg", "restore_mysql") and not req.archive:
        raise InvalidRequest("archive", f"archive is required for a {req.type} job")
    agent = req.agent or (plan.agent if plan and plan.agent else None) or (repo.agent if repo else None)
    if not agent:
        raise InvalidRequest("agent", f"agent is required for a {req.type} job")
    if isinstance(opts, PackageInstallOptions):
        await check_allowed(conn, opts.packages)
    if isinstance(opts, CheckOptions) and opts.stale_only and repo is not None:
        report = await verification.load_report(conn, repo.id, utcnow())
        opts = msgspec.structs.replace(opts, archives=verification.needing_check(report))
    options = msgspec.to_builtins(opts)
    if (
        isinstance(opts, PruneOptions)
        and plan is not None
        and not any(v for k, v in options.items() if k.startswith("keep_"))
    ):
        options = {k: v for k, v in msgspec.to_builtins(plan.retention).items() if v is not None}
        if not options:
            raise InvalidRequest("plan_id", "the plan has no retention rules: give keep rules in options")
    options = {k: v for k, v in options.items() if v not in (None, [], False)} if req.type != "init" else options
    job_id = origin.job_id or ids.new_id()
    return JobSpec(
        id=job_id,
        type=req.type,
        agent=agent,
        project=await project_of(conn, repo.id if repo else None, plan.id if plan else None),
        repository_id=repo.id if repo else None,
        plan_id=plan.id if plan else None,
        archive=req.archive,
        trigger=origin.trigger or req.trigger,
        requested_by=origin.requested_by,
        priority=req.priority,
        retry_of=origin.retry_of,
        parent_id=origin.parent_id,
        schedule_id=origin.schedule_id,
        attempt=origin.attempt,
        options=mask_secrets(options),
        created_at=origin.created_at or utcnow(),
        repository=repo,
        plan=plan,
        estimate=await estimate_for(conn, plan) if plan is not None and req.type == "backup" else None,
    )


async def check_allowed(conn: Conn, packages: list[str]) -> None:
    """Every package on the settings' package_allow_list, else 400 naming options.packages.

    Read from Postgres, where PUT /api/settings writes first: a package just allowed (or
    struck off) counts from the next submission on.
    """
    stored = await conn.fetchval("SELECT value FROM settings WHERE key = 'system'")
    listed = stored.get("package_allow_list") if isinstance(stored, dict) else None
    allowed = {str(p) for p in listed} if isinstance(listed, list) else set()
    refused = [p for p in packages if p not in allowed]
    if refused:
        raise InvalidRequest(
            "options.packages",
            f"options.packages: {', '.join(refused)} not on the settings' package_allow_list "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'}); an admin adds packages with PUT /api/settings",
            status=400,
        )


async def estimate_for(conn: Conn, plan: PlanRef) -> Estimate | None:
    """Size and duration of the plan's last successful backup of the same paths and excludes.

    A backup records what it covered (`result.details.sources`); one of other paths (the
    plan was changed since) or that does not say is no basis for a percent: none is better
    than a made-up one.
    """
    sources = {"paths": list(plan.paths), "exclude": list(plan.exclude)}
    row = await conn.fetchrow(
        "SELECT id, doc->'result'->'stats' AS stats, doc->>'duration_s' AS duration,"
        " doc->'result'->>'archive' AS archive FROM jobs"
        " WHERE plan_id = $1 AND type = 'backup' AND status IN ('completed', 'warning')"
        " AND doc->'result'->'details'->'sources' = $2::jsonb ORDER BY finished_at DESC LIMIT 1",
        plan.id,
        sources,
    )
    if row is None or not row["stats"]:
        return None
    stats = row["stats"]
    return Estimate(
        nfiles=stats.get("nfiles"),
        original_size=stats.get("original_size"),
        duration_s=float(row["duration"]) if row["duration"] else None,
        job_id=row["id"],
        archive=row["archive"],
        paths=sources["paths"],
        exclude=sources["exclude"],
    )


async def _plan_gate(conn: Conn, js: JetStreamContext, spec: JobSpec) -> str | None:
    """Apply the plan's queue behaviour to a new backup; returns the message to show, if any."""
    if spec.type != "backup" or spec.plan is None:
        return None
    rows = await conn.fetch(
        "SELECT id, status FROM jobs WHERE plan_id = $1 AND type = 'backup'"
        " AND status IN ('queued', 'sent', 'running') ORDER BY created_at",
        spec.plan.id,
    )
    if rows:
        rows = await _not_ended(js, rows)
    if not rows:
        return None
    plan = spec.plan
    if plan.queue_behavior == "cancel":
        first = rows[0]
        raise Rejected(
            f"a backup of plan {plan.name!r} is already {first['status']} (job {first['id']}); "
            "the plan's queue_behavior is 'cancel', so this one was not queued. "
            "Wait for it to finish, or set queue_behavior to 'queue'."
        )
    waiting = sum(1 for r in rows if r["status"] == "queued")
    if waiting >= plan.max_queue_depth:
        raise Rejected(
            f"queue full: plan {plan.name!r} already has {waiting} backups waiting "
            f"(max_queue_depth {plan.max_queue_depth})"
        )
    return QUEUED_BEHIND_MESSAGE


async def _not_ended(js: JetStreamContext, rows: list[Any]) -> list[Any]:
    """The rows whose job has not ended on the stream.

    The read model trails the stream by the projector's lag: a client that saw its backup
    complete (GET /api/jobs/{id} reads the stream) and queues the next one at once must not
    be refused for a backup that is over. One direct get per active backup of the plan (a
    few at most); a row the stream cannot confirm now is trusted as it is.
    """
    nc = bus.nc_of(js)
    out = []
    for row in rows:
        try:
            last = await direct.last(nc, JOBS, job_subject(row["id"]))
        except Exception:  # NATS slow or away: the row stands
            out.append(row)
            continue
        if last is None or last.subject.rsplit(".", 1)[-1] not in ENDED_EVENTS:
            out.append(row)
    return out


async def submit(conn: Conn, js: JetStreamContext, req: JobRequest, origin: Origin | None = None) -> JobSpec:
    """Accept a job: validate, gate by plan, append `job.queued`, write its first row."""
    origin = origin or Origin()
    return await accept(conn, js, await build_spec(conn, req, origin), origin)


async def resubmit(
    conn: Conn, js: JetStreamContext, original: JobSpec, origin: Origin, tried_archive: str | None = None
) -> JobSpec:
    """A job like `original` (a retry): from the current configuration, so a fix made since
    applies; from the original's own snapshot when its plan or repository is gone.

    A backup retry carries `tried_archive`, the name the failed attempt wrote: the
    executor looks for it first and does not back up again when it exists after all.
    """
    req = JobRequest(
        type=original.type,  # type: ignore[arg-type]  # a stored job's type is one of JobRequest's
        plan_id=original.plan_id,
        # With a plan, the plan says which repository (it may have moved since).
        repository_id=None if original.plan_id else original.repository_id,
        # A backup names a new archive from the plan's template; others act on theirs.
        archive=None if original.type == "backup" else original.archive,
        agent=original.agent,
        options=dict(original.options),
        priority=original.priority,
    )
    try:
        spec = await build_spec(conn, req, origin)
    except NotFound:
        log.info("retrying from the job's own snapshot", extra={"retry_of": original.id})
        spec = msgspec.structs.replace(
            original,
            id=origin.job_id or ids.new_id(),
            created_at=origin.created_at or utcnow(),
            trigger=origin.trigger or original.trigger,
            requested_by=origin.requested_by,
            retry_of=origin.retry_of,
            parent_id=origin.parent_id,
            attempt=origin.attempt,
            archive=None if original.type == "backup" else original.archive,
            message=None,
        )
    if original.type == "backup" and tried_archive:
        spec = msgspec.structs.replace(spec, archive=tried_archive)
    return await accept(conn, js, spec, origin)


async def accept(conn: Conn, js: JetStreamContext, spec: JobSpec, origin: Origin) -> JobSpec:
    """Gate by plan, append `job.queued`, write its first row; the job's trace starts here.

    A per-plan advisory lock spans the gate, the append and the row, so two
    concurrent submissions for one plan see each other.
    """
    attributes = {"borgflow.job_id": spec.id, "borgflow.job_type": spec.type, "borgflow.agent": spec.agent}
    with tracing.tracer().start_as_current_span("job.accept", attributes=attributes):
        spec = msgspec.structs.replace(spec, traceparent=tracing.current_traceparent())
        return await _accept(conn, js, spec, origin)


async def _accept(conn: Conn, js: JetStreamContext, spec: JobSpec, origin: Origin) -> JobSpec:
    appended = False
    try:
        async with conn.transaction():
            if spec.plan_id:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "plan:" + spec.plan_id)
            message = await _plan_gate(conn, js, spec)
            if message:
                spec = msgspec.structs.replace(spec, message=message)
            event = JobQueued(job_id=spec.id, data=spec, at=spec.created_at)
            try:
                ack = await bus.publish(js, event, msg_id=origin.msg_id)
            except nats.errors.TimeoutError as e:
                # No answer is not a refusal: the append may be stored (or be, once NATS
                # catches up), so the job is neither failed nor forgotten here.
                raise QueueingUnconfirmed(spec) from e
            # The append is the commit point: from here on the job exists, whatever follows.
            appended = True
            if ack.duplicate:
                log.info("job already queued (duplicate append)", extra={"job_id": spec.id})
            view = evolve(None, event, ack.seq)
            if view is not None and not ack.duplicate:
                await readmodel.insert_new_job(conn, view)
    except TRANSIENT as e:
        if not appended:
            raise
        # The projector writes the row from the stream; failing the request now would
        # make the client submit the job twice.
        log.warning("job queued; its row waits for the projector: %s", type(e).__name__, extra={"job_id": spec.id})
    return spec


async def accept_unplanned(conn: Conn, js: JetStreamContext, specs: list[JobSpec]) -> list[JobSpec]:
    """Accept jobs of no plan together (a batch): their `job.queued` appended at once
    (pipelined, not one round trip each), their rows written in one statement.

    No plan, no queue behaviour to gate: each is accepted exactly as `accept` would.
    Jobs of a plan go through `accept`, one at a time, under its plan's lock.
    """
    if any(s.plan_id for s in specs):
        raise ValueError("jobs of a plan are accepted one at a time (accept)")
    tracer = tracing.tracer()
    traced: list[JobSpec] = []
    for spec in specs:
        attributes = {"borgflow.job_id": spec.id, "borgflow.job_type": spec.type, "borgflow.agent": spec.agent}
        with tracer.start_as_current_span("job.accept", attributes=attributes):
            traced.append(msgspec.structs.replace(spec, traceparent=tracing.current_traceparent()))
    events = [JobQueued(job_id=s.id, data=s, at=s.created_at) for s in traced]
    acks = await asyncio.gather(*(bus.publish(js, e) for e in events))
    views = [evolve(None, e, ack.seq) for e, ack in zip(events, acks, strict=True) if not ack.duplicate]
    try:
        await readmodel.insert_new_jobs(conn, [v for v in views if v is not None])
    except TRANSIENT as e:  # appended: the projector writes the rows from the stream
        log.warning("jobs queued; their rows wait for the projector: %s", type(e).__name__)
    return traced


__all__ = [
    "QUEUED_BEHIND_MESSAGE",
    "InvalidRequest",
    "JobRequest",
    "NotFound",
    "Origin",
    "QueueingUnconfirmed",
    "Rejected",
    "Retention",
    "accept_unplanned",
    "build_spec",
    "check_destination",
    "field_of",
    "mask_secrets",
    "parse_request",
    "resubmit",
    "submit",
]
