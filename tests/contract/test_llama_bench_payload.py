"""llama-bench's output as a real one wrote it (the CPU build of scripts/gpu_bench.sh, a tiny random-weight
model): `-o json` of `llama-bench -m tiny.gguf -p 32 -n 16 -pg 32,16 -r 2 -ngl 0`, and `-o jsonl` of the
two invocations the harness makes for a 32-token prompt and 16 output tokens (`-p 32 -n 0 -pg 32,15`, then
`-p 0 -n 16 -d 32`); and the server timings the comparison reads from a recorded llama.cpp stream."""

from __future__ import annotations

import json
import math

import pytest

from harness import llama_bench

from .sse import PAYLOADS, replay


@pytest.mark.parametrize(
    ("name", "tests"),
    [
        ("llama_bench.json", ["pp32", "tg16", "pp32+tg16"]),
        ("llama_bench.jsonl", ["pp32", "pp32+tg15", "tg16 @ d32"]),
    ],
)
def test_parse_real_llama_bench_output(name: str, tests: list[str]) -> None:
    text = (PAYLOADS / name).read_text()
    got = llama_bench.parse(text)
    assert [t["test"] for t in got] == tests
    for t in got:
        assert t["avg_ts"] > 0 and len(t["samples_ts"]) == 2
        assert t["n_gpu_layers"] == 0 and t["backends"] == "CPU" and t["n_threads"] == 2
        assert math.isclose(sum(t["samples_ts"]) / 2, t["avg_ts"], rel_tol=1e-3)
    # a build from the trimmed source has no git history: its commit is `unknown`, not shown as a build
    assert llama_bench.build_of(text) is None


def test_build_of_names_a_known_build() -> None:
    tests = json.loads((PAYLOADS / "llama_bench.json").read_text())
    tests[0].update(build_commit="4f0a3b1", build_number=7000)
    assert llama_bench.build_of(json.dumps(tests)) == "4f0a3b1 (7000)"
    lines = "\n".join(json.dumps(t) for t in tests)
    assert llama_bench.build_of(lines) == "4f0a3b1 (7000)"


def test_server_timings_carry_both_rates_the_comparison_reads() -> None:
    rec = replay("llamacpp_completions_stream.txt")
    assert rec.server_timings is not None
    assert rec.server_timings["prompt_per_second"] > 0 and rec.server_timings["predicted_per_second"] > 0
