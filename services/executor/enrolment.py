"""The token an executor fetches its jobs' passphrases with: bound to its own agent.

`BORGFLOW_TOKEN` may be that agent token already, or a join token (what
`borgflow up` writes into borgflow.env, what compose and Kubernetes hand every
executor): then the executor enrols once, `POST /api/agents/<agent>/token`, and
keeps the answer in its state dir (mode 0600), so a restart uses it again and
nobody copies tokens by hand. The api refuses a second enrolment of a live agent,
so a join token cannot take over an agent that is enrolled already.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import httpx

from services.executor.exceptions import SecretUnavailable

log = logging.getLogger(__name__)

TOKEN_FILE = "agent-token"
RETRY_S = (0.5, 1.0, 2.0, 5.0)


class Credentials:
    """Resolves (once, then from the file) the token to present for `agent`."""

    def __init__(self, api_url: str, token: str | None, agent: str, state_dir: Path, client: httpx.AsyncClient) -> None:
        self._base = api_url.rstrip("/")
        self._given = token
        self._agent = agent
        self._path = state_dir / TOKEN_FILE
        self._client = client
        self._token: str | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str | None:
        """The token to send; enrols first when the given one is a join token.

        Raises SecretUnavailable when the api refuses (a wrong token, an agent that is
        enrolled already), OSError/httpx errors when it cannot be asked: the caller retries.
        """
        if self._token is not None:
            return self._token
        async with self._lock:
            if self._token is None:
                self._token = await self._resolve()
            return self._token

    async def _resolve(self) -> str | None:
        kept = await asyncio.to_thread(self._read)
        if kept:
            return kept
        if not self._given:
            return None
        try:
            me = await self._get("/api/tokens/self", self._given)
        except SecretUnavailable:
            # Refused (a revoked token) or not understood (an older api): present the token
            # as it is, and the secret endpoint's own answer says what is wrong.
            return self._given
        role, bound = me.get("role"), me.get("agent")
        if role == "join":
            return await self._enrol()
        if role == "agent" and bound != self._agent:
            raise SecretUnavailable(
                f"BORGFLOW_TOKEN is bound to agent {bound!r}, not {self._agent!r}: "
                "give this executor its own token, or a join token"
            )
        return self._given

    async def _enrol(self) -> str:
        answer = await self._post(f"/api/agents/{self._agent}/token", self._given or "")
        token = str(answer["token"])
        await asyncio.to_thread(self._write, token)
        log.info("enrolled: this executor has its own agent token now", extra={"agent": self._agent})
        return token

    async def _get(self, path: str, token: str) -> dict[str, object]:
        r = await self._client.get(self._base + path, headers={"Authorization": f"Bearer {token}"})
        return _json_or_refusal(r, path)

    async def _post(self, path: str, token: str) -> dict[str, object]:
        r = await self._client.post(self._base + path, headers={"Authorization": f"Bearer {token}"})
        return _json_or_refusal(r, path)

    def _read(self) -> str | None:
        try:
            return self._path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _write(self, token: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        tmp.replace(self._path)


def _json_or_refusal(r: httpx.Response, path: str) -> dict[str, object]:
    if r.status_code >= 500:
        r.raise_for_status()  # the api is starting or away: the caller asks again
    if r.status_code >= 400:
        try:
            detail = str(r.json().get("detail", ""))
        except ValueError:
            detail = ""
        raise SecretUnavailable(f"{path} answered {r.status_code}: {detail}".rstrip(": "))
    body = r.json()
    if not isinstance(body, dict):
        raise SecretUnavailable(f"{path} did not answer a JSON object")
    return body


async def enrol_early(credentials: Credentials, stop: asyncio.Event) -> None:
    """Resolve the token at start (so a refusal shows in the log at once), retrying while the api is away."""
    for attempt in range(1_000_000):
        if stop.is_set():
            return
        try:
            await credentials.token()
            return
        except SecretUnavailable as e:
            log.error("cannot get this agent's token: %s", e)
            return
        except (httpx.HTTPError, OSError) as e:
            if attempt == 0:
                log.warning("the api is not answering yet (%s): enrolment waits for it", type(e).__name__)
            pause = RETRY_S[min(attempt, len(RETRY_S) - 1)]
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except TimeoutError:
                continue
