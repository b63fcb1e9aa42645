"""The bodies of the PUT routes: every field of the thing optional, so `/schema` shows them.

A PUT changes the fields it gives and keeps the others, and takes a thing back as GET
showed it (its read-only fields are ignored). Each patch is derived from the create body
(or the settings), so the two cannot drift: same fields, same types and constraints,
every one optional. The handler gets the given fields as a dict (`given`) and validates
the merged result as a whole, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET, UnsetType

from services.api.schemas import NotificationCreate, PlanCreate, ScheduleCreate
from shared.config import SystemSettings


def patch_of(struct: type[msgspec.Struct], name: str, read_only: Iterable[str] = ()) -> type[msgspec.Struct]:
    """A Struct with `struct`'s fields, each optional, plus `read_only` ones taken and ignored."""
    fields: list[tuple[str, Any, Any]] = [(f.name, f.type | UnsetType, UNSET) for f in msgspec.structs.fields(struct)]
    fields += [(n, Any, UNSET) for n in read_only]
    doc = f"The fields of {struct.__name__} to change; absent ones keep their values."
    return msgspec.defstruct(
        name, fields, kw_only=True, forbid_unknown_fields=True, module=__name__, namespace={"__doc__": doc}
    )


def given(patch: msgspec.Struct) -> dict[str, Any]:
    """The fields a patch gave, as JSON values (UNSET ones are left out)."""
    out: dict[str, Any] = msgspec.to_builtins(patch)
    return out


if TYPE_CHECKING:  # built at run time; to the type checker, any Struct
    PlanPatch = msgspec.Struct
    SchedulePatch = msgspec.Struct
    NotificationPatch = msgspec.Struct
    SettingsPatch = msgspec.Struct
else:
    PlanPatch = patch_of(PlanCreate, "PlanPatch", ("id", "project", "created_at", "updated_at"))
    SchedulePatch = patch_of(
        ScheduleCreate, "SchedulePatch", ("id", "project", "next_runs", "last_run", "created_at", "updated_at")
    )
    NotificationPatch = patch_of(NotificationCreate, "NotificationPatch", ("id", "created_at", "updated_at"))
    SettingsPatch = patch_of(SystemSettings, "SettingsPatch")
