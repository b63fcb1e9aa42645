"""`borgflow secrets rotate`, the real command against the test database, while the api serves."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import sys
from pathlib import Path

import asyncpg
import msgspec
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps
from shared.config import Settings
from shared.events import JobSent, SentData
from shared.exceptions import SecretKeyNotHeld
from shared.secretbox import Keyring, key_label, new_key, parse_key, sealed_key_label
from shared.secretkeys import KeySource, write_key_file
from shared.secretrows import PASSPHRASE, seal
from tests.api.conftest import SECRET_KEY, Client, advance, auth, make_repository
from tests.support.apiclient import served_api

SECRETS = ["rotate me one", "rotate me two", "rotate me three"]


async def borgflow(*args: str, database_url: str, **env: str) -> tuple[int, str, str]:
    """The `borgflow` command with only what these tests give it of borgflow's settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BORGFLOW_")}
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "borgflow"),
        *args,
        env={**base, "BORGFLOW_DATABASE_URL": database_url, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sealed_rows(pool: asyncpg.Pool) -> dict[str, bytes]:
    rows = await pool.fetch("SELECT id, passphrase_enc FROM repositories WHERE passphrase_enc IS NOT NULL")
    return {r["id"]: r["passphrase_enc"] for r in rows}


def opens_with(ring: Keyring, rows: dict[str, bytes]) -> dict[str, str]:
    return {i: ring.open(s, PASSPHRASE.context(i), PASSPHRASE.what(i)) for i, s in rows.items()}


async def test_rotate_with_the_key_file_while_the_api_runs(
    settings: Settings,
    pool: asyncpg.Pool,
    nc: NATS,
    js: JetStreamContext,
    agent_token: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    live = msgspec.structs.replace(settings, secret_key=None, data_dir=str(data))
    async with served_api(live, ApiDeps(pool=pool, nc=nc), auth()) as client:
        key_path = data / "secret-key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600  # the api made it
        old = KeySource.of(live).keyring()
        jobs = {}
        for i, secret in enumerate(SECRETS):
            repo = await make_repository(client, f"r{i}", passphrase=secret)
            jid = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo["id"]})).json()["id"]
            await advance(js, pool, jid, JobSent(job_id=jid, data=SentData(agent="local")))
            jobs[jid] = secret

        code, out, err = await borgflow("secrets", "rotate", "--data-dir", str(data), database_url=database_url)
        assert code == 0, err
        new = KeySource.of(live).keyring()
        assert len(new.keys) == 1 and new.keys[0] not in old.keys
        assert f"re-encrypted 3 of 3 secrets under key {new.newest_label}" in out
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert [p.name for p in data.iterdir()] == ["secret-key"]

        rows = await sealed_rows(pool)
        assert sorted(opens_with(new, rows).values()) == sorted(SECRETS)
        for sealed in rows.values():
            assert sealed_key_label(sealed) == new.newest_label
            with pytest.raises(SecretKeyNotHeld):
                opens_with(old, {"x": sealed})

        # The api served all along, with the key it read at start: it read the file again.
        for jid, secret in jobs.items():
            r = await client.get(f"/api/jobs/{jid}/secret", headers=auth(agent_token))
            assert r.status_code == 200 and r.json() == {"passphrase": secret}
        repo = await make_repository(client, "after", passphrase="set after the rotation")
        assert sealed_key_label((await sealed_rows(pool))[repo["id"]]) == new.newest_label


async def test_rotate_with_the_variable_gives_a_key_then_re_encrypts_under_it(
    client: Client, pool: asyncpg.Pool, database_url: str
) -> None:
    for i, secret in enumerate(SECRETS[:2]):
        await make_repository(client, f"r{i}", passphrase=secret)
    before = await sealed_rows(pool)

    # One key: this command cannot give the running apis another, so it prints one and the steps.
    code, out, err = await borgflow("secrets", "rotate", database_url=database_url, BORGFLOW_SECRET_KEY=SECRET_KEY)
    assert code == 0, err
    assert "re-encrypted 0 secrets" in out and "BORGFLOW_SECRET_KEY=<new key>,<current key>" in out
    printed = re.search(r"A new key \((k-[0-9a-f]+)\):\s+(\S+)", out)
    assert printed is not None
    new = parse_key(printed[2])
    assert key_label(new) == printed[1]
    assert await sealed_rows(pool) == before

    # Every api now holds new,old: re-encrypt under the new one.
    both = f"{printed[2]},{SECRET_KEY}"
    code, out, err = await borgflow("secrets", "rotate", database_url=database_url, BORGFLOW_SECRET_KEY=both)
    assert code == 0, err
    assert f"re-encrypted 2 of 2 secrets under key {key_label(new)}" in out
    assert sorted(opens_with(Keyring.of([new], "new"), await sealed_rows(pool)).values()) == sorted(SECRETS[:2])

    code, out, err = await borgflow("secrets", "rotate", database_url=database_url, BORGFLOW_SECRET_KEY=both)
    assert code == 0 and "re-encrypted 0 of 2 secrets" in out


async def test_rotate_refuses_when_a_secret_is_under_a_key_it_lacks(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    write_key_file(tmp_path / "secret-key", [new_key()])
    file_before = (tmp_path / "secret-key").read_text()
    stranger = KeySource(env_value=None, path=tmp_path / "elsewhere")
    write_key_file(tmp_path / "elsewhere", [new_key()])
    await pool.execute(
        "INSERT INTO repositories (id, name, location, agent, passphrase_enc) VALUES ('r1', 'r1', '/r', 'local', $1)",
        seal(stranger, PASSPHRASE, "r1", "lost"),
    )
    code, _, err = await borgflow("secrets", "rotate", "--data-dir", str(tmp_path), database_url=database_url)
    assert code == 1
    assert f"(1 under {stranger.keyring().newest_label})" in err and "nothing was changed" in err
    assert (tmp_path / "secret-key").read_text() == file_before
