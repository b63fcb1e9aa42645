"""A check's verdict per archive: OK, CORRUPT or MISSING, from borg's own output.

borg check logs "Analyzing archive NAME (i/n)" before it checks each archive, and the
problems it finds in an archive after that line. Damage found by the repository check
(a segment entry whose checksum does not match) or by `--verify-data` is named by chunk
id only, and after a failed repository check borg checks no archive at all. So when
chunks are named, each archive is read back (`borg debug dump-archive`, metadata only)
and the damaged chunks it uses decide its verdict: file data damaged is CORRUPT, the
archive's own metadata unreadable is MISSING.

The text of borg's INFO/ERROR lines is parsed here for the job's details only; whether
the check failed is decided from the exit code (readers.CheckReader.verdict).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from services.executor.parse import LogEntry
from shared.events import JobSpec

Result = Literal["OK", "CORRUPT", "MISSING"]

_ANALYZING = re.compile(r"^Analyzing archive (?P<name>.+) \(\d+/\d+\)$")
# "ID: <hex> rebuilt index: <not found>  committed index: (6, 8)": an object the index
# promises but a scan of the segments could not read back.
_LOST = re.compile(r"^ID: (?P<id>[0-9a-f]{64}) rebuilt index: <not found>")
# "chunk <hex>: Data integrity error: ..." (--verify-data).
_BAD = re.compile(r"^chunk (?P<id>[0-9a-f]{64}): ")
_HEX = re.compile(r"[0-9a-f]{64}")
# A verdict's detail names at most this many damaged files.
MAX_NAMED = 5


class ArchiveVerdict(msgspec.Struct, frozen=True, kw_only=True):
    archive: str
    result: Result
    detail: str = ""


class CheckFindings:
    """What one `borg check` run said about archives and chunks (fed its log lines)."""

    def __init__(self, verify_data: bool, requested: Sequence[str] = ()) -> None:
        self.verify_data = verify_data
        self.requested = list(requested)
        self.analyzed: list[str] = []
        self.problems: dict[str, list[str]] = {}
        self.damaged: set[str] = set()
        self.archive_phase_done = False
        self._current: str | None = None

    def note(self, entry: LogEntry) -> None:
        message = entry.message.strip()
        if entry.name == "borg.archive" and (m := _ANALYZING.match(message)):
            self._current = m["name"]
            self.analyzed.append(self._current)
            return
        if message.startswith("Archive consistency check complete"):
            self.archive_phase_done = True
            self._current = None
            return
        if entry.level not in ("error", "critical", "warning"):
            return
        if (m := _LOST.match(message)) or (m := _BAD.match(message)):
            self.damaged.add(m["id"])
            return
        if entry.level != "warning" and self._current is not None and entry.name == "borg.archive":
            self.problems.setdefault(self._current, []).append(message)

    @property
    def needs_mapping(self) -> bool:
        """Damaged chunks were named: which archives use them takes reading the archives."""
        return bool(self.damaged)

    def verdicts(self) -> list[ArchiveVerdict]:
        """From the archive check alone (no chunk named as damaged)."""
        out = [self._verdict(name) for name in dict.fromkeys(self.analyzed)]
        if self.archive_phase_done:
            seen = set(self.analyzed)
            out += [
                ArchiveVerdict(archive=name, result="MISSING", detail="not in the repository")
                for name in self.requested
                if name not in seen
            ]
        return out

    def _verdict(self, name: str) -> ArchiveVerdict:
        problems = self.problems.get(name, [])
        if not problems:
            return ArchiveVerdict(archive=name, result="OK", detail=ok_detail(self.verify_data))
        missing = any("missing" in p.lower() or "not found" in p.lower() for p in problems)
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return ArchiveVerdict(archive=name, result="MISSING" if missing else "CORRUPT", detail=problems[0] + more)


def ok_detail(verify_data: bool) -> str:
    if verify_data:
        return "archive consistency checked and all data read back"
    return "archive consistency checked (its data was not read back: use verify_data for that)"


def chunks_of(dump: dict[str, Any]) -> tuple[set[str], dict[str, set[str]]]:
    """An archive's own metadata chunks, and each file's data chunks, from `borg debug dump-archive`.

    borg writes binary values as a string of hex behind a \\x7f mark.
    """
    meta: set[str] = set()
    entry = dump.get("_manifest_entry")
    if isinstance(entry, dict):
        meta |= set(_HEX.findall(str(entry.get("id", ""))))
    info = dump.get("_meta")
    if isinstance(info, dict):
        for value in info.get("items") or []:
            meta |= set(_HEX.findall(str(value)))
    files: dict[str, set[str]] = {}
    for item in dump.get("_items") or []:
        if isinstance(item, dict) and item.get("chunks"):
            ids = {m for c in item["chunks"] if isinstance(c, list) and c for m in _HEX.findall(str(c[0]))}
            files.setdefault(str(item.get("path", "")), set()).update(ids)
    return meta, files


def mapped_verdict(archive: str, dump: dict[str, Any], damaged: set[str], verify_data: bool) -> ArchiveVerdict:
    """The verdict for an archive that could be read back, given the chunks found damaged."""
    meta, files = chunks_of(dump)
    if meta & damaged:
        return ArchiveVerdict(archive=archive, result="MISSING", detail="its metadata is in a damaged chunk")
    hit = sorted(path for path, ids in files.items() if ids & damaged)
    if not hit:
        total = len(set().union(*files.values())) if files else 0
        return ArchiveVerdict(
            archive=archive,
            result="OK",
            detail=f"none of its {total} data chunks is among the {len(damaged)} damaged ones",
        )
    named = ", ".join(hit[:MAX_NAMED]) + (f" (+{len(hit) - MAX_NAMED} more)" if len(hit) > MAX_NAMED else "")
    count = len(hit)
    return ArchiveVerdict(
        archive=archive, result="CORRUPT", detail=f"data errors in {count} file{'s' if count != 1 else ''}: {named}"
    )


def as_details(verdicts: Iterable[ArchiveVerdict]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(v) for v in verdicts]


def requested_archives(spec: JobSpec) -> list[str]:
    archives = spec.options.get("archives") or []
    return [a for a in archives if isinstance(a, str)] if isinstance(archives, list) else []
