"""Ctrl-C during an engine's start-up: the health wait stops the engine instead of waiting it out."""

from __future__ import annotations

import hashlib
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


def _engine_with_a_child(tmp_path: Path) -> tuple[object, int]:
    """A harness stand-in (its own process) that starts an engine whose child outlives the engine's own
    death, as vLLM's EngineCore does: (that process, the engine's process group)."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from harness.engines.process import ManagedProcess\n"
        "p = ManagedProcess(['sh', '-c', 'sleep 300 & sleep 300'], Path(sys.argv[1]))\n"
        "p.start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    harness = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "engine.log")], stdout=subprocess.PIPE, text=True
    )
    assert harness.stdout is not None
    pgid = int(harness.stdout.readline())
    return harness, pgid


def test_a_killed_harness_takes_the_engines_children_with_it(tmp_path: Path) -> None:
    """SIGKILL of the harness: the engine (PR_SET_PDEATHSIG) and its children (the guard kills the
    group) are gone, where the children used to keep the GPUs."""
    import os
    import signal

    from harness.engines.process import group_alive

    harness, pgid = _engine_with_a_child(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while len(_members(pgid)) < 2 and time.monotonic() < deadline:  # sh and its background sleep
            time.sleep(0.05)
        assert len(_members(pgid)) >= 2
        harness.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        harness.wait(10)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not group_alive(pgid), _members(pgid)
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_stop_waits_until_the_whole_group_is_gone(tmp_path: Path) -> None:
    from harness.engines.process import group_alive

    proc = ManagedProcess(["sh", "-c", "trap '' TERM; sleep 300 & sleep 300"], tmp_path / "engine.log")
    proc.start()
    pgid, guard = proc.pid, proc.guard
    assert pgid is not None and guard is not None and guard.poll() is None  # watching
    deadline = time.monotonic() + 10
    while len(_members(pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.stop(grace_s=0.5)
    assert not group_alive(pgid)  # SIGTERM ignored by sh: SIGKILL, and the wait for every member
    assert guard.poll() == 0  # released: it found nothing left to kill, and exited


def _members(pgid: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os_getpgid(p.info["pid"]) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.info["pid"])
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
    return out


def os_getpgid(pid: int) -> int:
    import os

    return os.getpgid(pid)


def test_the_guard_leaves_a_group_whose_leader_number_went_to_another_process(tmp_path: Path) -> None:
    """The engine's group emptied and its number was reused by a new process: the guard, started with the
    engine leader's start time, finds another start time there and kills nothing."""
    import subprocess
    import sys

    from harness.engines.process import _GUARD, _started, group_alive

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        born = _started(other.pid)
        wrong = f"{float(born) - 1:.2f}"  # what the (gone) engine leader's start time would have been
        guard = subprocess.Popen(
            [sys.executable, "-c", _GUARD, str(other.pid), "1", wrong], stdin=subprocess.PIPE
        )
        assert guard.stdin is not None
        guard.stdin.close()  # as if the harness died
        assert guard.wait(10) == 0
        assert group_alive(other.pid) and other.poll() is None  # not ours: left alone
        # the same start time: it is the engine's group, and it goes
        guard = subprocess.Popen(
            [sys.executable, "-c", _GUARD, str(other.pid), "1", born], stdin=subprocess.PIPE
        )
        assert guard.stdin is not None
        guard.stdin.close()
        assert guard.wait(10) == 0 and other.wait(5) is not None
    finally:
        other.kill()
        other.wait()


def test_stopping_a_frozen_engine_wakes_it_to_take_its_sigterm(tmp_path: Path) -> None:
    """A frozen engine (SIGSTOP, Ctrl-Z) keeps a SIGTERM pending until it runs again: stop continues it,
    so an engine that exits on SIGTERM does so at once, not after the grace, and by its own handler (its
    clean shutdown, not the SIGKILL after the grace)."""
    import os
    import signal
    import sys

    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    log = tmp_path / "engine.log"
    proc = ManagedProcess([sys.executable, "-c", code], log)
    proc.start()
    end = time.monotonic() + 30
    while "ready" not in log.read_text() and time.monotonic() < end:
        time.sleep(0.05)
    assert proc.proc is not None
    pid = proc.proc.pid
    os.kill(pid, signal.SIGSTOP)
    # stopped for sure (a SIGCONT while the SIGSTOP is still pending would cancel it: no test)
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < end
        time.sleep(0.01)
    t0 = time.monotonic()
    code_back = proc.stop(grace_s=30)
    assert code_back == 7  # its own SIGTERM handler ran: a SIGKILL would give -9
    assert time.monotonic() - t0 < 20  # not the 30 s grace


def test_a_ctrl_c_while_the_model_is_hashed_stops_the_read_and_no_engine_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model of 100+ GB is read for its sha256 before the engine starts: a Ctrl-C meanwhile was waited
    out, and the engine was then started anyway (and stopped at once)."""
    from harness.model_errors import ModelError
    from harness.models import sha256_files

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * (8 << 20))
    read: list[int] = []
    set_abort_check(lambda: "interrupted by SIGINT" if read.append(1) or len(read) > 3 else None)
    try:
        with pytest.raises(
            ModelError, match=r"m.gguf: reading it for its sha256 stopped: interrupted by SIGINT"
        ):
            sha256_files([model])
        assert len(read) == 4  # stopped at the fourth of eight 1 MiB blocks
        proc = ManagedProcess(["sleep", "60"], tmp_path / "engine.log")
        with pytest.raises(EngineError, match=r"^sleep not started: interrupted by SIGINT$"):
            proc.start()
        assert proc.proc is None
    finally:
        set_abort_check(None)
    assert sha256_files([model])[0] == hashlib.sha256(model.read_bytes()).hexdigest()  # no abort: whole
