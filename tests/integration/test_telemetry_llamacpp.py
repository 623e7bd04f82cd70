"""Telemetry in a real `harness run` on llama.cpp (CPU): CPU columns, engine /metrics, inventory.

Also the replay path: for every NVML trace recorded on a real GPU and committed under
tests/fixtures/nvml/, a run with $HARNESS_NVML_REPLAY gets the GPU columns and J/token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from harness.results import iter_records, read_manifest
from harness.telemetry import nvml
from harness.telemetry.cpu import find_rapl

from ..conftest import ROOT

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")

MODEL = {
    "source": "synthetic",
    "layers": 4,
    "hidden": 512,
    "heads": 8,
    "kv_heads": 8,
    "ffn": 1024,
    "vocab": 1000,
}
TRACES = sorted((ROOT / "tests" / "fixtures" / "nvml").glob("*.jsonl.gz"))
NO_TRACE_REASON = "no NVML trace recorded on a real GPU is committed in tests/fixtures/nvml yet"


def _gpu_present() -> bool:
    try:
        nvml.probe()
    except nvml.NvmlError:
        return False
    return True


def _run(write_scenario, tmp_path: Path, env: dict[str, str] | None = None) -> tuple[Path, str]:
    scen = write_scenario(
        {
            "name": "it-telemetry",
            "engine": {"type": "llamacpp", "model": MODEL, "parallel": 2, "threads": 2},
            "workload": {"input_tokens": 32, "output_tokens": 24},
            "load": {"concurrency": [1, 2], "requests": 4, "warmup_requests": 1},
            "telemetry": {"interval_s": 0.1},
        }
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(scen),
            "--results",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    run = next((tmp_path / "r").glob("*-it-telemetry"))
    return run, res.stderr


def test_cpu_run_has_telemetry_and_server_counters_match_records(write_scenario, tmp_path: Path) -> None:
    run, stderr = _run(write_scenario, tmp_path)
    assert "vs the engine's counter" not in stderr
    manifest = read_manifest(run)
    hw = manifest["hardware"]
    assert hw["cpu"]["threads"] >= 1 and hw["cpu"]["mem_total_bytes"] > 0
    tel = manifest["telemetry"]
    assert tel["cpu"]["engine_pid"] > 0
    # one sample at start, at each window edge (2 points: 4) and every interval in between: the count
    # follows the run's length, not a fixed number
    assert (
        tel["cpu"]["file"] == "telemetry-cpu-v0.parquet" == manifest["engines"][0]["telemetry"]["cpu"]["file"]
    )
    cpu = pd.read_parquet(run / tel["cpu"]["file"])
    assert len(cpu) == tel["cpu"]["samples"] >= 5
    span_s = (int(cpu["t_ns"].max()) - int(cpu["t_ns"].min())) / 1e9
    assert len(cpu) >= 0.8 * span_s / tel["cpu"]["interval_s"], (len(cpu), span_s)
    assert tel["engine_metrics"]["failures"] == 0
    if not _gpu_present():
        assert hw["gpu"]["available"] is False and hw["gpu"]["reason"]
        assert tel["nvml"]["absent"] and "absent: nvml" in stderr

    points = pd.read_parquet(run / "points.parquet").set_index("point_id")
    assert (points["engine_cpu_pct_mean"] > 0).all()
    assert (points["engine_rss_bytes_max"] > 0).all()
    assert (points["host_mem_used_bytes_max"] > 0).all()

    out_tokens: dict[str, int] = defaultdict(int)
    prompt_tokens: dict[str, int] = defaultdict(int)
    for r in iter_records(run):
        if not r.warmup:
            assert r.ok, r.error
            out_tokens[r.point_id] += r.output_tokens or 0
            prompt_tokens[r.point_id] += r.prompt_tokens or 0
    for pid, row in points.iterrows():
        # the server's own counters over the window equal what the records say, token for token
        assert row["server_llamacpp_tokens_predicted_total_delta"] == out_tokens[pid] == row["output_tokens"]
        assert row["server_llamacpp_prompt_tokens_total_delta"] == prompt_tokens[pid]
        assert row["server_output_tokens"] == row["output_tokens"] and row["server_output_tokens_diff"] == 0
        # its prompt counter and the cached one beside it (none cached here) against the client's count
        assert row["server_input_tokens"] == row["input_tokens"] and row["server_input_tokens_diff"] == 0
        # a gauge seen only at scrape times: on a fast machine a short window may never catch a request
        # in flight, but it can never exceed the server's slots
        assert 0 <= row["server_llamacpp_requests_processing_max"] <= 2

    doms, why = find_rapl()
    if doms:
        assert (points["cpu_energy_j"] > 0).all()
        assert (points["energy_scope"] == "cpu_package").all() or _gpu_present()
        ratio = points["energy_j"] / points["output_tokens"]
        assert (points["energy_j_per_output_token"] == ratio).all()
    elif not _gpu_present():
        assert "energy_j" not in points.columns
        assert tel["cpu"]["absent"]["rapl"] == why
    assert (run / "telemetry-engine-metrics-v0.jsonl.gz").is_file()


# no trace yet: one skipped case that says so (an empty parameter set would skip without a reason)
NO_TRACE = pytest.param(None, marks=pytest.mark.skip(reason=NO_TRACE_REASON), id="none-recorded")


@pytest.mark.parametrize("trace", TRACES or [NO_TRACE], ids=[t.name for t in TRACES] or None)
def test_run_with_replayed_nvml_trace(write_scenario, tmp_path: Path, trace: Path) -> None:
    run, _ = _run(write_scenario, tmp_path, {"HARNESS_NVML_REPLAY": str(trace)})
    tel = read_manifest(run)["telemetry"]["nvml"]
    assert tel["replayed_from"] == str(trace)
    points = pd.read_parquet(run / "points.parquet")
    covered = points[points["gpu_energy_j"].notna()]
    assert len(covered) >= 1, json.dumps(tel)
    assert (covered["gpu_power_w_mean"] > 0).all()
    # the replayed GPU energy, plus this host's CPU package energy where RAPL is readable
    cpu_j = covered["cpu_energy_j"].fillna(0) if "cpu_energy_j" in covered else 0.0
    assert (covered["energy_j"] == covered["gpu_energy_j"] + cpu_j).all()
    assert covered["energy_scope"].isin(["gpu", "gpu+cpu_package"]).all()
    ratio = covered["energy_j"] / covered["output_tokens"]
    assert (covered["energy_j_per_output_token"] == ratio).all()
