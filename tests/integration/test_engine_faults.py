"""Engine faults at start-up against the real llama.cpp server: clear errors, nothing left running."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psutil
import pytest

from harness.engines import llamacpp
from harness.engines.process import EngineError, ManagedProcess
from harness.scenario import LlamaCppEngine

from .conftest import harness_cli

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")


def _engine(**kw) -> LlamaCppEngine:
    return LlamaCppEngine(type="llamacpp", model={"source": "synthetic"}, threads=1, **kw)


def _no_survivor(proc: ManagedProcess | None) -> None:
    assert proc is not None and proc.pid is not None
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def test_port_taken_between_check_and_bind_retries_on_another_port(tmp_path: Path, monkeypatch) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    real_free_port = llamacpp.free_port
    ports = iter([busy_port])
    monkeypatch.setattr(llamacpp, "free_port", lambda host: next(ports, None) or real_free_port(host))
    srv = llamacpp.LlamaCppServer(_engine(), tmp_path / "engine.log")
    try:
        url = srv.start()
        assert srv.port != busy_port and url.endswith(f":{srv.port}")
        assert "couldn't bind" in (tmp_path / "engine.log").read_text()
    finally:
        srv.stop()
        busy.close()
    _no_survivor(srv.proc)


def test_health_timeout_names_the_url_and_quotes_the_log(tmp_path: Path) -> None:
    srv = llamacpp.LlamaCppServer(_engine(health_timeout_s=0.001), tmp_path / "engine.log")
    with pytest.raises(EngineError) as ei:
        srv.start()
    msg = str(ei.value)
    assert f"not healthy at {srv.base_url}/health after 0.001 s" in msg
    assert "last log lines" in msg
    _no_survivor(srv.proc)


def test_engine_dying_at_start_quotes_its_log_and_exits_3(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(
        {
            "name": "it-bad-flag",
            "engine": {
                "type": "llamacpp",
                "model": {"source": "synthetic"},
                # a field xllamacpp has and takes a value for, which llama.cpp refuses at start
                "extra_args": ["cache_type_k=7"],
            },
            "load": {"concurrency": [1], "requests": 1},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "results"), "--no-progress")
    assert res.returncode == 3
    assert "Traceback (most recent call last)" not in res.stderr.split("last log lines")[0]
    assert "engine (variant 0) did not start" in res.stderr
    assert "exited with code 1 before becoming healthy" in res.stderr
    assert "xllamacpp did not start the server: Failed to init server" in res.stderr  # its log, quoted
    assert "run failed" in res.stderr
    # no request ran, so none is said to be kept (the logs and the manifest are)
    said = " ".join(res.stderr.split())
    assert "0 of 1 point(s) done; no request finished; logs in" in said, said[-2000:]
    # a resume would refuse the mended scenario, and there is nothing to continue
    assert "(run it again once the cause is mended)" in said and "--resume" not in said
    # the command that failed, and why, are in the manifest (which has no engines entry for it)
    (run,) = (tmp_path / "results").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["engines"] == []
    (failed,) = manifest["failed_starts"]
    assert failed["variant"] == 0 and failed["attempt"] == 0
    assert "exited with code 1 before becoming healthy" in failed["error"]
    assert "cache_type_k=7" in failed["command"]
