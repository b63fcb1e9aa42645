"""What one borg run said, accumulated line by line: the log, the progress, the messages
the outcome is classified from. Pure state: the runner feeds it lines and the clock; the
job type's Reader decides what its lines mean for progress and details.
"""

from __future__ import annotations

import msgspec

from services.executor.outcomes import BorgMessage
from services.executor.parse import LogEntry, ProgressUpdate, parse_line
from services.executor.readers import OUTPUT_LOGGERS, Reader
from shared.events import Progress


class LogOut(msgspec.Struct, frozen=True, kw_only=True):
    level: str
    message: str


class Fed(msgspec.Struct, frozen=True, kw_only=True):
    """What one line changed: lines for the log, and the new progress when it moved."""

    log: list[LogOut] = []
    progress: Progress | None = None


class OutputCollector:
    """Accumulates borg's stderr.

    A plain (non-JSON) line is held back until the next JSON line or the exit: it is
    logged at info when borg carried on after it, at error when it was among the last
    words of a borg that failed (an argparse error, a traceback before logging started).
    """

    def __init__(self, reader: Reader | None = None) -> None:
        self.reader = reader or Reader()
        self.progress = Progress(archive=self.reader.archive)
        self.progressed = False
        self.messages: list[BorgMessage] = []
        self._held: list[str] = []

    def feed(self, line: str, elapsed_s: float) -> Fed:
        log: list[LogOut] = []
        progress: Progress | None = None
        for item in parse_line(line):
            if isinstance(item, LogEntry) and item.plain:
                self._held.append(item.message)
                continue
            log += self._release("info")
            if isinstance(item, ProgressUpdate):
                self.progress = progress = self.reader.progress(self.progress, item, elapsed_s)
                self.progressed = True
                continue
            moved = self.reader.log(self.progress, item)
            if moved is not None:
                self.progress = progress = moved
            # --list and --stats output belongs in the log, not among the messages an
            # outcome is classified from (a restore lists every file: keep memory flat).
            if item.name not in OUTPUT_LOGGERS:
                self.messages.append(BorgMessage(level=item.level, message=item.message, msgid=item.msgid))
            log.append(LogOut(level=item.level, message=item.message))
        return Fed(log=log, progress=progress)

    def finish(self, exit_code: int) -> list[LogOut]:
        """Borg has exited: the held plain lines, at the level its exit code gives them."""
        return self._release("info" if exit_code == 0 else "error")

    def _release(self, level: str) -> list[LogOut]:
        out = [LogOut(level=level, message=m) for m in self._held]
        self.messages += [BorgMessage(level=level, message=m) for m in self._held]
        self._held.clear()
        return out
