"""Exact prompt lengths through the real llama.cpp server (its tokenizer, its usage counts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.results import iter_records, read_manifest
from tests.integration.conftest import harness_cli, run_dir_from

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")

MODEL = {
    "source": "synthetic",
    "layers": 2,
    "hidden": 128,
    "heads": 4,
    "kv_heads": 4,
    "ffn": 256,
    "vocab": 1000,
}


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_server_reports_exactly_the_planned_prompt_tokens(write_scenario, tmp_path: Path, api: str) -> None:
    scen = write_scenario(
        {
            "name": f"it-lengths-{api}",
            "engine": {"type": "llamacpp", "model": MODEL, "parallel": 2, "threads": 2, "ctx_size": 2048},
            "workload": {
                "api": api,
                "input_tokens": {"dist": "uniform", "mean": 154, "min": 9, "max": 300},
                "output_tokens": 4,
            },
            "load": {"concurrency": [2], "requests": 8, "warmup_requests": 0},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    run = run_dir_from(res.stderr)
    info = read_manifest(run)["prompt_tokens"][0]
    assert info["source"].startswith("engine") and info["offset"] is not None
    recs = [r for r in iter_records(run) if not r.warmup]
    assert len(recs) == 8 and all(r.ok for r in recs)
    planned = [r.expected_input_tokens for r in recs]
    assert len(set(planned)) > 3  # the uniform distribution was sampled
    assert [r.prompt_tokens for r in recs] == planned
    row = pd.read_csv(run / "points.csv").iloc[0]
    assert row["prompt_token_mismatch"] == 0
    # the streamed text was counted with the engine's tokenizer beside usage and the chunks
    assert row["output_chunks"] == row["output_tokens"] == 32
    # the random model emits only pieces that re-tokenize to themselves: text, chunks and usage agree
    assert row["output_text_tokens"] == 32 and row["text_token_mismatch"] == 0
    # counted after the records were written: kept beside them, so the records on disk give the same
    assert sum(r.output_text_tokens or 0 for r in recs) == 32
    assert (run / "token-counts.jsonl").is_file()
