"""What a run shows while it goes: the engine's start-up line (elapsed time and its log's last line),
requests done of a point, the telemetry in use, and what a rate search found."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import MofNCompleteColumn, Progress, Task
from rich.text import Text

from harness.engines.logtail import tail_lines
from harness.telemetry.base import TelemetrySet


class RequestCount(MofNCompleteColumn):
    """Requests done of the point's; nothing for a task of no set size (an engine's start-up)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


# the widest part of the engine log's last line shown beside the start-up's elapsed time
LOG_LINE_CHARS = 60


@contextmanager
def start_task(progress: Progress, label: str, log: Path) -> Iterator[None]:
    """A progress line while the engine starts (loading a 70B model takes minutes): its elapsed time and
    the engine log's last line, read once a second."""
    task = progress.add_task(label, total=None)
    stop = threading.Event()

    def follow() -> None:
        while not stop.wait(1.0):
            line = last_log_line(log)
            progress.update(task, description=f"{label} {escape(line)}" if line else label)

    reader = threading.Thread(target=follow, name="start-up-log", daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join()
        progress.remove_task(task)


# llama.cpp's log prefix (`0.02.174.496 I `: time since start and level), which takes the room of what it says
_LLAMA_LOG_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ [A-Z] ")


def last_log_line(log: Path, chars: int = LOG_LINE_CHARS) -> str:
    """The last non-empty line of a log, printable characters only, without llama.cpp's time-and-level
    prefix, runs of spaces as one, cut to `chars` (… where cut); "" where there is none yet."""
    for line in reversed(tail_lines(log, 20) or []):
        text = "".join(c for c in line if c.isprintable()).strip()
        text = " ".join(_LLAMA_LOG_PREFIX.sub("", text).split())
        if text:
            return text if len(text) <= chars else text[: chars - 1] + "…"
    return ""


def search_result_text(found: dict[str, Any], rows: list[dict[str, Any]], variant: int) -> str:
    """What a rate search found, said as what it is: a lower bound when no rate tried failed, with the
    rate the point achieved beside the one offered."""
    text = _search_text(found, rows, variant)
    return text + (f"; the search stopped: {found['stop_reason']}" if found.get("stop_reason") else "")


def _search_text(found: dict[str, Any], rows: list[dict[str, Any]], variant: int) -> str:
    best, failing = found["max_rate_rps"], found["lowest_failing_rps"]
    if stopped := found.get("stopped"):
        # the point being probed was cut short: it judged nothing, and the search did not finish
        judged = len(found.get("probes") or [])
        head = f"rate search {stopped} after {judged} judged probe(s)"
        if best is None:
            return head + (": no rate met the SLOs" if judged else ": no rate was judged")
        return f"{head}: {best:g} req/s met the SLOs (a lower bound; the search did not finish)"
    mine = [r for r in rows if r.get("variant", 0) == variant and _number(r, "rate_rps") is not None]
    if best is None:
        return "highest rate meeting the SLOs: none of the rates tried" + _lowest_tried(mine)
    row = next((r for r in reversed(mine) if r.get("rate_rps") == best), None)
    got = _number(row, "req_s")
    offered = _number(row, "offered_req_s")
    # the rate asked is the schedule's nominal one; the draw offered what `offered_req_s` says
    achieved = ""
    if got is not None:
        achieved = (
            f" asked ({offered:.3g} offered, {got:.3g} achieved)"
            if offered
            else f" asked ({got:.3g} req/s achieved)"
        )
    if failing is None:
        n = len(found["probes"])
        text = (
            f"highest rate meeting the SLOs: at least {best:g} req/s{achieved}: no rate tried failed "
            f"in {n} probes, so the limit is higher"
        )
        top = max((v for r in mine if (v := _number(r, "req_s")) is not None), default=None)
        if got is not None and top is not None and got < best / 2:
            # the server fell behind: the SLOs were loose enough for the queue a short probe builds
            text += (
                f"; but no probe had more than {top:.3g} req/s completed: the rates above that queued "
                "rather than being served (a stricter SLO, or more requests a probe, finds the limit)"
            )
        return text
    return (
        f"highest rate meeting the SLOs: {best:g} req/s{achieved} (the next rate tried, {failing:g}, failed)"
    )


def _number(row: dict[str, Any] | None, key: str) -> float | None:
    v = row.get(key) if row is not None else None
    return float(v) if isinstance(v, int | float) and v == v else None


def _lowest_tried(rows: list[dict[str, Any]]) -> str:
    """What the lowest rate tried fell short by: the share of its requests within the SLOs, and those that
    failed (an error share no lower rate mends)."""
    if not rows:
        return ""
    low = min(rows, key=lambda r: r["rate_rps"])
    share = _number(low, "slo_attainment")
    errors = int(_number(low, "errors") or 0)
    said = f" (the lowest, {low['rate_rps']:g} req/s"
    if share is not None:
        said += f", had {share:.1%} of its requests within the SLOs"
    if errors:
        said += f", {errors} of them failed"
    return said + ")"


def print_telemetry(console: Console, tel: TelemetrySet) -> None:
    names = ", ".join(x.name for x in tel.samplers) or "none"
    absent = "; ".join(f"{k}: {v}" for k, v in {**tel.absent, **tel.problems}.items())
    console.print(
        f"telemetry: {names}" + (f" (absent: {absent})" if absent else ""), markup=False, highlight=False
    )
    for s in tel.samplers:
        for note in s.notes() if hasattr(s, "notes") else []:
            console.print(f"[yellow]note[/] telemetry {s.name}: {escape(note)}", highlight=False)
