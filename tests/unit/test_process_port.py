"""An engine's health wait takes only the engine's own answer: a port another process took between the
harness's check and the engine's bind answered `/health` for it (and requests would have gone there)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.engines.process import EngineError, ManagedProcess, free_port, held_elsewhere, port_taken
from harness.testing.fake_server import FakeScript, FakeServer

# an engine stand-in that binds `port` after a moment (as a server does after loading) and serves GETs
SERVE = (
    "import sys, time, http.server\n"
    "time.sleep(float(sys.argv[2]))\n"
    "s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)\n"
    "s.serve_forever()\n"
)


def test_a_port_taken_by_another_server_is_not_the_engine_being_healthy(tmp_path: Path) -> None:
    other = FakeServer(FakeScript()).start_in_thread()  # listens in this process, answers /health 200
    port = int(other.base_url.rsplit(":", 1)[1])
    proc = ManagedProcess([sys.executable, "-c", SERVE, str(port), "0.3"], tmp_path / "engine.log")
    proc.start()
    try:
        with pytest.raises(EngineError) as e:
            proc.wait_healthy(f"{other.base_url}/health", 30, poll_s=0.05)
    finally:
        proc.stop()
        other.stop()
    # the engine exited on its failed bind: a start the caller tries again on another port
    assert "exited with code 1" in str(e.value) and port_taken(str(e.value))


def test_a_system_that_shows_no_sockets_is_no_evidence_of_another_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the socket table cannot be read (macOS without root) or comes back empty, the engine's own
    answer is taken, as before the check."""
    import psutil

    def denied(kind: str = "inet") -> list[object]:
        raise psutil.AccessDenied()

    port = free_port()
    proc = ManagedProcess([sys.executable, "-c", SERVE, str(port), "0.1"], tmp_path / "engine.log")
    proc.start()
    try:
        for table in (denied, lambda kind="inet": []):
            monkeypatch.setattr(psutil, "net_connections", table)
            assert proc.wait_healthy(f"http://127.0.0.1:{port}/", 30, poll_s=0.05) < 30
    finally:
        proc.stop()


def test_an_engine_that_listens_itself_is_healthy(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess([sys.executable, "-c", SERVE, str(port), "0.2"], tmp_path / "engine.log")
    proc.start()
    try:
        assert proc.wait_healthy(f"http://127.0.0.1:{port}/", 30, poll_s=0.05) < 30
        assert proc.proc is not None and not held_elsewhere(proc.proc.pid, port)
        assert not held_elsewhere(proc.proc.pid, free_port())  # nobody listens: no evidence of another
    finally:
        proc.stop()
