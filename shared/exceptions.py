"""Errors of the shared library, rooted in one base class."""

from __future__ import annotations


class BorgflowError(Exception):
    """Base of every error borgflow raises on purpose."""


class InvalidTransition(BorgflowError):
    """An event does not apply to the job's current state (wrong state, unknown job)."""


class ConcurrencyConflict(BorgflowError):
    """A compare-and-set append lost: the job's stream moved on since it was read."""


class BadEvent(BorgflowError):
    """A message on a stream is not a valid borgflow event."""


class ConfigError(BorgflowError):
    """A setting (an environment variable or a flag) has a value borgflow cannot use."""


class SecretUnreadable(BorgflowError):
    """A secret kept in Postgres cannot be decrypted; the message says why and what to do, never the secret."""


class SecretKeyNotHeld(SecretUnreadable):
    """The secret was encrypted with a key this process does not hold (a lost or unset key)."""


class SecretDamaged(SecretUnreadable):
    """The secret does not decrypt with the key it names: altered, or copied from another row."""
