"""Errors the executor raises on purpose, rooted in one base class."""

from __future__ import annotations

from shared.exceptions import BorgflowError


class ExecutorError(BorgflowError):
    """Base of every error the executor raises on purpose."""


class BadJob(ExecutorError):
    """A job this executor cannot turn into a borg command: it fails without running borg.

    Carries the error kind and a hint, so the job's `error` says what to fix.
    """

    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint


class SecretUnavailable(ExecutorError):
    """The repository passphrase could not be fetched from the api.

    The message names the request and its status, never a response body.
    """


class RelaunchRequested(ExecutorError):
    """The executor stopped to become another `borgflow` (an update_agent installed it): exec it."""

    def __init__(self, exe: str) -> None:
        super().__init__(f"relaunch into {exe}")
        self.exe = exe
