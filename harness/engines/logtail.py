"""The lines of an engine's log that a failed start quotes: its last lines, after the first exception
lines above them from the same start (vLLM's engine core logs its cause far above the API server's
wrapper traceback, which is all the last lines hold)."""

from __future__ import annotations

import os
import re
from pathlib import Path

# how much of a log is read for exception lines above its last lines
SCAN_BYTES = 4 << 20

# an exception's line, as Python prints it last in a traceback, or as vLLM logs it (`(Worker pid=7) ERROR
# 12-07 13:39:52 [file.py:953] RuntimeError: ...`)
_EXCEPTION_LINE = re.compile(
    r"^(?:\([^)]*\)\s+)?(?:ERROR\s+\S+\s+\S+\s+\[[^\]]*\]\s+)?[A-Za-z_][\w.]*(?:Error|Exception): "
)


def tail_lines(path: Path, lines: int = 30) -> list[str] | None:
    """The last `lines` lines of a log (of its last 16 KiB); None where it cannot be read (not yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    return text.splitlines()[-lines:]


def tail(path: Path, lines: int = 30, since_byte: int = 0) -> str:
    """The last `lines` lines of a log, after the first exception lines above them written from
    `since_byte` on (where this start of the engine began writing: a log is appended to by every start,
    retries and resumes included, and an older start's errors are not this one's)."""
    got = tail_lines(path, lines)
    if got is None:
        return "(no log)"
    earlier = [f"[earlier in the log] {line}" for line in earlier_errors(path, len(got), since_byte)]
    return "\n".join([*earlier, *(["[...]"] if earlier else []), *got])


def earlier_errors(path: Path, last: int, since_byte: int = 0, most: int = 2) -> list[str]:
    """The first `most` distinct exception lines of a log written from `since_byte` on (of its last
    SCAN_BYTES), above its last `last` lines."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(since_byte, size - SCAN_BYTES)
            f.seek(start)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    if start > since_byte and lines:
        lines = lines[1:]  # the scan began inside a line
    above = lines[: max(0, len(lines) - last)]
    out: list[str] = []
    for line in above:
        if _EXCEPTION_LINE.match(line) and line not in out:
            out.append(line[:500])
            if len(out) == most:
                break
    return out
