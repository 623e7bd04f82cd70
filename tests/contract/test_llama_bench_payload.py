"""llama-bench's JSON as a real one wrote it (`llama-bench -m tiny.gguf -p 32 -n 16 -pg 32,16 -r 2 -o json
-ngl 0`, the CPU build of scripts/gpu_bench.sh), and the server timings the comparison reads from a
recorded llama.cpp stream."""

from __future__ import annotations

import json
import math

from harness import llama_bench

from .sse import PAYLOADS, replay


def test_parse_a_real_llama_bench_json() -> None:
    text = (PAYLOADS / "llama_bench.json").read_text()
    tests = llama_bench.parse(text)
    assert [t["test"] for t in tests] == ["pp32", "tg16", "pp32+tg16"]
    for t in tests:
        assert t["avg_ts"] > 0 and len(t["samples_ts"]) == 2
        assert t["n_gpu_layers"] == 0 and t["backends"] == "CPU" and t["n_threads"] == 2
        assert math.isclose(sum(t["samples_ts"]) / 2, t["avg_ts"], rel_tol=1e-3)
    # a build from the trimmed source has no git history: its commit is `unknown`, not shown as a build
    assert llama_bench.build_of(text) is None
    named = json.loads(text)
    named[0].update(build_commit="4f0a3b1", build_number=7000)
    assert llama_bench.build_of(json.dumps(named)) == "4f0a3b1 (7000)"


def test_server_timings_carry_both_rates_the_comparison_reads() -> None:
    rec = replay("llamacpp_completions_stream.txt")
    assert rec.server_timings is not None
    assert rec.server_timings["prompt_per_second"] > 0 and rec.server_timings["predicted_per_second"] > 0
