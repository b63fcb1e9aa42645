"""Fixtures for running the executor for real: a private nats-server (from tests/conftest.py),
real borg on repositories under tmp_path, and a tiny HTTP server standing in for the api's
secret endpoint. Waiting is done on events, with deadlines; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from services.executor.app import run
from services.executor.config import ExecutorOptions
from shared import bus, ids
from shared.config import Settings, default_borg_bin
from shared.events import (
    TERMINAL,
    Estimate,
    JobLog,
    JobProgress,
    JobQueued,
    JobSent,
    JobSpec,
    LogLine,
    PlanRef,
    Progress,
    RepositoryRef,
    SentData,
    decode,
    utcnow,
)
from shared.jobs import JobView
from shared.streams import job_subject
from shared.testing import NatsServer

AGENT = "a1"
TOKEN = "agent-token-for-tests"
PASSPHRASE = "correct horse battery staple 7f3a"

ROOT = Path(__file__).resolve().parents[2]
TERMINAL_EVENTS = {f"job.{s.value}" for s in TERMINAL}


# --------------------------------------------------------------------------- the api's secret endpoint


@dataclass
class SecretServer:
    """GET /api/jobs/{id}/secret → {"passphrase": ...}, 401 without the right bearer token;
    GET /api/tokens/self says the token is agent a1's.

    While `unavailable` > 0 it answers 503 (with `retry_after` as Retry-After, if set) and
    counts down, as the api does while its database or NATS restarts.
    """

    passphrases: dict[str, str | None] = field(default_factory=dict)
    requests: list[tuple[str, bool]] = field(default_factory=list)
    url: str = ""
    unavailable: int = 0
    retry_after: str | None = None


@pytest.fixture
def secret_server() -> Iterator[SecretServer]:
    state = SecretServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            authorized = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            if parts == ["api", "tokens", "self"]:  # the executor asks once what its token is
                if authorized:
                    self._answer(200, {"id": "t1", "name": "a1", "role": "agent", "agent": AGENT})
                else:
                    self._answer(401, {"detail": "bad token"})
                return
            job_id = parts[2] if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "secret" else ""
            state.requests.append((job_id, authorized))
            if state.unavailable > 0:
                state.unavailable -= 1
                headers = {"Retry-After": state.retry_after} if state.retry_after is not None else {}
                self._answer(503, {"detail": "the database is restarting"}, headers)
            elif not authorized:
                self._answer(401, {"detail": "bad token"})
            elif job_id not in state.passphrases:
                self._answer(404, {"detail": "no such job"})
            else:
                self._answer(200, {"passphrase": state.passphrases[job_id]})

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    # A short poll interval: shutdown() waits for the next poll (0.5 s by default).
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------- borg, for setup and checks


def _person_env(data_dir: Path, passphrase: str | None = None) -> dict[str, str]:
    """borg's environment as a person would set it (not the executor's code)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "BORG_BASE_DIR": str(data_dir / "borg"),
        "BORG_EXIT_CODES": "modern",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "TZ": "UTC",
    }
    if passphrase is not None:
        env["BORG_PASSPHRASE"] = passphrase
    return env


async def borg(*args: str, data_dir: Path, passphrase: str | None = None) -> tuple[int, str, str]:
    """Run real borg the way a person would, with its own environment (not the executor's code)."""
    env = _person_env(data_dir, passphrase)
    proc = await asyncio.create_subprocess_exec(
        default_borg_bin(),
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return int(proc.returncode or 0), out.decode(), err.decode()


def make_source(root: Path) -> Path:
    """A small tree to back up: a few dirs of text files and one file borg must skip."""
    src = root / "src"
    for d in range(3):
        (src / f"dir{d}").mkdir(parents=True)
        for f in range(10):
            (src / f"dir{d}" / f"file{f}.txt").write_text(f"dir {d} file {f}\n" * 50)
    (src / "big.bin").write_bytes(os.urandom(256 * 1024))
    (src / "scratch.tmp").write_text("not wanted\n")
    return src


async def archive_names(ex: Executor, repo: RepositoryRef, *, checkpoints: bool = False) -> list[str]:
    """The archives `borg list` shows (with checkpoint archives when asked), oldest first."""
    flags = ["--consider-checkpoints"] if checkpoints else []
    rc, out, err = await borg("list", "--json", *flags, repo.location, data_dir=ex.tmp_path / "me")
    assert rc == 0, err
    return [a["name"] for a in json.loads(out)["archives"]]


@dataclass(frozen=True)
class Template:
    """A small unencrypted repository, made once per session and copied by the tests that need one.

    Archives t-1, t-2, t-3 (timestamps a day apart) of the tree `src` (archived as `src/...`).
    t-1 also holds `src/only-in-t1.bin`, 64 KiB of random data no other archive has, so
    deleting t-1 and compacting frees space.
    """

    src: Path
    repo: Path
    archives: tuple[str, ...] = ("t-1", "t-2", "t-3")
    only_in_first: str = "src/only-in-t1.bin"


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("template")
    src = make_source(root)
    (src / "empty.txt").write_bytes(b"")
    (src / "dir0" / "deeper" / "deepest").mkdir(parents=True)
    (src / "dir0" / "deeper" / "deepest" / "note.md").write_text("# deep\n")
    (src / "link").symlink_to("dir0/file0.txt")
    only = root / Template.only_in_first
    only.write_bytes(os.urandom(64 * 1024))
    repo = root / "repo"
    env = _person_env(root / "me")

    def run(*args: str) -> None:
        done = subprocess.run([default_borg_bin(), *args], env=env, cwd=root, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr.decode()

    run("init", "--encryption=none", str(repo))
    for day, name in enumerate(Template.archives, 1):
        run("create", f"--timestamp=2026-01-0{day}T00:00:00", f"{repo}::{name}", "src")
        only.unlink(missing_ok=True)
    return Template(src=src, repo=repo)


def make_endless_source(root: Path) -> Path:
    """A tree borg reads for many minutes: one sparse file of 1 TiB (zeros, no disk used)."""
    src = root / "endless"
    src.mkdir()
    with open(src / "zeros.img", "wb") as f:
        f.truncate(1 << 40)
    return src


def job_log(ex: Executor, job_id: str) -> list[LogLine]:
    """Every log line the job published, in order."""
    events = [decode(m.data) for m in ex.seen if m.subject == f"borgflow.logs.{job_id}"]
    return [line for e in events if isinstance(e, JobLog) for line in e.data.lines]


def job_progress(ex: Executor, job_id: str) -> list[Progress]:
    """Every progress event the job published, in order."""
    events = [decode(m.data) for m in ex.seen if m.subject == f"borgflow.progress.{job_id}"]
    return [e.data for e in events if isinstance(e, JobProgress)]


# --------------------------------------------------------------------------- the executor under test


@dataclass
class Executor:
    """The executor running as a task against the test's nats-server, and ways to talk to it."""

    js: JetStreamContext
    nc: NATS
    settings: Settings
    options: ExecutorOptions
    secrets: SecretServer
    tmp_path: Path
    seen: list[Msg] = field(default_factory=list)
    repo_passphrases: dict[str, str | None] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(run(self.settings, self.stop, options=self.options))

    async def halt(self, timeout: float = 10.0) -> None:
        if self.task is None:
            return
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)
        self.task = None

    def repository(
        self, name: str = "repo", *, has_passphrase: bool = True, passphrase: str = PASSPHRASE
    ) -> RepositoryRef:
        """A repository snapshot under tmp_path; the secret server knows `passphrase` for its jobs."""
        repo = RepositoryRef(
            id=ids.new_id(),
            name=name,
            location=str(self.tmp_path / name),
            agent=AGENT,
            has_passphrase=has_passphrase,
        )
        self.repo_passphrases[repo.id] = passphrase if has_passphrase else None
        return repo

    def plan(self, repo: RepositoryRef, paths: list[str], *, name: str = "daily", **kw: Any) -> PlanRef:
        return PlanRef(id=ids.new_id(), name=name, repository_id=repo.id, paths=paths, exclude=["*.tmp"], **kw)

    def copy_of(self, template: Template, name: str = "trepo") -> RepositoryRef:
        """An unencrypted repository of this test: a copy of the session's template."""
        shutil.copytree(template.repo, self.tmp_path / name, symlinks=True)
        return self.repository(name, has_passphrase=False)

    def spec(
        self,
        type_: str,
        repo: RepositoryRef | None = None,
        plan: PlanRef | None = None,
        *,
        agent: str = AGENT,
        archive: str | None = None,
        estimate: Estimate | None = None,
        **options: Any,
    ) -> JobSpec:
        job_id = ids.new_id()
        if repo is not None:
            # What the api would answer for this job: its repository's passphrase.
            self.secrets.passphrases[job_id] = self.repo_passphrases.get(repo.id)
        return JobSpec(
            id=job_id,
            type=type_,
            agent=agent,
            created_at=utcnow(),
            repository_id=repo.id if repo else None,
            repository=repo,
            plan_id=plan.id if plan else None,
            plan=plan,
            archive=archive,
            estimate=estimate,
            options=options,
        )

    async def send(self, spec: JobSpec, *, agent: str | None = None) -> int:
        """Queue the job and send it to an agent, as the api and the dispatcher would."""
        queued = await bus.publish(self.js, JobQueued(job_id=spec.id, data=spec))
        sent = await bus.publish(
            self.js,
            JobSent(job_id=spec.id, data=SentData(agent=agent or spec.agent)),
            expect_last_seq=queued.seq,
        )
        return int(sent.seq)

    @property
    def state_file(self) -> Path:
        """The executor's record of the jobs it holds (services/executor/records.py)."""
        return Path(self.settings.data_dir) / f"executor-{self.settings.agent}" / "running.json"

    def on_record(self) -> dict[str, Any]:
        """The jobs the state file holds now, as plain JSON."""
        if not self.state_file.exists():
            return {}
        jobs: dict[str, Any] = json.loads(self.state_file.read_bytes())["jobs"]
        return jobs

    async def start_process(self) -> asyncio.subprocess.Process:
        """The executor as its own process (`python -m services.executor`), as an agent runs it."""
        env = {
            **os.environ,
            "BORGFLOW_NATS_URL": self.settings.nats_url,
            "BORGFLOW_DATA_DIR": self.settings.data_dir,
            "BORGFLOW_API_URL": self.settings.api_url,
            "BORGFLOW_TOKEN": TOKEN,
            "BORGFLOW_HEARTBEAT_S": str(self.settings.heartbeat_interval_s),
            "BORGFLOW_CANCEL_GRACE_S": str(self.options.cancel_grace_s),
        }
        # Its own log, for when a test fails.
        out = await asyncio.to_thread(open, self.tmp_path / "executor-process.log", "ab")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.executor",
                "--agent",
                self.settings.agent,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                cwd=ROOT,
            )
        finally:
            out.close()

    async def outcome(self, job_id: str, timeout: float = 20.0) -> JobView:
        """Wait until the job has a terminal event, then return the job as its events make it."""
        await wait_for_event(self.js, job_subject(job_id), lambda t: t in TERMINAL_EVENTS, timeout)
        view = await bus.load_job(self.js, job_id)
        assert view is not None
        return view

    async def run_job(self, spec: JobSpec, timeout: float = 20.0) -> JobView:
        await self.send(spec)
        return await self.outcome(spec.id, timeout)


async def wait_for_event(js: JetStreamContext, subject: str, want: Callable[[str | None], bool], timeout: float) -> Msg:
    """The first message on `subject` (replayed from the start of its stream) whose type `want` accepts."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no matching event on {subject} within {timeout}s")
            try:
                msg = await sub.next_msg(timeout=left)
            except TimeoutError:
                continue
            kind = json.loads(msg.data).get("type")
            if want(kind):
                return msg
    finally:
        await sub.unsubscribe()


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `check` every 20 ms until it holds; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.02)


async def job_types(js: JetStreamContext, job_id: str) -> list[str]:
    return [e.type for e, _ in await bus.job_events(js, job_id)]


async def stream_messages(js: JetStreamContext, stream: str) -> list[bytes]:
    """Every message a stream still holds."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    out: list[bytes] = []
    if info.state.messages == 0:
        return out
    sub = await js.subscribe(info.config.subjects[0], stream=stream, ordered_consumer=True)  # type: ignore[index]
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            out.append(msg.data)
            if msg.metadata.sequence.stream >= last:
                return out
    finally:
        await sub.unsubscribe()


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    nats_server: NatsServer, nc: NATS, js: JetStreamContext, tmp_path: Path, secret_server: SecretServer
) -> AsyncIterator[Executor]:
    """An executor for agent a1, not started yet; every message under borgflow.> is recorded."""
    settings = Settings(
        nats_url=nats_server.url,
        api_url=secret_server.url,
        token=TOKEN,
        agent=AGENT,
        data_dir=str(tmp_path / "agent"),
        heartbeat_interval_s=0.5,
    )
    options = ExecutorOptions(
        cancel_grace_s=1.0, progress_interval_s=0.2, shutdown_timeout_s=15.0, cleanup_lock_wait_s=1
    )
    ex = Executor(js=js, nc=nc, settings=settings, options=options, secrets=secret_server, tmp_path=tmp_path)

    async def record(msg: Msg) -> None:
        ex.seen.append(msg)

    tap = await nc.subscribe("borgflow.>", cb=record)
    yield ex
    await ex.halt()
    await tap.unsubscribe()


@pytest_asyncio.fixture(loop_scope="session")
async def executor(harness: Executor) -> Executor:
    """The executor for agent a1, running."""
    harness.start()
    return harness


@pytest_asyncio.fixture(loop_scope="session")
async def source(tmp_path: Path) -> Path:
    return make_source(tmp_path)
