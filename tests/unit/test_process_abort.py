"""Ctrl-C during an engine's start-up: the health wait stops the engine instead of waiting it out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.engines.process import EngineError, ManagedProcess, free_port, set_abort_check


def test_health_wait_stops_the_engine_when_an_abort_is_requested(tmp_path: Path) -> None:
    # a process that never answers HTTP: without the abort the wait would last the full 60 s
    proc = ManagedProcess(["sleep", "60"], tmp_path / "engine.log")
    proc.start()
    asked = time.monotonic() + 0.5
    set_abort_check(lambda: "interrupted by SIGINT" if time.monotonic() > asked else None)
    t0 = time.monotonic()
    try:
        with pytest.raises(EngineError, match="vLLM start-up stopped: interrupted by SIGINT"):
            proc.wait_healthy(f"http://127.0.0.1:{free_port()}/health", 60, poll_s=0.1, what="vLLM")
    finally:
        set_abort_check(None)
    assert time.monotonic() - t0 < 10
    assert proc.poll() is not None  # the engine was stopped, not left running
