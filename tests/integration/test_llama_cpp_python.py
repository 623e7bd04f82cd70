"""The llama-cpp-python launcher (`python -m llama_cpp.server`) through `harness run`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.results import iter_records, read_manifest

from .conftest import harness_cli
from .test_llamacpp_run import run_dir_from

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp.server", reason="needs the llama-cpp-python extra (CI installs it)")


def test_llama_cpp_python_launcher_sweep(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(
        {
            "name": "it-lcp",
            "engine": {
                "type": "llamacpp",
                "launcher": "llama-cpp-python",
                "model": {"source": "synthetic"},
                "threads": 1,
                "ctx_size": 1024,
            },
            "workload": {"input_tokens": 24, "output_tokens": 12},
            "load": {"concurrency": [1, 2], "requests": 4, "warmup_requests": 1},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "results"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    run = run_dir_from(res.stderr)
    eng = read_manifest(run)["engines"][0]
    assert eng["launcher"] == "llama-cpp-python"
    assert eng["version"].startswith("llama-cpp-python ")
    assert "--interrupt_requests" in eng["command"] and "False" in eng["command"]
    assert eng["parallel_slots"] == 1
    assert any("one request at a time" in n for n in eng["notes"])
    # its streams carry no usage: a request without streaming measured what the server adds (BOS), which
    # the prompts' lengths count (they were that much longer than asked)
    (probe,) = read_manifest(run)["prompt_tokens"]
    assert probe["probe_usage"] == "a request without streaming" and probe["offset"] == 1, probe

    recs = [r for r in iter_records(run) if not r.warmup]
    assert len(recs) == 8
    for r in recs:
        assert r.ok, r.error
        assert r.finish_reason == "length"
        # concurrent streams ran to the end (without --interrupt_requests False: cut after one chunk)
        assert len(r.chunk_ns) >= 10
    points = pd.read_csv(run / "points.csv")
    assert list(points["concurrency"]) == [1, 2]
    # no usage in the stream: every stream ended for `length`, so each produced exactly max_tokens
    assert (points["output_tokens"] == 4 * 12).all()
    assert (points["output_tokens_from"] == "max_tokens").all()
    assert (points["missing_usage"] == 0).all()
    # and each prompt has the length the server's tokenizer gave it when it was built (24 tokens asked)
    assert all(
        r.prompt_tokens_source == "prompt_fit" and r.prompt_tokens == r.expected_input_tokens for r in recs
    )
    per_point = [sum(r.prompt_tokens or 0 for r in recs if r.point_id == p) for p in points["point_id"]]
    assert list(points["input_tokens"]) == per_point and min(per_point) >= 4 * 20
    assert (points["total_tok_s"] > points["output_tok_s"]).all()
