"""The typed job search of `q` (GET /api/jobs, POST /api/jobs/bulk, the Queue page's search box).

`type:backup status:failed,cancelled agent:web-1 repo:home plan:"db nightly" trigger:schedule
exit:2 photos`: each `key:value` term narrows the jobs, a comma (or the same key twice) allows
either value, and every free word must appear in the job's agent, plan, repository or type name
(or be its id). Pure: the api turns a Search into SQL (queries.py) and answers a bad term 400
naming `q` and the term.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.events import JOB_TYPES, TRIGGERS, JobStatus

STATUSES: tuple[str, ...] = tuple(str(s) for s in JobStatus)
KEYS: tuple[str, ...] = ("type", "status", "agent", "repo", "plan", "trigger", "exit")
# `repository:` reads as `repo:`; nothing else is renamed.
ALIASES = {"repository": "repo"}
MAX_TERMS = 32
MAX_EXIT_CODE = 255

# A term: key:"quoted value", key:value, "quoted words", or a bare word.
_TERM = re.compile(r'\s*(?:([A-Za-z_]+):(?:"([^"]*)"|(\S*))|"([^"]*)"|(\S+))')


class SearchError(ValueError):
    """A term the search cannot take; `term` is it as typed."""

    def __init__(self, term: str, message: str) -> None:
        super().__init__(f"q: {message} in {term!r}")
        self.term = term


@dataclass(frozen=True)
class Search:
    """What a `q` asks for: each list allows any of its values (None: no condition)."""

    types: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    repos: tuple[str, ...] | None = None  # repository names (case-insensitive) or ids
    plans: tuple[str, ...] | None = None  # plan names (case-insensitive) or ids
    triggers: tuple[str, ...] | None = None
    exit_codes: tuple[int, ...] | None = None
    words: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return self == Search()


def _values(term: str, key: str, raw: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not values:
        raise SearchError(term, f"{key}: needs a value")
    return values


def _check(term: str, key: str, values: list[str]) -> list[str]:
    allowed = {"type": JOB_TYPES, "status": STATUSES, "trigger": TRIGGERS}.get(key)
    if allowed is not None:
        for v in values:
            if v.lower() not in allowed:
                raise SearchError(term, f"{key}: unknown value {v!r} (one of {', '.join(allowed)})")
        return [v.lower() for v in values]
    if key == "exit":
        for v in values:
            if not v.isdigit() or int(v) > MAX_EXIT_CODE:
                raise SearchError(term, f"exit: {v!r} is not an exit code (0 to {MAX_EXIT_CODE})")
    return values


def parse(text: str | None) -> Search:
    """The Search a `q` holds; SearchError on an unknown key, an unknown value or an empty one."""
    if text is None or not text.strip():
        return Search()
    found: dict[str, list[str]] = {}
    words: list[str] = []
    pos, terms = 0, 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if match is None or match.end() == pos:
            break  # only whitespace is left
        pos = match.end()
        terms += 1
        if terms > MAX_TERMS:
            raise SearchError(match.group(0).strip(), f"more than {MAX_TERMS} terms")
        key, quoted, plain, phrase, word = match.groups()
        term = match.group(0).strip()
        if key is None:
            text_word = (phrase if phrase is not None else word or "").strip()
            if text_word:
                words.append(text_word)
            continue
        name = ALIASES.get(key.lower(), key.lower())
        if name not in KEYS:
            raise SearchError(term, f"unknown key {key!r} (one of {', '.join(k + ':' for k in KEYS)})")
        raw = quoted if quoted is not None else plain or ""
        values = _check(term, name, _values(term, name, raw))
        found.setdefault(name, []).extend(v for v in values if v not in found.get(name, []))

    def of(key: str) -> tuple[str, ...] | None:
        return tuple(found[key]) if key in found else None

    exits = of("exit")
    return Search(
        types=of("type"),
        statuses=of("status"),
        agents=of("agent"),
        repos=of("repo"),
        plans=of("plan"),
        triggers=of("trigger"),
        exit_codes=tuple(int(v) for v in exits) if exits is not None else None,
        words=tuple(words),
    )


def like(text: str) -> str:
    """`%text%` for ILIKE, with the text's own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def conditions(s: Search, arg: Callable[[Any], str]) -> list[str]:
    """SQL conditions on the `jobs` table for `s`; `arg` binds a value and answers its `$n`."""
    out: list[str] = []
    if s.types:
        out.append(f"jobs.type = ANY({arg(list(s.types))}::text[])")
    if s.statuses:
        out.append(f"jobs.status = ANY({arg(list(s.statuses))}::text[])")
    if s.agents:
        out.append(f"lower(jobs.agent) = ANY({arg([a.lower() for a in s.agents])}::text[])")
    for values, column, name in ((s.repos, "repository_id", "repository_name"), (s.plans, "plan_id", "plan_name")):
        if values:
            ids, names = arg(list(values)), arg([v.lower() for v in values])
            out.append(f"(jobs.{column} = ANY({ids}::text[]) OR lower(jobs.doc->>'{name}') = ANY({names}::text[]))")
    if s.triggers:
        out.append(f"jobs.trigger = ANY({arg(list(s.triggers))}::text[])")
    if s.exit_codes is not None:
        codes = arg([str(c) for c in s.exit_codes])
        # A failure's exit code is in its error; a finished job's in its result.
        out.append(
            f"coalesce(jobs.doc->'result'->>'exit_code', jobs.doc->'error'->>'exit_code') = ANY({codes}::text[])"
        )
    for word in s.words:
        out.append(f"(jobs.search ILIKE {arg(like(word.lower()))} OR jobs.id = {arg(word)})")
    return out
