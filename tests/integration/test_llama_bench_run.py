"""`engine.llama_bench` end to end on the CPU: a real llama-bench (built beside llama-server by
`scripts/gpu_bench.sh build`; `.ci/run` sets HARNESS_LLAMA_SERVER) runs before the server, and the report
sets it beside the server's own timings and the client; every server option the harness carries over is
one that this llama-bench takes as one test configuration; a llama-bench that fails or runs out of time
leaves the run intact, with the tests it finished."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness import llama_bench
from harness.scenario import parse_scenario

from .conftest import SMALL_MODEL, harness_cli, llama_server_binary


def _server() -> str:
    exe = llama_server_binary()
    if exe is None:
        pytest.skip("no llama-server binary (scripts/gpu_bench.sh build; set HARNESS_LLAMA_SERVER)")
    return exe


def _engine(exe: str, **fields: object) -> dict:
    return {
        "type": "llamacpp",
        "launcher": "llama-server",
        "binary": exe,
        "model": {**SMALL_MODEL, "dtype": "f16"},
        "parallel": 2,
        "ctx_size": 1024,
        **fields,
    }


@pytest.mark.slow
def test_llama_bench_beside_a_real_llama_server(tmp_path: Path, write_scenario) -> None:
    exe = _server()
    scn = write_scenario(
        {
            "name": "llama-bench-beside",
            "engine": _engine(
                exe, threads=1, extra_args=["-ctk", "f16", "--fit", "off"], llama_bench={"repetitions": 2}
            ),
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
    manifest = json.loads((run / "manifest.json").read_text())
    (entry,) = manifest["llama_bench"]
    assert "error" not in entry, entry
    assert (entry["variant"], entry["attempt"], entry["n_gpu_layers"]) == (0, 0, 0)
    for cmd in entry["commands"]:
        assert Path(cmd[0]) == Path(exe).parent / "llama-bench"
        assert cmd[cmd.index("-ngl") + 1] == "0" and cmd[cmd.index("-t") + 1] == "1"
        assert cmd[cmd.index("-ctk") + 1] == "f16"
    # what llama-bench wrote is in the run directory, and the manifest holds its tests as read from it
    assert entry["tests"] == llama_bench.parse((run / entry["file"]).read_text())
    assert [t["test"] for t in entry["tests"]] == ["pp32", "pp32+tg15", "tg16 @ d32"]
    for t in entry["tests"]:
        assert t["avg_ts"] > 0 and len(t["samples_ts"]) == 2
        assert (t["n_threads"], t["n_gpu_layers"], t["type_k"]) == (1, 0, "f16")
    assert (run / entry["log"]).stat().st_size > 0
    # the server's own timings are in the points table, and the report compares the concurrency-1 point
    points = pd.read_csv(run / "points.csv")
    c1 = points[points.point_id == "v0-c1"].iloc[0]
    assert c1["server_prefill_tok_s_mean"] > 0 and c1["server_decode_tok_s_mean"] > 0
    ((title, rows, _),) = llama_bench.sections(manifest, points.to_dict("records"))
    assert title.startswith("llama-bench beside the server, variant 0 (n_gpu_layers 0), point v0-c1")
    pp = rows[0]
    assert pp["test"] == "pp32" and pp["client_tok_s"] == pytest.approx(32 / c1["ttft_s_mean"], rel=0.05)
    assert pp["server_vs_bench"] == pytest.approx(c1["server_prefill_tok_s_mean"] / pp["bench_tok_s"])
    md = (run / "report.md").read_text()
    assert f"## {title}" in md and "| pp32 |" in md and "| tg16 @ d32 |" in md
    # and the HTML report has the same table
    res = harness_cli("report", str(run), "--html", str(tmp_path / "r.html"))
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "r.html").read_text()
    assert f"<h2>{run.name}: {title}</h2>" in page and "<td>tg16 @ d32</td>" in page


@pytest.mark.slow
def test_every_carried_server_option_is_one_llama_bench_configuration(tmp_path: Path) -> None:
    """The server options the harness hands to llama-bench, each in the form llama-bench reads: the real
    llama-bench accepts them all and runs one configuration per test (a list value written with the
    server's commas would run several), and records the settings asked."""
    exe = _server()
    extra = [
        "-ub", "64", "-ctk", "q8_0", "-ctv", "q8_0", "--no-kv-offload", "-sm", "none", "-mg", "0",
        "--n-cpu-moe", "0", "-lm", "mmap", "--poll", "0", "--cpu-strict", "0", "-ts", "1,0",
    ]  # fmt: skip
    data = {
        "name": "t",
        "engine": _engine(
            exe, threads=1, batch_size=128, flash_attn=True, extra_args=extra, llama_bench={"repetitions": 1}
        ),
        "workload": {"input_tokens": 16, "output_tokens": 4},
    }
    s = parse_scenario(data, "t.yaml")
    assert llama_bench.options(s.engine)[1] == []  # nothing left out
    model = tmp_path / "m.gguf"
    from harness.models import make_gguf

    make_gguf(model, layers=2, hidden=128, dtype="f16")
    got = llama_bench.run(s.engine, str(model), s.workload, tmp_path, "v0")
    assert "error" not in got, (got, (tmp_path / "llama-bench-v0.log").read_text()[-2000:])
    assert [t["test"] for t in got["tests"]] == ["pp16", "pp16+tg3", "tg4 @ d16"]
    for t in got["tests"]:
        assert (t["n_threads"], t["n_batch"], t["n_ubatch"], t["flash_attn"]) == (1, 128, 64, 1)
        assert (t["type_k"], t["type_v"], t["no_kv_offload"], t["tensor_split"]) == (
            "q8_0",
            "q8_0",
            True,
            "1.00",
        )


@pytest.mark.slow
def test_a_failing_llama_bench_is_recorded_and_the_run_goes_on(tmp_path: Path, write_scenario) -> None:
    exe = _server()
    # /bin/false stands for a llama-bench that crashes at start (a missing library, an illegal instruction)
    scn = write_scenario(
        {
            "name": "llama-bench-fails",
            "engine": _engine(exe, parallel=1, ctx_size=512, llama_bench={"binary": "/bin/false"}),
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
    assert manifest["llama_bench"][0]["error"].startswith("llama-bench exited with code 1")
    md = (run / "report.md").read_text()
    assert "llama-bench measured nothing" in md and "- llama-bench: llama-bench exited with code 1" in md


@pytest.mark.slow
def test_llama_bench_out_of_time_keeps_the_tests_it_finished(tmp_path: Path) -> None:
    """Stopped at its time limit, llama-bench leaves the tests it finished (one JSON line each) and the
    entry says it was stopped: a 16-token prefill of a 0.2 GB model ends in a fraction of a second here,
    its 1023 decode steps (each reading every weight) take many seconds."""
    exe = _server()
    data = {
        "name": "t",
        "engine": _engine(
            exe, threads=1, parallel=1, ctx_size=2048, llama_bench={"repetitions": 1, "timeout_s": 4}
        ),
        "workload": {"input_tokens": 16, "output_tokens": 1024},
    }
    s = parse_scenario(data, "t.yaml")
    model = tmp_path / "m.gguf"
    from harness.models import make_gguf

    make_gguf(model, layers=8, hidden=1024, heads=8, kv_heads=8, ffn=2816, dtype="f16")
    got = llama_bench.run(s.engine, str(model), s.workload, tmp_path, "v0")
    assert got["error"] == "stopped after 4 s", got
    assert [t["test"] for t in got["tests"]] == ["pp16"]


@pytest.mark.slow
def test_ctrl_c_during_llama_bench_stops_it_and_says_so(tmp_path: Path, write_scenario) -> None:
    import signal
    import time

    import psutil

    from harness.models import make_gguf

    from ..conftest import start_harness

    exe = _server()
    # a 0.2 GB model: its 2047 decode steps take far longer than this test waits
    model = make_gguf(tmp_path / "m.gguf", layers=8, hidden=1024, heads=8, kv_heads=8, ffn=2816, dtype="f16")
    scn = write_scenario(
        {
            "name": "llama-bench-ctrl-c",
            "engine": {
                **_engine(exe, threads=1, parallel=1, ctx_size=4096, llama_bench={"repetitions": 5}),
                "model": {"source": "path", "path": str(model)},
            },
            "workload": {"input_tokens": 16, "output_tokens": 2048},
            "load": {"concurrency": [1], "requests": 1},
            "hardware": {"gpus": 0},
        }
    )
    results = tmp_path / "res"
    proc = start_harness("run", str(scn), "--results", str(results), "--no-progress")
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not list(results.glob("*/llama-bench-v0.log")):
            time.sleep(0.2)
        time.sleep(1.0)  # llama-bench is loading or measuring now
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    run = next(results.iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["status_message"] == "llama-bench (variant 0): interrupted by SIGINT"
    # the server never started, and no llama-bench is left running
    assert manifest["engines"] == [] and "llama_bench" not in manifest
    left = [p for p in psutil.process_iter(["cmdline"]) if str(model) in " ".join(p.info["cmdline"] or [])]
    assert left == []
