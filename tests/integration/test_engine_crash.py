"""SIGKILL the engine mid-run: clear message, non-zero exit, records kept, nothing left running."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from harness.results import iter_records, read_manifest

from ..conftest import start_harness
from .test_llamacpp_run import MODEL

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")


def _wait_for(pred, timeout_s: float, what: str):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _start_run(
    write_scenario, tmp_path: Path, workers: int = 1, own_group: bool = False
) -> tuple[subprocess.Popen[str], Path]:
    """`harness run` of a long point in a child process (`own_group`: leading a process group of its own,
    as a shell starts a command, so a terminal's Ctrl-C can be sent to the whole group)."""
    scen = write_scenario(
        {
            "name": "it-crash",
            # a model where a token costs milliseconds, and far more requests than the test waits for:
            # the run is still going when the engine is killed, however fast the machine
            "engine": {"type": "llamacpp", "model": MODEL, "parallel": 2, "threads": 1},
            "workload": {"input_tokens": 16, "output_tokens": 256},
            "load": {"concurrency": [2], "requests": 400, "warmup_requests": 0, "workers": workers},
        }
    )
    results = tmp_path / "results"
    proc = start_harness("run", str(scen), "--results", str(results), "--no-progress", own_group=own_group)
    run = _wait_for(
        lambda: next(iter(results.glob("*-it-crash")), None) if results.is_dir() else None,
        60,
        "run directory",
    )
    return proc, run


def _records(run: Path) -> int:
    p = run / "requests.jsonl"
    return len(p.read_text().splitlines()) if p.is_file() else 0


def _engine_of(proc: subprocess.Popen[str]) -> tuple[list[psutil.Process], psutil.Process]:
    """The harness's child processes, and the one engine among them."""
    children = psutil.Process(proc.pid).children(recursive=True)
    engines = [c for c in children if "xllamacpp_server" in " ".join(c.cmdline())]
    assert len(engines) == 1
    return children, engines[0]


def test_sigkill_engine_mid_run(write_scenario, tmp_path: Path) -> None:
    proc, run = _start_run(write_scenario, tmp_path)
    try:
        _wait_for(lambda: _records(run) >= 4, 120, "some finished requests")
        children, engine = _engine_of(proc)
        engine.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "engine process exited (code -9)" in stderr
    assert str(run) in stderr
    manifest = read_manifest(run)
    assert manifest["status"] == "failed"
    assert "engine process exited" in manifest["status_message"]
    recs = list(iter_records(run))
    assert sum(r.ok for r in recs) >= 4
    for c in children:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, c


def test_sigint_harness_stops_engine_and_marks_interrupted(write_scenario, tmp_path: Path) -> None:
    proc, run = _start_run(write_scenario, tmp_path)
    try:
        _wait_for(lambda: _records(run) >= 2, 120, "some finished requests")
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    assert "interrupted by SIGINT" in stderr
    assert read_manifest(run)["status"] == "interrupted"
    assert sum(r.ok for r in iter_records(run)) >= 2
    for c in children:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE, c


def test_a_terminals_ctrl_c_with_client_workers_prints_no_traceback(write_scenario, tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: each client worker process ended in a
    KeyboardInterrupt traceback before the harness's own one-line message."""
    proc, run = _start_run(write_scenario, tmp_path, workers=2, own_group=True)
    try:
        _wait_for(lambda: _records(run) >= 2, 120, "some finished requests")
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    assert "interrupted by SIGINT" in stderr
    assert read_manifest(run)["status"] == "interrupted"


def test_ctrl_c_with_a_hung_engine_lets_go_at_once(write_scenario, tmp_path: Path) -> None:
    """An engine that stops answering (SIGSTOP: a hang) and then a Ctrl-C: the point is cut short and
    nothing more is asked of the engine (re-tokenizing each finished stream waited out a 30 s timeout
    per request, minutes in all), so the harness is done in seconds."""
    proc, run = _start_run(write_scenario, tmp_path)
    engine: psutil.Process | None = None
    try:
        _wait_for(lambda: _records(run) >= 6, 120, "some finished requests")
        _, engine = _engine_of(proc)
        engine.send_signal(signal.SIGSTOP)
        time.sleep(1)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
        took_s = time.monotonic() - t0
    finally:
        if engine is not None and engine.is_running():
            engine.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    assert read_manifest(run)["status"] == "interrupted"
    assert took_s < 30, (took_s, stderr[-2000:])  # engine stop included (its SIGKILL after a grace period)
