"""`harness serve-fake --workers N`: its processes share one port (SO_REUSEPORT). Stopped by SIGTERM or
SIGHUP, the parent had left its workers serving, and a new server then shared the port with them
without a word: a run measured the old server's latencies."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from harness.engines.process import free_port, port_free
from tests.conftest import HARNESS


def _wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def _free_within(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            port_free("127.0.0.1", port)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@contextmanager
def _serving(argv: list[str], port: int) -> Iterator[subprocess.Popen[str]]:
    """`serve-fake` in a session of its own, once it answers; every process of it killed at the end."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_server_leaves_no_worker_and_a_taken_port_is_refused(sig: signal.Signals) -> None:
    port = free_port()
    argv = [*HARNESS, "serve-fake", "--port", str(port), "--workers", "2", "--ttft-ms", "1"]
    with _serving(argv, port) as proc:
        # a second server on the port is refused: it would have shared it with the first
        second = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert f"serve-fake: cannot listen on 127.0.0.1:{port}: Address already in use" in second.stderr
        proc.send_signal(sig)  # the parent alone, as `kill PID` sends it
        proc.wait(15)
        # its worker is gone too: nothing listens on the port
        assert _free_within(port, 5), f"a process still listens on {port}"


@pytest.mark.slow
def test_a_killed_server_takes_its_workers_with_it() -> None:
    port = free_port()
    with _serving([*HARNESS, "serve-fake", "--port", str(port), "--workers", "3"], port) as proc:
        proc.kill()  # no handler runs: the workers go because their parent died
        proc.wait(15)
        assert _free_within(port, 5), f"a process still listens on {port}"
