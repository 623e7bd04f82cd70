"""Kill a sweep mid-way (SIGKILL the harness itself), resume it, and get the same table as a clean run."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.results import iter_records, read_manifest

from ..conftest import start_harness
from .conftest import harness_cli

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")

SCENARIO = {
    "name": "it-resume",
    "engine": {"type": "llamacpp", "model": {"source": "synthetic"}, "parallel": 2, "threads": 1},
    "workload": {"input_tokens": 16, "output_tokens": 24},
    "load": {"concurrency": [1, 2, 4], "requests": 6, "warmup_requests": 0},
}
SHAPE = ["point_id", "concurrency", "requests", "ok", "errors", "output_tokens"]


def test_killed_sweep_resumes_to_the_same_table(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(SCENARIO)
    results = tmp_path / "results"
    proc = start_harness("run", str(scen), "--results", str(results), "--no-progress")
    try:
        t0 = time.monotonic()
        run = None
        while time.monotonic() - t0 < 120:
            runs = list(results.glob("*-it-resume")) if results.is_dir() else []
            if runs and (runs[0] / "manifest.json").is_file():
                run = runs[0]
                if "v0-c1" in read_manifest(run).get("points_done", []):
                    break
            time.sleep(0.05)
        assert run is not None, "the run never finished its first point"
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)  # the harness dies without any cleanup of its own
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the engine followed its parent (PR_SET_PDEATHSIG), nothing is left running
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    before = read_manifest(run)
    assert before["status"] == "running"  # killed: never got to mark itself
    assert "v0-c1" in before["points_done"] and "v0-c4" not in before["points_done"]
    n_before = len(list(iter_records(run)))
    # the killed engine checkpointed its raw samples up to its last point; its manifest entry names them
    killed = pd.read_parquet(run / "telemetry-cpu-v0.parquet")
    assert before["engines"][0]["telemetry"]["cpu"]["file"] == "telemetry-cpu-v0.parquet"
    c1_s = pd.read_csv(run / "points.csv").set_index("point_id").loc["v0-c1", "window_s"]
    assert (killed["t_ns"].max() - killed["t_ns"].min()) / 1e9 >= c1_s  # the samples cover its first point

    res = harness_cli("run", str(scen), "--resume", str(run), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "already done" in res.stderr
    after = read_manifest(run)
    assert after["status"] == "complete" and len(after["resumed_utc"]) == 1
    assert after["points_done"] == ["v0-c1", "v0-c2", "v0-c4"]
    # the resumed engine's samples went to files of its own; the killed one's are left as they were
    assert after["engines"][-1]["attempt"] == 1
    assert after["engines"][-1]["telemetry"]["cpu"]["file"] == "telemetry-cpu-v0-a1.parquet"
    assert (run / "telemetry-cpu-v0-a1.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(run / "telemetry-cpu-v0.parquet"), killed)
    recs = list(iter_records(run))
    assert len(recs) >= n_before  # nothing dropped
    assert len({r.request_id for r in recs}) == len(recs)  # ids continue, never reused
    resumed = pd.read_csv(run / "points.csv")
    by_point = resumed.set_index("point_id")["attempt"]
    assert by_point["v0-c1"] == 0 and by_point["v0-c4"] == 1  # which engine start measured each point
    assert "v0-c4 (resume 1)" in (run / "report.md").read_text()

    clean = harness_cli("run", str(scen), "--results", str(tmp_path / "clean"), "--no-progress")
    assert clean.returncode == 0, clean.stderr[-3000:]
    clean_run = next((tmp_path / "clean").glob("*-it-resume"))
    fresh = pd.read_csv(clean_run / "points.csv")
    pd.testing.assert_frame_equal(resumed[SHAPE], fresh[SHAPE])


def test_resume_refuses_a_different_scenario(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario({**SCENARIO, "load": {"concurrency": [1], "requests": 2, "warmup_requests": 0}})
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    run = next((tmp_path / "r").glob("*-it-resume"))
    other = write_scenario({**SCENARIO, "workload": {"input_tokens": 8, "output_tokens": 8}}, "other.yaml")
    res = harness_cli("run", str(other), "--resume", str(run), "--no-progress")
    assert res.returncode == 2
    assert "different scenario" in res.stderr and "Traceback" not in res.stderr
    res = harness_cli("run", str(scen), "--resume", str(run), "--no-progress")
    assert res.returncode == 2 and "already complete" in res.stderr
    # a resumed run stays in its own directory: another --results would be ignored, so it is refused
    res = harness_cli("run", str(scen), "--resume", str(run), "--results", str(tmp_path / "x"))
    assert (
        res.returncode == 2 and f"--results: not used with --resume (the run continues in {run}" in res.stderr
    )
    assert not (tmp_path / "x").exists()
