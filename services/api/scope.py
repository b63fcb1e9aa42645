"""Projects: what a principal may see, applied to single items, creates and websockets.

`auth.project_scope` says which project a principal is limited to (None: every project).
An item of another project is answered exactly as an absent one (404, or the "no such
id" a body reference gets), so a token never learns what other projects hold.
"""

from __future__ import annotations

from litestar.exceptions import PermissionDeniedException

from services.api.auth import Principal, project_scope
from services.api.errors import NotFound


def sees(principal: Principal, project: str) -> bool:
    """Whether `principal` may see things of `project`."""
    scope = project_scope(principal)
    return scope is None or scope == project


def require_visible(principal: Principal, project: str, what: str, ident: str) -> None:
    """404 (as if absent) for an item of a project `principal` does not see."""
    if not sees(principal, project):
        raise NotFound(f"no {what} {ident}")


def require_own_project(principal: Principal, project: str) -> None:
    """403 when `principal` would create something in a project it does not see."""
    if not sees(principal, project):
        raise PermissionDeniedException(f"token {principal.name!r} is limited to project {project_scope(principal)!r}")
