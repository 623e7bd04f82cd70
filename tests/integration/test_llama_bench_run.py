"""`engine.llama_bench` end to end on the CPU: a real llama-bench (built beside llama-server by
`scripts/gpu_bench.sh build`; `.ci/run` sets HARNESS_LLAMA_SERVER) runs before the server, and the report
sets it beside the server's own timings and the client; a llama-bench that fails leaves the run intact."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import llama_bench

from .conftest import SMALL_MODEL, harness_cli, llama_server_binary


@pytest.mark.slow
def test_llama_bench_beside_a_real_llama_server(tmp_path: Path, write_scenario) -> None:
    exe = llama_server_binary()
    if exe is None:
        pytest.skip("no llama-server binary (scripts/gpu_bench.sh build; set HARNESS_LLAMA_SERVER)")
    scn = write_scenario(
        {
            "name": "llama-bench-beside",
            "engine": {
                "type": "llamacpp",
                "launcher": "llama-server",
                "binary": exe,
                "model": {**SMALL_MODEL, "dtype": "f16"},
                "parallel": 2,
                "ctx_size": 1024,
                "threads": 1,
                "extra_args": ["-ctk", "f16", "--fit", "off"],
                "llama_bench": {"repetitions": 2},
            },
            "workload": {"input_tokens": 32, "output_tokens": 16},
            "load": {"concurrency": [1, 2], "requests": 3},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scn), "--results", str(tmp_path / "res"), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "llama-bench (variant 0): pp32 " in res.stderr
    assert "server options it was not given: --fit off" in res.stderr
    run = next((tmp_path / "res").iterdir())
    entry = json.loads((run / "manifest.json").read_text())["engines"][0]["llama_bench"]
    assert "error" not in entry, entry
    cmd = entry["command"]
    assert Path(cmd[0]).name == "llama-bench" and Path(cmd[0]).parent == Path(exe).parent
    assert cmd[cmd.index("-ngl") + 1] == "0" and cmd[cmd.index("-t") + 1] == "1"
    assert cmd[cmd.index("-ctk") + 1] == "f16"
    # what llama-bench wrote is in the run directory, and the manifest holds its tests as read from it
    assert entry["tests"] == llama_bench.parse((run / entry["file"]).read_text())
    assert [t["test"] for t in entry["tests"]] == ["pp32", "tg16", "pp32+tg16"]
    for t in entry["tests"]:
        assert t["avg_ts"] > 0 and len(t["samples_ts"]) == 2
        assert (t["n_threads"], t["n_gpu_layers"], t["type_k"]) == (1, 0, "f16")
    assert (run / entry["log"]).stat().st_size > 0
    # the server's own timings are in the points table, and the report compares the concurrency-1 point
    points = pd.read_csv(run / "points.csv")
    c1 = points[points.point_id == "v0-c1"].iloc[0]
    assert c1["server_prefill_tok_s_mean"] > 0 and c1["server_decode_tok_s_mean"] > 0
    ((title, rows, _),) = llama_bench.sections(
        json.loads((run / "manifest.json").read_text()), points.to_dict("records")
    )
    assert title.startswith("llama-bench beside the server, variant 0 (all layers on CPU), point v0-c1")
    pp = rows[0]
    assert pp["test"] == "pp32" and pp["client_tok_s"] == pytest.approx(32 / c1["ttft_s_mean"], rel=0.05)
    assert pp["server_vs_bench"] == pytest.approx(c1["server_prefill_tok_s_mean"] / pp["bench_tok_s"])
    md = (run / "report.md").read_text()
    assert f"## {title}" in md and "| pp32 |" in md and "| pp32+tg16 |" in md


@pytest.mark.slow
def test_a_failing_llama_bench_is_recorded_and_the_run_goes_on(tmp_path: Path, write_scenario) -> None:
    # /bin/false stands for a llama-bench that crashes at start (a missing library, an illegal instruction)
    scn = write_scenario(
        {
            "name": "llama-bench-fails",
            "engine": {
                "type": "llamacpp",
                "model": {**SMALL_MODEL, "dtype": "f16"},
                "parallel": 1,
                "ctx_size": 512,
                "llama_bench": {"binary": "/bin/false"},
            },
            "workload": {"input_tokens": 16, "output_tokens": 8},
            "load": {"concurrency": [1], "requests": 2},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scn), "--results", str(tmp_path / "res"), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "warning llama-bench (variant 0): llama-bench exited with code 1" in res.stderr
    run = next((tmp_path / "res").iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["engines"][0]["llama_bench"]["error"].startswith("llama-bench exited with code 1")
    md = (run / "report.md").read_text()
    assert "llama-bench did not measure: llama-bench exited with code 1" in md
