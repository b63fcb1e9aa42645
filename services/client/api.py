"""Talking to the borgflow api over HTTP and websockets: the client's only way in.

Every failure becomes a ClientError with a one-line message a person can act on and
the exit code the command ends with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from shared.config import DEFAULT_API_URL, default_data_dir

# Exit codes of the client commands (`backup --wait` adds 0/1/2 for the job's outcome).
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_REFUSED = 5
TIMEOUT_S = 30.0


class ClientError(Exception):
    """What went wrong, in one line, and the exit code it means."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def resolve_url(env: Mapping[str, str]) -> str:
    return (env.get("BORGFLOW_API_URL") or DEFAULT_API_URL).rstrip("/")


def resolve_token(env: Mapping[str, str]) -> str:
    """$BORGFLOW_TOKEN, else the admin token `borgflow up` wrote into the default data dir."""
    token = env.get("BORGFLOW_TOKEN", "").strip()
    if token:
        return token
    path = default_data_dir() / "admin-token"
    try:
        token = path.read_text().strip()
    except OSError:
        token = ""
    if not token:
        raise ClientError(
            f"no token: set $BORGFLOW_TOKEN, or run `borgflow up` on this machine (it writes {path})", EXIT_AUTH
        )
    return token


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:200] or r.reason_phrase
    return str(body.get("detail") or body) if isinstance(body, dict) else str(body)


class Api:
    """The api at `url`, called with `token`."""

    def __init__(self, url: str, token: str, timeout: float = TIMEOUT_S) -> None:
        self.url = url
        self.token = token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Api:
        env = os.environ if env is None else env
        return cls(resolve_url(env), resolve_token(env))

    def close(self) -> None:
        self.http.close()

    def unreachable(self, reason: object) -> ClientError:
        return ClientError(
            f"cannot reach the borgflow api at {self.url}: {reason}; is `borgflow up` running?", EXIT_UNREACHABLE
        )

    def refused(self, status: int, detail: str) -> ClientError:
        if status == 401:
            return ClientError(
                f"the borgflow api at {self.url} refused the token ({detail}): set $BORGFLOW_TOKEN to a valid token",
                EXIT_AUTH,
            )
        if status == 403:
            return ClientError(f"not allowed: {detail}", EXIT_AUTH)
        return ClientError(f"{detail} ({status})", EXIT_REFUSED)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise self.unreachable(str(e) or type(e).__name__) from None
        if r.status_code >= 400:
            raise self.refused(r.status_code, _detail(r))
        return r

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: Any = None) -> Any:
        r = self.request("POST", path, json=body)
        return r.json() if r.content else None

    @contextmanager
    def stream(self, path: str) -> Iterator[Iterator[bytes]]:
        """A download, chunk by chunk."""
        try:
            with self.http.stream("GET", path) as r:
                if r.status_code >= 400:
                    r.read()
                    raise self.refused(r.status_code, _detail(r))
                yield r.iter_bytes()
        except httpx.TransportError as e:
            raise self.unreachable(str(e) or type(e).__name__) from None

    @contextmanager
    def websocket(self, path: str, **params: str) -> Iterator[ClientConnection]:
        """A websocket to the api; a refusal (its 44xx close code) becomes a ClientError."""
        base = "ws" + self.url.removeprefix("http")
        query = f"?{urlencode(params)}" if params else ""
        with ExitStack() as stack:
            try:
                ws = stack.enter_context(
                    connect(
                        f"{base}{path}{query}",
                        additional_headers={"Authorization": f"Bearer {self.token}"},
                        proxy=None,
                        open_timeout=TIMEOUT_S,
                    )
                )
            except InvalidStatus as e:
                raise self.refused(e.response.status_code, e.response.reason_phrase) from None
            except (OSError, WebSocketException) as e:
                raise self.unreachable(str(e) or type(e).__name__) from None
            yield ws


def close_error(api: Api, code: int | None, reason: str) -> ClientError | None:
    """The error a websocket's close code means, or None for a normal end."""
    if code in (None, 1000):
        return None
    if code in (4401, 4403):
        return api.refused(code - 4000, reason or "refused")
    if code == 4404:
        return ClientError(reason or "not found", EXIT_REFUSED)
    return ClientError(f"the api closed the connection ({code} {reason})".rstrip(), EXIT_UNREACHABLE)


def decode(message: str | bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(message)
    return out


__all__ = ["EXIT_AUTH", "EXIT_REFUSED", "EXIT_UNREACHABLE", "Api", "ClientError", "close_error", "decode"]
