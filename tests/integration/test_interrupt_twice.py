"""A second Ctrl-C exits at once, also with an engine that does not stop on SIGTERM. One that came while
the first one's point was being cut short went on through the engine stop of the variant's `finally`,
which gave the engine its whole SIGTERM grace (10 s) first."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.results import read_manifest

from ..conftest import start_harness

pytestmark = pytest.mark.slow

# an engine that ignores SIGTERM, as a hung one does: the project's fake server on the port the harness
# gives llama-server (a SIGTERM ignored before exec stays ignored)
STUB = f"""#!/bin/sh
trap '' TERM
while [ $# -gt 0 ]; do [ "$1" = --port ] && port=$2; shift; done
exec {sys.executable} -m harness serve-fake --port "$port" --ttft-ms 50 --itl-ms 20
"""


def _wait_for(pred, timeout_s: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if got := pred():
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_ctrl_c_kills_an_engine_that_ignores_sigterm(write_scenario, tmp_path: Path) -> None:
    stub = tmp_path / "llama-server"
    stub.write_text(STUB)
    stub.chmod(0o755)
    model = {"source": "synthetic", "layers": 1, "hidden": 32, "heads": 2, "kv_heads": 2, "ffn": 32}
    scen = write_scenario(
        {
            "name": "it-twice",
            "engine": {"type": "llamacpp", "launcher": "llama-server", "binary": str(stub), "model": model},
            "workload": {"input_tokens": 8, "output_tokens": 400},
            "load": {"concurrency": [2], "requests": 400, "warmup_requests": 0},
        }
    )
    results = tmp_path / "results"
    proc = start_harness("run", str(scen), "--results", str(results), "--no-progress", own_group=True)
    engines: list[psutil.Process] = []
    try:
        run = _wait_for(
            lambda: next(iter(results.glob("*-it-twice")), None) if results.is_dir() else None, 60, "run"
        )
        _wait_for(lambda: (run / "requests.jsonl").is_file(), 90, "the first finished request")
        engines = [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "serve-fake" in " ".join(c.cmdline())
        ]
        assert engines
        # to the harness alone, as `kill -INT` sends it
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)  # the point is being cut short; the engine will ignore its SIGTERM
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        took_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for e in engines:
            if e.is_running():
                e.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted again: stopped at once" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    assert read_manifest(run)["status"] == "interrupted"
    # the engine's SIGTERM grace is not waited out a second time (5 s at exit, before)
    assert took_s < 4.0, (took_s, stderr[-2000:])
    for e in engines:
        assert not e.is_running() or e.status() == psutil.STATUS_ZOMBIE, e
