"""Pure parsing of borg's output: one stderr line into progress or a log entry, and the
`--json` results on stdout into a job result. No I/O, no clock: time comes in as arguments.

With `--log-json` every stderr line borg writes through its logger is one JSON object
with a `type`. Anything else (argparse errors, a password prompt without a newline,
a traceback printed before logging is set up) is a plain line and becomes a log entry
as-is. Parse by `type`/`msgid`, never by message text (reference section 4).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from shared.events import Progress
from shared.insight import backup_rates

# Where a JSON object starts when borg printed it behind a prompt that had no newline,
# e.g. `Enter passphrase for key /r: {"type": "log_message", ...}`.
_JSON_START = '{"type"'


class ProgressUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """What one progress line says; None means "this line does not say"."""

    action: str | None = None
    percent: float | None = None
    current: int | None = None
    total: int | None = None
    nfiles: int | None = None
    original_size: int | None = None
    compressed_size: int | None = None
    deduplicated_size: int | None = None
    current_file: str | None = None
    msgid: str | None = None
    """Which of borg's progress indicators spoke (`extract`, `repository.check`, ...)."""


# Fields of a ProgressUpdate that are not part of the job's Progress.
_NOT_PROGRESS = frozenset({"msgid"})
# borg puts the percentage into progress_percent messages ("Checking segments 10.0%",
# "  0.0% Extracting: a/b"); the job reports percent on its own, so the action drops it.
_PERCENT_IN_MESSAGE = re.compile(r"^\s*\d+(?:\.\d+)?%\s*|\s*\d+(?:\.\d+)?%\s*$")


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A line for the job's log. `plain` lines were not JSON: their level is decided later."""

    level: str
    message: str
    msgid: str | None = None
    name: str | None = None
    plain: bool = False


Parsed = ProgressUpdate | LogEntry


def parse_line(line: str) -> list[Parsed]:
    """What one stderr line means: usually one item, none for noise, two for a prompt+JSON line."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return []
    start = text.find(_JSON_START)
    if start > 0:
        # A prompt without a newline, then borg's JSON line: keep both.
        prefix = text[:start].rstrip()
        rest = parse_line(text[start:])
        return ([LogEntry(level="info", message=prefix, plain=True)] if prefix else []) + rest
    obj = _json_object(text)
    if obj is None:
        return [LogEntry(level="info", message=text, plain=True)]
    item = _parse_object(obj)
    return [item] if item is not None else []


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.startswith("{"):
        return None
    try:
        obj = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("type"), str) else None


def _parse_object(obj: dict[str, Any]) -> Parsed | None:
    kind = obj["type"]
    if kind == "log_message":
        return LogEntry(
            level=str(obj.get("levelname") or "INFO").lower(),
            # Some messages (init's key notice) start or end with blank lines.
            message=str(obj.get("message", "")).strip("\n"),
            msgid=_str_or_none(obj.get("msgid")),
            name=_str_or_none(obj.get("name")),
        )
    if obj.get("finished"):
        # The closing line of a progress run says nothing new, and `archive_progress`
        # finished is printed even by an interrupted create (reference 4.5).
        return None
    if kind == "archive_progress":
        path = _str_or_none(obj.get("path"))
        return ProgressUpdate(
            action=f"backing up {path}" if path else "backing up",
            nfiles=_int_or_none(obj.get("nfiles")),
            original_size=_int_or_none(obj.get("original_size")),
            compressed_size=_int_or_none(obj.get("compressed_size")),
            deduplicated_size=_int_or_none(obj.get("deduplicated_size")),
            current_file=path,
        )
    if kind == "progress_percent":
        current, total = _int_or_none(obj.get("current")), _int_or_none(obj.get("total"))
        percent = round(current * 100 / total, 1) if current is not None and total else None
        message = _str_or_none(obj.get("message"))
        info = obj.get("info")
        return ProgressUpdate(
            action=_PERCENT_IN_MESSAGE.sub("", message).strip() or None if message else None,
            percent=percent,
            current=current,
            total=total,
            # extract names the item it is on in `info` (check and compact leave it null).
            current_file=_str_or_none(info[0]) if isinstance(info, list) and info else None,
            msgid=_str_or_none(obj.get("msgid")),
        )
    if kind == "progress_message":
        message = _str_or_none(obj.get("message"))
        return ProgressUpdate(action=message.strip(), msgid=_str_or_none(obj.get("msgid"))) if message else None
    # file_status (create --list) and types a later borg adds: not part of the log.
    return None


def advance(progress: Progress, update: ProgressUpdate, elapsed_s: float) -> Progress:
    """The job's progress after one update; rates and ETA from the time since borg started."""
    changes: dict[str, Any] = {
        name: value
        for name in update.__struct_fields__
        if name not in _NOT_PROGRESS and (value := getattr(update, name)) is not None
    }
    if update.original_size is not None and elapsed_s > 0:
        changes["bytes_per_s"] = round(update.original_size / elapsed_s, 1)
    if update.current and update.total and elapsed_s > 0:
        changes["eta_s"] = round(elapsed_s * (update.total - update.current) / update.current, 1)
    return msgspec.structs.replace(progress, **changes)


# --------------------------------------------------------------------------- results


class ParsedResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a job type's stdout says: the archive it wrote, its stats, anything else."""

    archive: str | None = None
    stats: dict[str, Any] = {}
    details: dict[str, Any] = {}


_STAT_KEYS = ("nfiles", "original_size", "compressed_size", "deduplicated_size")


def parse_create_json(stdout: bytes) -> ParsedResult:
    """`borg create --json` stdout: the archive name and `archive.stats` plus its duration.

    An empty or broken stdout (an interrupted create prints none) gives an empty result.
    """
    try:
        doc = msgspec.json.decode(stdout) if stdout.strip() else None
    except msgspec.DecodeError:
        doc = None
    archive = doc.get("archive") if isinstance(doc, dict) else None
    if not isinstance(archive, dict):
        return ParsedResult()
    raw = archive.get("stats")
    if not isinstance(raw, dict):
        raw = {}
    stats: dict[str, Any] = {k: raw[k] for k in _STAT_KEYS if isinstance(raw.get(k), int)}
    if isinstance(archive.get("duration"), int | float):
        stats["duration"] = archive["duration"]
    stats |= backup_rates(stats)
    # The repository's totals come with it: no `borg info` needed after a backup.
    totals = repository_totals(doc)
    details = {"repository": totals} if totals else {}
    return ParsedResult(archive=_str_or_none(archive.get("name")), stats=stats, details=details)


# `borg info --json` (and `create --json`) cache stats -> the repository's totals, in the
# names an archive's stats use.
_TOTALS = {"total_size": "original_size", "total_csize": "compressed_size", "unique_csize": "deduplicated_size"}


def repository_totals(doc: Any) -> dict[str, int]:
    """The repository's total original, compressed and deduplicated sizes from borg's `cache.stats`."""
    cache = doc.get("cache") if isinstance(doc, dict) else None
    raw = cache.get("stats") if isinstance(cache, dict) else None
    if not isinstance(raw, dict):
        return {}
    return {name: raw[key] for key, name in _TOTALS.items() if isinstance(raw.get(key), int)}


def parse_info_json(stdout: str) -> dict[str, int]:
    """`borg info --json REPO` stdout: the repository's totals (empty when unreadable)."""
    try:
        return repository_totals(msgspec.json.decode(stdout) if stdout.strip() else None)
    except msgspec.DecodeError:
        return {}


# --------------------------------------------------------------------------- INFO lines
# Commands without a `--json` result (prune, compact) say what they did only in INFO
# lines. Their text is parsed here for the job's details, never to decide an outcome.

# `Keeping archive (rule: daily #1):   NAME   Mon, 2026-11-23 16:33:06 [64 hex]` and its
# siblings. borg pads the name to 36 columns and then prints `format_time` and the id,
# so the name is everything between the colon and the time stamp.
_PRUNE_LINE = re.compile(
    r"^(?P<verb>Keeping archive \(rule: [^)]*\)|Keeping checkpoint archive|Pruning archive \(\d+/\d+\)|Would prune)"
    r":\s+(?P<name>.+?)\s+\S+, \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \[[0-9a-f]+\]\s*$"
)
_FREED = re.compile(r"compaction freed about (?P<size>-?\d+(?:\.\d+)? ?[kKMGTPEZY]?i?B) repository space")
_SIZE = re.compile(r"^(?P<number>-?\d+(?:\.\d+)?) ?(?P<unit>[kKMGTPEZY]?)(?P<iec>i?)B$")
_POWERS = {"": 0, "k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6, "Z": 7, "Y": 8}


class PruneDecision(msgspec.Struct, frozen=True, kw_only=True):
    archive: str
    kept: bool


def parse_prune_line(message: str) -> PruneDecision | None:
    """A `borg prune --list` line: which archive, kept or pruned; None for any other line."""
    match = _PRUNE_LINE.match(message)
    if match is None:
        return None
    return PruneDecision(archive=match["name"], kept=match["verb"].startswith("Keeping"))


def parse_size(text: str) -> int | None:
    """borg's human sizes back to bytes: `4.19 kB` → 4190 (decimal units), `1.50 MiB` (IEC)."""
    match = _SIZE.match(text.strip())
    if match is None:
        return None
    base: int = 1024 if match["iec"] else 1000
    power: int = _POWERS[match["unit"]]
    return round(float(match["number"]) * float(base) ** power)


# `Deleted data:    -128.19 MB    -126.36 MB    -19.57 kB` (prune --stats): original,
# compressed and deduplicated size of what the pruned archives held.
_DELETED = re.compile(
    r"^Deleted data:\s+(?P<original>-?\S+ \S+)\s+(?P<compressed>-?\S+ \S+)\s+(?P<dedup>-?\S+ \S+)\s*$"
)


def parse_deleted(message: str) -> int | None:
    """Bytes the archives a prune deleted held alone (the deduplicated column), from `--stats`."""
    match = _DELETED.match(message.strip())
    size = parse_size(match["dedup"]) if match else None
    return abs(size) if size is not None else None


def parse_freed(message: str) -> tuple[int, str] | None:
    """`compaction freed about 4.19 kB repository space.` → (4190, "4.19 kB")."""
    match = _FREED.search(message)
    if match is None:
        return None
    size = parse_size(match["size"])
    return None if size is None else (size, match["size"])


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
