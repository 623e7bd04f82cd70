"""`harness run` against the real llama.cpp server (xllamacpp) with a random-weight GGUF."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest

from harness.metrics import decode_tok_s
from harness.results import iter_records, read_manifest

from .conftest import harness_cli, run_dir_from

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")

# a token costs milliseconds (client overhead is small next to it), yet the model builds in a second
MODEL = {
    "source": "synthetic",
    "layers": 4,
    "hidden": 512,
    "heads": 8,
    "kv_heads": 8,
    "ffn": 1024,
    "vocab": 1000,
    "dtype": "f16",
}


def test_sweep_completes_with_exact_output_tokens(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(
        {
            "name": "it-llamacpp",
            "engine": {"type": "llamacpp", "model": MODEL, "parallel": 4, "threads": 1, "ctx_size": 4096},
            "workload": {"input_tokens": 64, "output_tokens": 32},
            "load": {"concurrency": [1, 2, 4], "requests": 6, "warmup_requests": 1},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "results"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    run = run_dir_from(res.stderr)

    manifest = read_manifest(run)
    assert manifest["status"] == "complete"
    assert manifest["schema_version"] == 2
    eng = manifest["engines"][0]
    assert eng["launcher"] == "xllamacpp" and eng["precision"] == "F16" and eng["n_gpu_layers"] == 0
    assert eng["model"]["sha256"] and len(eng["model"]["sha256"]) == 64
    assert manifest["host"]["cpu_logical"] >= 1

    records = list(iter_records(run))
    measured = [r for r in records if not r.warmup]
    assert len(measured) == 18 and len(records) == 21
    for r in records:
        assert r.ok, r.error
        assert r.output_tokens == 32, (r.request_id, r.output_tokens)
        # usually one chunk per token; the server may merge pieces, which the points table flags
        assert 28 <= len(r.chunk_ns) <= 32
        # input tokens are what the server prefills (BOS included): exactly the planned 64
        assert r.prompt_tokens == 64 == r.expected_input_tokens

    points = pd.read_csv(run / "points.csv")
    assert list(points["concurrency"]) == [1, 2, 4]
    assert points["gpu"].isna().all() and (points["gpus"] == 0).all()  # ran on the CPU: no GPU in its rows
    assert (points["errors"] == 0).all()
    assert (points["output_tokens"] == 6 * 32).all()
    merged = sum(1 for r in measured if len(r.chunk_ns) != r.output_tokens)
    assert points["chunk_token_mismatch"].sum() == merged
    # each request's decode rate from its stream agrees with llama.cpp's own timing of it within 10 %
    # (the median at concurrency 1: one request's stream delayed by a busy host does not decide it)
    c1 = [r for r in measured if r.point_id == "v0-c1"]
    ratios = [decode_tok_s(r) / r.server_timings["predicted_per_second"] for r in c1 if r.server_timings]
    assert len(ratios) == 6
    assert 0.9 <= statistics.median(ratios) <= 1.1, ratios
    assert "v0-c4" in (run / "report.md").read_text()
    assert "out tok/s" in res.stdout


def test_engine_start_failure_is_a_clear_error(write_scenario, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"GGUF but not really")
    scen = write_scenario(
        {
            "name": "it-bad-model",
            "engine": {"type": "llamacpp", "model": {"source": "path", "path": str(bogus)}},
            "load": {"concurrency": [1], "requests": 1},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "results"), "--no-progress")
    assert res.returncode in (2, 3)
    assert "Traceback" not in res.stderr
    assert "not-a-model.gguf" in res.stderr


def test_a_model_in_split_files_runs_with_all_its_weights_counted(write_scenario, tmp_path: Path) -> None:
    """A GGUF written in 3 split files, named by its first: llama.cpp loads all three, and the manifest
    counts the weights of all three (the roofline's bytes per token), as llama.cpp's buffers do."""
    from harness.models import make_gguf

    from ..gguf_split import write_split

    shape = {k: v for k, v in MODEL.items() if k not in ("source", "dtype")}
    whole = make_gguf(tmp_path / "whole.gguf", **shape)
    first = write_split(whole, tmp_path / "split", max_tensors=16)[0]
    scen = write_scenario(
        {
            "name": "it-split",
            "engine": {"type": "llamacpp", "model": {"source": "path", "path": str(first)}, "threads": 1},
            "workload": {"input_tokens": 16, "output_tokens": 8},
            "load": {"concurrency": [1], "requests": 2},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "results"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    eng = read_manifest(run_dir_from(res.stderr))["engines"][0]
    model = eng["model"]
    assert model["split_count"] == 3 and model["size_bytes"] > 2 * first.stat().st_size
    weights_mib = sum(model["weight_bytes"].values()) / 2**20
    # what llama.cpp mapped over the three files, as its load log says
    assert eng["placement"]["host_weights_mib"] == pytest.approx(weights_mib, rel=0.02)
    points = pd.read_parquet(next((tmp_path / "results").glob("*-it-split/points.parquet")))
    assert points["ok"].tolist() == [2]
