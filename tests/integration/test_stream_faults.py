"""Faulty streams (HTTP 429/500, cut streams, malformed events, stalls) through `harness run` against the
fake server: the run finishes, each failed request is recorded with its kind, good ones are intact."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from harness.results import iter_records, read_manifest

from ..conftest import HARNESS, ROOT, start_fake_server
from .conftest import harness_cli

pytestmark = pytest.mark.slow

FAULTS = [
    (["--fail-every", "2", "--fail-status", "429"], "http", "HTTP 429"),
    (["--fail-every", "2", "--fail-status", "500"], "http", "HTTP 500"),
    (["--drop-after", "3"], "disconnected", "Disconnected: connection closed in state chunk_size"),
    (["--bad-json-after", "3"], "protocol", 'bad SSE JSON: {"choices": [{"text": "unterminated'),
    (["--stall-after", "3"], "timeout", "no complete response within 1.5 s"),
    # a whole HTTP response that never said the stream was over: cut short somewhere, not a success
    (["--end-after", "3"], "disconnected", "stream ended without [DONE] or finish_reason"),
    # a server error after some tokens, as vLLM and llama.cpp send it, and as earlier llama.cpp servers did
    # (an `error:` line, then [DONE]): the request failed, it is not a short success
    (["--error-after", "3", "--error-as", "data"], "http", "error in stream: {'code': 500"),
    (["--error-after", "3", "--error-as", "field"], "http", "scripted error mid-stream"),
]


def _run_until_records(scenario: Path, results: Path, n: int) -> subprocess.Popen[str]:
    """`harness run SCENARIO` in the background, returned once its run has `n` request records (or 60 s
    passed)."""
    proc = subprocess.Popen(
        [*HARNESS, "run", str(scenario), "--results", str(results), "--no-progress"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and not [
        p for p in results.glob("*/requests.jsonl") if len(p.read_text().splitlines()) >= n
    ]:
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize(("flags", "kind", "text"), FAULTS, ids=[f[0][0] + f[0][-1] for f in FAULTS])
def test_stream_fault_is_recorded_with_its_kind(write_scenario, tmp_path: Path, flags, kind, text) -> None:
    server, url = start_fake_server(tmp_path / "fake.log", 5, 2, *flags)
    try:
        scen = write_scenario(
            {
                "name": "it-fault",
                "engine": {
                    "type": "external",
                    "base_url": f"{url}/v1",
                    "health_path": "/health",
                    "model": {"source": "served", "name": "fake"},
                },
                "workload": {"input_tokens": 8, "output_tokens": 8, "request_timeout_s": 1.5},
                "load": {"concurrency": [2], "requests": 6, "warmup_requests": 0},
            }
        )
        res = harness_cli(
            "run", str(scen), "--results", str(tmp_path / "results"), "--no-progress", timeout=120
        )
    finally:
        server.stop()
    assert "Traceback" not in res.stderr
    run = next((tmp_path / "results").glob("*-it-fault"))
    recs = [r for r in iter_records(run) if not r.warmup]
    assert len(recs) == 6
    bad = [r for r in recs if not r.ok]
    good = [r for r in recs if r.ok]
    said = " ".join((res.stdout + res.stderr).split())  # the terminal wraps long lines
    # every second request fails with --fail-every 2; every request meets the other faults
    assert len(good) == (3 if flags[0] == "--fail-every" else 0), [(r.error_kind, r.error) for r in recs]
    m = read_manifest(run)
    if good:  # the point measured something: exit 0, the failures noted under the table
        assert res.returncode == 0, res.stderr[-2000:]
        assert m["status"] == "complete"
        assert f"point v0-c2: {len(bad)} of 6 measured requests failed" in said
    else:  # nothing measured: said so, with the first error, and exit 3
        assert res.returncode == 3, res.stderr[-2000:]
        assert "point v0-c2: all 6 measured requests failed" in said
        assert "every measured request failed: the run measures nothing (first error: " in said
        # the run is failed, not complete: compare does not take its empty points over an earlier run's
        assert m["status"] == "failed" and m["status_message"].startswith("every measured request failed")
        assert "--resume" not in said
    assert bad and all(r.error_kind == kind for r in bad), [(r.error_kind, r.error) for r in recs]
    assert all(text in (r.error or "") for r in bad), [r.error for r in bad]
    assert all(r.output_tokens == 8 for r in good)  # the others are complete and correct
    point = pd.read_csv(run / "points.csv").iloc[0]
    assert point["errors"] == len(bad) and point["error_kinds"] == f"{kind}:{len(bad)}"
    assert not [c for c in psutil.Process().children(recursive=True) if "serve-fake" in " ".join(c.cmdline())]


def test_an_external_endpoint_that_goes_away_ends_the_run_as_failed(write_scenario, tmp_path: Path) -> None:
    """An endpoint has no process the run could watch: once requests fail to connect and its health check
    no longer answers, the point is cut short, the later points are not run against nothing, exit 3."""

    from .conftest import run_dir_from

    server, url = start_fake_server(tmp_path / "fake.log", 5, 5)
    proc = None
    try:
        scen = write_scenario(
            {
                "name": "it-gone",
                "engine": {
                    "type": "external",
                    "base_url": url,
                    "health_path": "/health",
                },
                "workload": {"input_tokens": 8, "output_tokens": 20},
                "load": {"concurrency": [2, 4], "requests": 400, "warmup_requests": 0},
            }
        )
        proc = _run_until_records(scen, tmp_path / "r", 10)
        server.stop()
        _, stderr = proc.communicate(timeout=120)
    finally:
        server.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    said = " ".join(stderr.split())
    # the requests in flight when it went are cut (disconnected), the ones sent after it fail to connect:
    # which of them come before the health check is asked depends on timing
    assert "point v0-c2: the endpoint stopped answering its health check (" in said
    assert "connect:" in said or "disconnected:" in said
    run = run_dir_from(stderr)
    m = read_manifest(run)
    assert m["status"] == "failed" and m["points_done"] == []
    points = pd.read_csv(run / "points.csv")
    assert list(points["point_id"]) == ["v0-c2"] and str(points["aborted"][0]).startswith("the endpoint")


def test_a_frozen_endpoint_ends_the_run_instead_of_stalling_it(write_scenario, tmp_path: Path) -> None:
    """A server that stops answering without closing anything (frozen, deadlocked; here SIGSTOP): its
    requests time out, its health check does not answer, so the point is cut short and the run ends,
    rather than asking it for more (tokenizer calls, the next point's requests) one timeout at a time."""

    from .conftest import run_dir_from

    server, url = start_fake_server(tmp_path / "fake.log", 5, 50)
    proc = None
    try:
        scen = write_scenario(
            {
                "name": "it-frozen",
                "engine": {"type": "external", "base_url": url, "health_path": "/health"},
                "workload": {"input_tokens": 8, "output_tokens": 10, "request_timeout_s": 1.0},
                "load": {"concurrency": [1, 2], "requests": 40, "warmup_requests": 0},
            }
        )
        proc = _run_until_records(scen, tmp_path / "r", 3)
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        t_frozen = time.monotonic()
        _, stderr = proc.communicate(timeout=300)
        took = time.monotonic() - t_frozen
        os.kill(pid, signal.SIGCONT)
    finally:
        if (pid := server.pid) is not None:
            os.kill(pid, signal.SIGCONT)
        server.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr[-2000:]
    said = " ".join(stderr.split())
    assert "point v0-c1: the endpoint stopped answering its health check (" in said and "timeout:" in said
    m = read_manifest(run_dir_from(stderr))
    assert m["status"] == "failed" and m["points_done"] == []  # c2 was not sent to a frozen server
    # 37 requests of 1 s timeouts would take 37 s; the health check gives up after 5 s
    assert took < 30, took


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_engine_whose_health_check_waits_is_not_taken_for_hung(
    write_scenario, tmp_path: Path, workers: int
) -> None:
    """Requests time out (1.5 s against 4 s of output) while the server keeps streaming, and its health
    route waits for the streams to end (as llama-cpp-python's /v1/models): still producing, so not lost.
    With client processes the parent hears the streams through the records they send back."""
    server, url = start_fake_server(tmp_path / "fake.log", 5, 20, "--health-waits")
    try:
        scen = write_scenario(
            {
                "name": "it-busy",
                "engine": {"type": "external", "base_url": url, "health_path": "/health"},
                "workload": {"input_tokens": 8, "output_tokens": 200, "request_timeout_s": 1.5},
                "load": {"concurrency": [2], "requests": 12, "warmup_requests": 0, "workers": workers},
            }
        )
        res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=180)
    finally:
        server.stop()
    said = " ".join(res.stderr.split())
    assert "stopped answering its health check" not in said, said[-2000:]
    run = next((tmp_path / "r").glob("*-it-busy"))
    recs = [r for r in iter_records(run) if not r.warmup]
    assert len(recs) == 12 and all(r.error_kind == "timeout" and r.chunk_ns for r in recs)


@pytest.mark.parametrize(
    ("requests", "warmup"), [(1_000_000, 0), (1_000, 1_000_000)], ids=["measured", "warmup"]
)
def test_ctrl_c_while_a_large_point_is_planned_stops_the_planning(
    write_scenario, tmp_path: Path, requests: int, warmup: int
) -> None:
    """An endpoint without /tokenize gives no token count to stop at: a Ctrl-C waited for every prompt of
    the point to be made (43 s for a million). It now stops within a thousand of them."""
    import threading

    server, url = start_fake_server(tmp_path / "fake.log", 1, 1)
    proc: subprocess.Popen[str] | None = None
    try:
        scen = write_scenario(
            {
                "name": "it-plan",
                "engine": {
                    "type": "external",
                    "base_url": f"{url}/v1",
                    "health_path": "/health",
                    "model": {"source": "served", "name": "fake"},
                },
                "workload": {"input_tokens": 8, "output_tokens": 4},
                "load": {"concurrency": [1], "requests": requests, "warmup_requests": warmup},
            }
        )
        results = tmp_path / "results"
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
        proc = subprocess.Popen(
            [*HARNESS, "run", str(scen), "--results", str(results), "--no-progress"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        said: list[str] = []
        healthy = threading.Event()

        def read(stream: Any) -> None:
            for line in stream:
                said.append(line)
                if "engine healthy" in line:  # the planning starts right after
                    healthy.set()

        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        assert healthy.wait(60), "".join(said)[-2000:]
        time.sleep(2)  # well into the planning (about 45 s for a million prompts here)
        asked = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        took_s = time.monotonic() - asked
        reader.join(10)
        stderr = "".join(said)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted by SIGINT" in stderr, stderr[-2000:]
    assert took_s < 10, took_s  # a million prompts take about 45 s here
    run = next(results.glob("*-it-plan"))
    assert read_manifest(run)["status"] == "interrupted"
    assert not list(iter_records(run))  # nothing was sent
