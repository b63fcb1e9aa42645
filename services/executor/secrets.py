"""Where a job's repository passphrase comes from, at run time and only when needed.

The passphrase lives in the api's database. An executor asks for it over an
authenticated request just before it starts borg, hands it to borg's environment,
and forgets it. It is never put in an event, a log line, an argument or an error.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx
import msgspec

from services.executor.enrolment import Credentials
from services.executor.exceptions import SecretUnavailable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
MIN_WAIT_S = 0.05


class JobSecrets(msgspec.Struct, frozen=True, kw_only=True):
    """Everything secret a job runs with (GET /api/jobs/{id}/secret)."""

    passphrase: str | None = None
    databases: dict[str, str] = {}
    """The plan's database passwords by `<kind>/<database>`."""
    target_password: str | None = None
    """A database restore's target password."""


class SecretSource(Protocol):
    """Anything that can tell the passphrase of a job's repository."""

    async def passphrase(self, job_id: str) -> str | None:
        """The passphrase, None when the repository has none; SecretUnavailable when it cannot tell."""
        ...

    async def secrets(self, job_id: str) -> JobSecrets:
        """The passphrase and the database passwords; SecretUnavailable when it cannot tell."""
        ...

    async def aclose(self) -> None: ...


class HttpSecretSource:
    """GET {api_url}/api/jobs/{job_id}/secret with the agent's bearer token.

    Network errors and 5xx answers are retried with backoff for up to `patience_s` in all:
    the api answers 503 (with Retry-After) while its database or NATS restarts, and a job
    should outlive that. A 4xx is final: asking again would not change the answer.
    """

    def __init__(
        self,
        api_url: str,
        token: str | None,
        *,
        timeout_s: float = 10.0,
        patience_s: float = 60.0,
        client: httpx.AsyncClient | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self._base = api_url.rstrip("/")
        self._token = token
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._patience_s = patience_s
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._owns_client = client is None

    async def passphrase(self, job_id: str) -> str | None:
        return _passphrase_of(await self._fetch(job_id), f"{self._base}/api/jobs/{job_id}/secret")

    async def secrets(self, job_id: str) -> JobSecrets:
        url = f"{self._base}/api/jobs/{job_id}/secret"
        response = await self._fetch(job_id)
        passphrase = _passphrase_of(response, url)
        try:
            found = msgspec.json.decode(response.content, type=JobSecrets)
        except msgspec.DecodeError:
            # Name the place only: the body holds secrets.
            raise SecretUnavailable(f"GET {url} answered secrets not in the expected shape") from None
        return msgspec.structs.replace(found, passphrase=passphrase)

    async def _fetch(self, job_id: str) -> httpx.Response:
        url = f"{self._base}/api/jobs/{job_id}/secret"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._patience_s
        backoff = FIRST_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                # No single request may outlast the patience left.
                left = max(MIN_WAIT_S, deadline - loop.time())
                token = await self._credentials.token() if self._credentials is not None else self._token
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                response = await self._client.get(url, headers=headers, timeout=min(self._timeout_s, left))
            except httpx.HTTPError as e:
                # Name the error class only: its text may echo the request, never the answer.
                problem = f"GET {url} failed: {type(e).__name__}"
            else:
                if response.status_code == 200:
                    if attempt > 1:
                        log.info("passphrase fetched", extra={"job_id": job_id, "attempt": attempt})
                    return response
                problem = f"GET {url} answered {response.status_code}"
                if response.status_code < 500:
                    raise SecretUnavailable(problem)  # refused or unknown: final
                wait = retry_after(response.headers.get("Retry-After"))
            pause = backoff if wait is None else max(MIN_WAIT_S, wait)
            left = deadline - loop.time()
            if left <= 0:
                raise SecretUnavailable(f"{problem} (tried {attempt} times in {self._patience_s:g}s)")
            log.warning(
                "passphrase fetch failed, retrying",
                extra={"job_id": job_id, "attempt": attempt, "problem": problem, "retry_in_s": round(pause, 2)},
            )
            # A last try just before the deadline rather than none at all.
            await asyncio.sleep(min(pause, left))
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _passphrase_of(response: httpx.Response, url: str) -> str | None:
    try:
        body = response.json()
    except ValueError:
        raise SecretUnavailable(f"GET {url} did not answer JSON") from None
    value = body.get("passphrase") if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise SecretUnavailable(f"GET {url} answered a passphrase that is not a string")
    if not isinstance(body, dict) or "passphrase" not in body:
        raise SecretUnavailable(f'GET {url} answered JSON without "passphrase"')
    return value
