"""Which archives use the chunks a check found damaged: each archive's metadata read back
with `borg debug dump-archive` (the pure verdicts are in verification.py)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from services.executor.borgproc import BorgUnavailable, Output, Tracker, run_captured
from services.executor.verification import ArchiveVerdict, CheckFindings, mapped_verdict
from shared.events import JobSpec

# Reading one archive's metadata back; a huge archive may take a while, a dead ssh must not hang the job.
DUMP_TIMEOUT_S = 600.0
LIST_TIMEOUT_S = 120.0


async def map_damage(
    borg: str,
    spec: JobSpec,
    findings: CheckFindings,
    env: dict[str, str],
    out: Output,
    tracker: Tracker | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[ArchiveVerdict]:
    """Each archive's verdict by the damaged chunks it uses (reads every archive's metadata back)."""
    repo = spec.repository
    if repo is None:
        return findings.verdicts()
    names = (
        findings.requested
        or list(dict.fromkeys(findings.analyzed))
        or await _list_archives(borg, repo.location, env, out, tracker)
    )
    out.line(
        f"borg named {len(findings.damaged)} damaged chunks: reading {len(names)} archives back to see which use them",
        source="executor",
    )
    verdicts: list[ArchiveVerdict] = []
    for name in names:
        if cancelled():  # the job was asked to stop: what is mapped so far stands, the rest has no verdict
            out.line(f"stopped reading archives back after {len(verdicts)} of {len(names)}", source="executor")
            break
        argv = [borg, "debug", "dump-archive", "--log-json", "--", f"{repo.location}::{name}", "-"]
        try:
            done = await run_captured(argv, env, DUMP_TIMEOUT_S, tracker)
        except BorgUnavailable as e:
            out.line(f"could not read archive {name} back: {e}", level="warning", source="executor")
            break
        said = "; ".join(e.message for e in done.entries if e.level in ("error", "critical"))
        if done.code != 0:
            gone = any(e.msgid == "Archive.DoesNotExist" for e in done.entries)
            detail = "not in the repository" if gone else f"its metadata cannot be read: {said or f'exit {done.code}'}"
            verdicts.append(ArchiveVerdict(archive=name, result="MISSING", detail=detail))
            continue
        try:
            dump = msgspec.json.decode(done.stdout)
        except msgspec.DecodeError:
            verdicts.append(ArchiveVerdict(archive=name, result="MISSING", detail="its metadata cannot be read"))
            continue
        verdicts.append(
            mapped_verdict(name, dump if isinstance(dump, dict) else {}, findings.damaged, findings.verify_data)
        )
    return verdicts


async def _list_archives(
    borg: str, location: str, env: dict[str, str], out: Output, tracker: Tracker | None
) -> list[str]:
    argv = [borg, "list", "--log-json", "--short", "--", location]
    try:
        done = await run_captured(argv, env, LIST_TIMEOUT_S, tracker)
    except BorgUnavailable as e:
        out.line(f"could not list the archives: {e}", level="warning", source="executor")
        return []
    if done.code != 0:
        out.line(f"could not list the archives (borg exited with {done.code})", level="warning", source="executor")
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]
