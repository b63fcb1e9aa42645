"""Database backups end to end, through `borgflow up`'s public API: a plan with a PostgreSQL and a
MariaDB database backs up, both restore into new databases with the same rows, a dump that fails
leaves no archive, plugin_test passes and fails as it should, and no password is in any event."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from shared.streams import JOBS, LOGS, PROGRESS
from tests.executor.conftest import stream_messages
from tests.support.databases import (
    MY,
    PG,
    drop_mariadb,
    drop_postgres,
    mariadb_database,
    mariadb_rows,
    postgres_database,
    postgres_rows,
    unique,
)
from tests.support.upsystem import UpSystem, borg_list, data_dir, make_source

pytestmark = pytest.mark.slow

PASSPHRASE = "e2e-db-passphrase-5b1d"
# The machine's PostgreSQL trusts 127.0.0.1, so these passwords are sent and ignored: what is
# checked is that they travel only where they must.
PG_PASSWORD = "pg-plan-password-9c4e"
TARGET_PASSWORD = "pg-target-password-77aa"
SECRETS = (PASSPHRASE, PG_PASSWORD, TARGET_PASSWORD)


def forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"=")]


async def every_event(nats_url: str) -> bytes:
    nc = NATS()
    await nc.connect(nats_url)
    try:
        js = nc.jetstream()
        return b"\n".join([m for s in (JOBS, LOGS, PROGRESS) for m in await stream_messages(js, s)])
    finally:
        await nc.close()


def job(system: UpSystem, body: dict[str, Any]) -> dict[str, Any]:
    queued: dict[str, Any] = system.ok("POST", "/api/jobs", body)
    return system.wait_job(queued["id"])


def test_databases_back_up_restore_and_fail_as_they_should(tmp_path: Path) -> None:
    data = data_dir("bf-e2e-db-")
    system = UpSystem(data, tmp_path).start()
    copies: list[tuple[str, str]] = []
    try:
        with postgres_database() as pg_name, mariadb_database() as my_name:
            repo_path = tmp_path / "repo"
            repo = system.ok(
                "POST",
                "/api/repositories",
                {"name": "main", "location": str(repo_path), "agent": "local", "passphrase": PASSPHRASE},
            )
            assert job(system, {"type": "init", "repository_id": repo["id"]})["status"] == "completed"
            databases = [PG | {"database": pg_name, "password": PG_PASSWORD}, MY | {"database": my_name}]
            plan = system.ok(
                "POST",
                "/api/plans",
                {
                    "name": "shop",
                    "repository_id": repo["id"],
                    "paths": [str(make_source(tmp_path / "src", files=10))],
                    "databases": databases,
                },
            )
            assert [d.get("has_password") for d in plan["databases"]] == [True, False]

            tested = job(system, {"type": "plugin_test", "plan_id": plan["id"]})
            assert tested["status"] == "completed", tested.get("error")

            backup = job(system, {"type": "backup", "plan_id": plan["id"]})
            assert backup["status"] == "completed", backup.get("error")
            archive = backup["result"]["archive"]
            dumps = backup["result"]["details"]["dumps"]
            assert set(dumps) == {f"borgflow-dumps/postgresql/{pg_name}.dump", f"borgflow-dumps/mysql/{my_name}.dump"}

            pg_copy, my_copy = unique("pgcopy"), unique("mycopy")
            copies += [("postgresql", pg_copy), ("mysql", my_copy)]
            target = PG | {"database": pg_copy, "password": TARGET_PASSWORD}
            target.pop("kind")
            restored = job(
                system,
                {
                    "type": "restore_pg",
                    "repository_id": repo["id"],
                    "archive": archive,
                    "options": {"database": pg_name, "target": target},
                },
            )
            assert restored["status"] == "completed", restored.get("error")
            assert restored["options"]["target"]["password"] == "********"
            assert postgres_rows(pg_copy) == postgres_rows(pg_name)
            target = MY | {"database": my_copy}
            target.pop("kind")
            restored = job(
                system,
                {
                    "type": "restore_mysql",
                    "repository_id": repo["id"],
                    "archive": archive,
                    "options": {"database": my_name, "target": target},
                },
            )
            assert restored["status"] == "completed", restored.get("error")
            assert mariadb_rows(my_copy) == mariadb_rows(my_name)

            # A database that is not there: plugin_test names it, a backup fails and leaves no archive.
            wrong = [*databases, PG | {"database": pg_name + "_missing"}]
            body = {"name": "broken", "repository_id": repo["id"], "paths": plan["paths"], "databases": wrong}
            bad = system.ok("POST", "/api/plans", body)
            tested = job(system, {"type": "plugin_test", "plan_id": bad["id"]})
            assert tested["status"] == "failed"
            assert f"database postgresql/{pg_name}_missing" in tested["error"]["message"]
            failed = job(system, {"type": "backup", "plan_id": bad["id"]})
            assert failed["status"] == "failed" and failed["error"]["kind"] == "dump_failed"
            assert f'database "{pg_name}_missing" does not exist' in failed["error"]["message"]
            assert borg_list(repo_path, PASSPHRASE, tmp_path / "borg-base") == [archive]

            env = dict(line.split("=", 1) for line in (data / "borgflow.env").read_text().splitlines())
            seen = asyncio.run(every_event(env["BORGFLOW_NATS_URL"]))
            assert archive.encode() in seen  # the streams were read
            logs = b"".join(
                system.http.get(f"/api/jobs/{j['id']}/log").content for j in (tested, failed, backup, restored)
            )
            for secret in SECRETS:
                for form in forms(secret):
                    assert form not in seen and form not in logs, f"{secret!r} is in the events or a job log"
                assert secret not in system.log.read_text()
    finally:
        for kind, name in copies:
            drop_postgres(name) if kind == "postgresql" else drop_mariadb(name)
        assert system.stop() == 0, system.log.read_text()[-2000:]
