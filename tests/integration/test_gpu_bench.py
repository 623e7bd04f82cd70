"""scripts/gpu_bench.sh and scripts/gpu_table.py on the CPU, with real llama.cpp servers.

The GPU steps (CUDA build, NVML) cannot run here; everything around them does: the device step with a
llama-server binary built by `scripts/gpu_bench.sh build` (CPU-only; `.ci/run` builds it and sets
HARNESS_LLAMA_SERVER), its packing, `collect`, and the tables on real run directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from ..conftest import ROOT
from .conftest import harness_cli, llama_server_binary

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_table

TINY = {
    "source": "synthetic",
    "layers": 2,
    "hidden": 128,
    "heads": 4,
    "kv_heads": 2,
    "ffn": 256,
    "vocab": 1024,
}


def _gpu_bench(step: str, out: Path, env: dict[str, str], timeout_s: int) -> subprocess.CompletedProcess[str]:
    """`scripts/gpu_bench.sh STEP OUT` from the checkout, its output captured."""
    return subprocess.run(
        ["bash", "scripts/gpu_bench.sh", step, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.slow
def test_gpu_table_on_a_real_cpu_run(tmp_path: Path, write_scenario) -> None:
    scn = write_scenario(
        {
            "name": "offload-table",
            "engine": {
                "type": "llamacpp",
                "launcher": "xllamacpp",
                "model": {**TINY, "dtype": "q8_0"},
                "parallel": 2,
                "ctx_size": 1024,
            },
            "variants": [{"n_gpu_layers": 0}, {"n_gpu_layers": 0, "model": {**TINY, "dtype": "f16"}}],
            "workload": {"input_tokens": 32, "output_tokens": 24},
            "load": {"concurrency": [1, 2], "requests": 3, "warmup_scope": "engine"},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scn), "--results", str(tmp_path / "res"), "--no-progress")
    assert res.returncode == 0, res.stderr
    # warm-up only at each engine's first point
    run_dir = next((tmp_path / "res").iterdir())
    recs = [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
    assert sorted({r["point_id"] for r in recs if r["warmup"]}) == ["v0-c1", "v1-c1"]
    assert sum(1 for r in recs if not r["warmup"]) == 12
    rows, runs = gpu_table.load_rows(gpu_table.read_manifests(tmp_path / "res"))
    assert [r["status"] for r in runs] == ["complete"]
    assert [(r["precision"], int(r["concurrency"])) for r in rows] == [
        ("Q8_0", 1),
        ("Q8_0", 2),
        ("F16", 1),
        ("F16", 2),
    ]
    # every weight is in host RAM at n_gpu_layers 0: 2 blocks + output layer
    manifest = json.loads((run_dir / "manifest.json").read_text())
    wb = manifest["engines"][0]["model"]["weight_bytes"]
    assert rows[0]["split"].cpu_bytes == wb["blocks"] + wb["output"] and rows[0]["split"].gpu_bytes == 0
    assert rows[0]["split"].label == "0/2 blocks on GPU"
    # host bandwidth = bytes per step / TPOT p50 of the concurrency-1 point, per weight type
    cal = gpu_table.calibrate(rows)
    points = pd.read_csv(run_dir / "points.csv")
    tpot = float(points.loc[points.point_id == "v0-c1", "tpot_s_p50"].iloc[0])
    if tpot > 0:
        assert cal["Q8_0"]["cpu"] == pytest.approx((wb["blocks"] + wb["output"]) / tpot)
    assert "gpu" not in cal.get("Q8_0", {})
    md = gpu_table.render(tmp_path / "res")
    assert md.count("| Q8_0 | 0/2 blocks on GPU |") == 2 and md.count("| F16 | 0/2 blocks on GPU |") == 2
    # the README keeps what is outside the markers
    readme = tmp_path / "README.md"
    readme.write_text(f"# GPU runs\n\nintro\n\n{gpu_table.BEGIN}\nold\n{gpu_table.END}\n\nafter\n")
    gpu_table.write_readme(readme, md)
    text = readme.read_text()
    assert text.startswith("# GPU runs\n\nintro\n") and text.rstrip().endswith("after") and "old" not in text


@pytest.mark.slow
def test_device_step_and_collect_with_a_cpu_llama_server(tmp_path: Path, write_scenario) -> None:
    exe = llama_server_binary()
    if exe is None:
        pytest.skip("no llama-server binary (scripts/gpu_bench.sh build; set HARNESS_LLAMA_SERVER)")
    scn = write_scenario(
        {
            "name": "gpu-bench-rehearsal",
            "engine": {
                "type": "llamacpp",
                "launcher": "llama-server",
                "model": {**TINY, "dtype": "f16"},
                "parallel": 2,
                "ctx_size": 1024,
                "n_gpu_layers": 99,  # asked of a CPU build: every layer runs on the CPU, and it is said
                "llama_bench": {"repetitions": 1},  # the llama-bench built beside it, found through PATH
            },
            "workload": {"input_tokens": 32, "output_tokens": 16},
            "load": {"concurrency": [1, 2], "requests": 3},
        }
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_BENCH_LLAMA_SERVER": exe,
        "GPU_BENCH_SCENARIOS": str(scn),
        "GPU_BENCH_RESULTS": str(tmp_path / "results"),
        "GPU_BENCH_BUDGET_S": "300",
        "PYTHON": sys.executable,
    }
    res = _gpu_bench("device", out, env, timeout_s=600)
    assert res.returncode == 0, res.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files  # what the GPU machine may send back
    assert {"runs.tar.gz", "device.log", "logs.tar.gz", "traces.tar.gz"} == set(files)
    with tarfile.open(out / "logs.tar.gz") as tar:
        logs = tar.getnames()
    assert {"logs/gpu-info.json", "logs/runs.log", "logs/nvml-test.log", "logs/build.log"} <= set(logs)
    with tarfile.open(out / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("gpu-bench-rehearsal/manifest.json") for n in names), names

    dest = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", dest / "scripts")
    res = _gpu_bench("collect", out, {**env, "GPU_BENCH_DEST_ROOT": str(dest)}, timeout_s=120)
    assert res.returncode == 0, res.stderr[-3000:]
    manifests = list((dest / "results" / "gpu").rglob("manifest.json"))
    assert len(manifests) == 1
    m = json.loads(manifests[0].read_text())
    assert m["status"] == "complete"
    eng = m["engines"][0]
    assert eng["launcher"] == "llama-server" and eng["version"]
    # what llama.cpp's load log says it did, not what n_gpu_layers asked
    # (the load_tensors buffer lines come at --verbosity 4: where the weights went, here the CPU only)
    pl = eng["placement"]
    assert pl["gpu_layers_ignored"] is True and pl["gpu_weights_mib"] == 0 and pl["host_weights_mib"] > 0, pl
    assert all(name.startswith("CPU") for name in pl["model_buffers_mib"]), pl
    assert eng["offload"].startswith("all layers on CPU") and "found no usable GPU" in eng["warnings"][0]
    (bench,) = m["llama_bench"]
    assert "error" not in bench, bench
    cmd = bench["commands"][0]
    assert Path(cmd[0]) == Path(exe).parent / "llama-bench" and cmd[cmd.index("-ngl") + 1] == "99"
    assert [t["test"] for t in bench["tests"]] == ["pp32", "pp32+tg15", "tg16 @ d32"]
    readme = (dest / "results" / "gpu" / "README.md").read_text()
    assert readme.count("| F16 | 0/2 blocks on GPU |") == 2
    assert "### llama-bench beside the server" in readme and "| pp32+tg15 |" in readme
    assert list((dest / "results" / "gpu").glob("device-*/device.log"))
    inventory = json.loads(next((dest / "results" / "gpu").glob("device-*/gpu-info.json")).read_text())
    assert inventory["gpu"]["available"] is False and inventory["cpu"]["cores"] >= 1


@pytest.mark.slow
def test_a_build_still_running_at_its_limit_is_stopped_and_what_was_done_comes_back(
    tmp_path: Path, write_scenario
) -> None:
    """The device step's build gets until 90 s before the deadline: here a CPU build of llama.cpp with a
    120 s budget is stopped after about 30 s, with its compilers, and the logs and traces are packed
    all the same; `collect` takes them without run directories."""
    if not (ROOT / ".gpu-bench" / "llama.cpp-src.tar.gz").is_file() or shutil.which("cmake") is None:
        pytest.skip("no llama.cpp source in .gpu-bench (scripts/gpu_bench.sh source) or no cmake")
    scn = write_scenario(
        {
            "name": "gpu-bench-stopped",
            "engine": {"type": "llamacpp", "launcher": "llama-server", "model": {**TINY, "dtype": "f16"}},
            "load": {"concurrency": [1], "requests": 2},
        }
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "GPU_BENCH_BUILD_DIR": str(tmp_path / "build"),  # a fresh build, not a finished one reused
        "GPU_BENCH_CUDA": "0",
        "GPU_BENCH_SCENARIOS": str(scn),
        "GPU_BENCH_RESULTS": str(tmp_path / "results"),
        "GPU_BENCH_BUDGET_S": "120",
        "PYTHON": sys.executable,
    }
    env.pop("GPU_BENCH_LLAMA_SERVER", None)
    res = _gpu_bench("device", out, env, timeout_s=300)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "build: still running at its limit: stopped" in res.stderr
    assert "llama-server did not build (logs/build.log): no scenarios" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["device.log", "logs.tar.gz", "traces.tar.gz"]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp_path / "build") not in ps  # no compiler of the stopped build left running
    dest = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", dest / "scripts")
    res = _gpu_bench("collect", out, {**env, "GPU_BENCH_DEST_ROOT": str(dest)}, timeout_s=120)
    assert "no runs.tar.gz" in res.stderr, res.stderr[-2000:]
    assert list((dest / "results" / "gpu").glob("device-*/device.log"))
