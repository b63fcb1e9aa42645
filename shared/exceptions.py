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
