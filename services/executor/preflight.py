"""Checks on the agent before borg runs: do the backup's sources exist, is the restore's
destination there (made when it is not)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence

from services.executor.exceptions import BadJob


def split_missing(paths: Sequence[str], exists: Callable[[str], bool] = os.path.lexists) -> tuple[list[str], list[str]]:
    """The paths that exist and those that do not (a dangling symlink exists: borg saves the link)."""
    present = [p for p in paths if exists(p)]
    missing = [p for p in paths if not exists(p)]
    return present, missing


def prepare_destination(destination: str, agent: str) -> bool:
    """Make sure the restore's destination is a directory; True when it was made (mode 0700).

    A new destination is private to the executor's user: restored files may hold
    anything, and their own modes are only applied below it.
    """
    if os.path.isdir(destination):
        return False
    if os.path.lexists(destination):
        raise BadJob(
            "bad_options",
            f"the restore destination {destination} exists on agent {agent} and is not a directory",
            "Choose a destination that is a directory or does not exist yet",
        )
    try:
        os.makedirs(destination, mode=0o700)
        os.chmod(destination, 0o700)  # makedirs' mode is filtered by the umask
    except FileExistsError:
        return False  # made meanwhile by someone else: fine, if it is a directory
    except PermissionError:
        raise BadJob(
            "permission_denied",
            f"cannot create the restore destination {destination} on agent {agent}: permission denied",
            f"Restore to a directory the executor's user may write, or run the agent on {agent} as a user "
            f"who may create {destination}",
        ) from None
    except OSError as e:
        kind = "no_space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "bad_options"
        raise BadJob(
            kind,
            f"cannot create the restore destination {destination} on agent {agent}: {e.strerror or e}",
            f"Free space on the disk holding {destination}, or choose another destination"
            if kind == "no_space"
            else "Choose another destination",
        ) from None
    return True
