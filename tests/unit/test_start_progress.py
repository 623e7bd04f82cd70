"""The engine's start-up on the progress display: its elapsed time and the engine log's last line."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from harness.runconsole import last_log_line, start_task


def test_the_last_log_line_is_printable_and_cut_short(tmp_path: Path) -> None:
    log = tmp_path / "engine-v0.log"
    assert last_log_line(log) == ""  # no log yet
    log.write_bytes(b"first\nINFO Loading weights took 12.3 s\x1b[0m\r\n\n  \n")
    assert last_log_line(log) == "INFO Loading weights took 12.3 s[0m"
    log.write_text("x" * 100 + "\n")
    assert last_log_line(log, chars=10) == "x" * 9 + "…"
    log.write_bytes(b"\xff\xfeweights\n")  # not UTF-8: replaced, not an error
    assert last_log_line(log) == "\ufffd\ufffdweights"
    # llama.cpp's time-and-level prefix and its column padding take the room of what the line says
    log.write_text("0.01.123.040 I llama_kv_cache:        CPU KV buffer size =    12.00 MiB\n")
    assert last_log_line(log) == "llama_kv_cache: CPU KV buffer size = 12.00 MiB"


def test_start_up_shows_the_log_while_it_lasts_and_leaves_no_line(tmp_path: Path) -> None:
    log = tmp_path / "engine-v0.log"
    progress = Progress(console=Console(file=io.StringIO(), width=100))
    with progress, start_task(progress, "v0 start-up", log):
        (task,) = progress.tasks
        assert task.total is None and task.description == "v0 start-up"
        log.write_text("INFO [model_runner.py] Loading model [weights]\n")
        deadline = time.monotonic() + 10
        while "Loading" not in task.description and time.monotonic() < deadline:
            time.sleep(0.1)
        # read once a second, markup escaped: the brackets are the log's, not styles
        assert task.description == r"v0 start-up INFO \[model_runner.py] Loading model \[weights]"
    assert progress.tasks == []
