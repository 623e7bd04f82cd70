"""Roofline plausibility of the published claims (no runs: the measured column stays '-')."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from harness.catalog.claims import Claim, claims
from harness.claims import check

NO_RUNS = pd.DataFrame()


def _claim(cid: str) -> Claim:
    return next(c for c in claims() if c.id == cid)


def test_3311_tok_s_for_70b_on_one_h100_is_not_possible() -> None:
    """Not on one H100, which the claim does not name: its verdict says on how many it could be (before,
    "not possible as stated", for an article that never said one)."""
    r = check(_claim("article-70b-h100"), NO_RUNS)
    assert r.measured == "-"
    assert r.verdict == "plausible on 2 or more devices (the claim names no count)"
    one = _claim("article-70b-h100").model_copy(update={"devices": 1})
    assert check(one, NO_RUNS).verdict == "not possible as stated"
    # bf16: 141.2 GB of weights; fp8: 72.70 GB held (68.50e9 linear parameters at 1 byte, the embeddings
    # and lm_head, 2 x 128,256 x 8,192, at 2), of which a step reads all but the embeddings: 70.60e9 B;
    # batch 1: 3.35e12 / (70.60e9 + 1024 x 327,680) = 47.2 tok/s; B >= 3311 x 70.60e9 / (3.35e12 - 3311 x
    # 1024 x 327,680) = 104.4 -> 105; and (81,559 MiB x 0.9 - 72.70e9) / (1024 x 327,680) = 12.7 -> 12 fit
    assert "bf16: weights 141 GB/device do not fit" in r.roofline
    assert "fp8: batch-1 ceiling 47.2 tok/s; needs batch >= 105 but only 12 fit at 1024 tokens" in r.roofline
    # with TP 2: each device reads half of the weights and of the KV, 3.35e12 / 35.47e9 = 94.5
    assert "with 2 devices (TP 2): fp8: batch-1 ceiling 94.5 tok/s" in r.roofline


def test_lambda_single_h100_number_is_plausible_with_batching() -> None:
    r = check(_claim("lambda-70b-fp8-1xh100"), NO_RUNS)
    assert r.verdict == "plausible"
    # 418.9 x 70.60e9 / (3.35e12 - 418.9 x 1024 x 327,680) = 9.21 -> batch >= 10; 12 fit (above)
    assert "reachable from batch >= 10 (up to 12 fit)" in r.roofline


def test_mistral_cost_examples_check_arithmetic_and_throughput() -> None:
    a100 = check(_claim("article-mistral-a100-cost"), NO_RUNS)
    h100 = check(_claim("article-mistral-h100-cost"), NO_RUNS)
    assert a100.verdict == h100.verdict == "arithmetic checks"
    assert "= $1.86/1M (matches $1.86)" in a100.roofline and "= $1.35/1M (matches $1.35)" in h100.roofline
    # 112 tok/s is below the single-stream bf16 ceiling on an A100 (140 at 1024 tokens of context) ...
    assert "bf16: reachable at batch 1" in a100.roofline
    # ... while 247 tok/s on an H100 is above its bf16 single-stream ceiling, 3.35e12 / (14.48e9 - the
    # embeddings' 2 x 32,000 x 4,096 B + 1024 x 131,072 B) = 233: batching or fp8
    assert "bf16: batch-1 ceiling 233 tok/s; reachable from batch >= 2" in h100.roofline
    assert "fp8: reachable at batch 1" in h100.roofline


def test_ratio_claims_against_bandwidth_and_compute_ratios() -> None:
    r = check(_claim("article-fp8-ratio"), NO_RUNS)
    # memory-bound: the bytes a step reads, 139.1e9 at bf16 / 70.60e9 at fp8 (the lm_head stays 16-bit;
    # neither reads the embeddings whole) x 3350/2039 = 3.24; compute-bound: 1979/312 = 6.34
    assert "memory-bound (small batch) ceiling ratio 3.24x, compute-bound (large batch) 6.34x" in r.roofline
    assert r.verdict == "within the roofline range"
    same = check(_claim("article-13b-70b-ratio"), NO_RUNS)
    # bf16 on both: 3350/2039 = 1.64 and 989/312 = 3.17; the claim 1.5-2x overlaps it
    assert (
        "1.64x" in same.roofline and "3.17x" in same.roofline and same.verdict == "within the roofline range"
    )


def test_cpu_offload_ceilings_over_pcie_and_c2c() -> None:
    h100 = check(_claim("article-cpu-offload"), NO_RUNS)
    # offloaded = 141.2e9 - 0.9 x 81,559 MiB = 64.2e9 B over 63 GB/s = 1.020 s -> 0.98 tok/s; claim 1-5 tok/s
    assert "64 GB/device streamed over pcie-gen5-x16 (63 GB/s) each step: ceiling 0.98 tok/s" in h100.roofline
    # the claim names no engine: llama.cpp computes the layers it keeps on the host from host RAM instead,
    # 64.2e9 B at 460.8 GB/s (EPYC 9654) = 0.139 s, then the rest of the 139.1e9 B a step reads (all but
    # the token embeddings, 2 x 128,256 x 8,192 B), 74.9e9 B, on the GPU at 3.35 TB/s = 0.022 s:
    # 6.18 tok/s, above the claim's 1-5
    assert "fastest host in the catalog, AMD EPYC 9654" in h100.roofline
    assert "ceiling 6.18 tok/s (0.16 s/token)" in h100.roofline
    assert h100.verdict == "plausible (below the ceiling)"
    # two L40S (46,068 MiB each): 141.2e9 - 2 x 0.9 x 46,068 MiB = 54.25e9 B computed on the host at
    # 460.8 GB/s (0.118 s), the 84.85e9 B left of a step's by the two GPUs in turn at 864 GB/s (0.098 s):
    # 4.63 tok/s; the GPUs run their layers one after the other, so two add no bandwidth
    two = check(_claim("article-cpu-offload").model_copy(update={"device": "l40s", "devices": 2}), NO_RUNS)
    assert "ceiling 4.63 tok/s" in two.roofline
    gh200 = check(_claim("vllm-gh200-offload"), NO_RUNS)
    # 141.2e9 - 0.9 x 97,871 MiB = 48.8e9 B over NVLink-C2C 450 GB/s = 0.1085 s -> 9.21 tok/s; 4-4.6 is below
    assert "ceiling 9.21 tok/s" in gh200.roofline and gh200.verdict == "plausible (below the ceiling)"


def test_every_catalog_claim_gets_a_check() -> None:
    for c in claims():
        r = check(c, NO_RUNS)
        assert r.roofline and r.verdict and r.measured == "-", c.id
        assert not r.roofline.startswith("no roofline"), c.id


def _points(rows: list[dict]) -> pd.DataFrame:
    """Points of Llama-3.1-70B at concurrency 1; each row gives what differs."""
    base = {"model": "llama-3.1-70b", "engine_label": "vllm", "concurrency": 1, "cpu_offload_gb": 0.0}
    base["n_gpu_layers"] = None
    out = []
    for i, r in enumerate(rows):
        row = {**base, **r, "run_id": f"run{i}", "load": f"c{r.get('concurrency', 1)}"}
        row["config"] = f"{row['devices']}x {row['device']} | {row['engine_label']}"
        out.append(row)
    return pd.DataFrame(out)


def test_ratio_claim_pairs_equal_device_counts() -> None:
    bf16 = {"precision": "bf16"}
    pts = _points(
        [
            {**bf16, "device": "h100-sxm", "devices": 8, "output_tok_s": 8000.0},
            {**bf16, "device": "h100-sxm", "devices": 2, "output_tok_s": 1500.0},
            {**bf16, "device": "a100-80gb-sxm", "devices": 2, "output_tok_s": 600.0},
        ]
    )
    r = check(_claim("article-70b-ratio"), pts)
    # 2 x H100 against 2 x A100 (1500 / 600), not the 8-GPU run against the 2-GPU one (8000 / 600)
    assert r.measured.startswith("2.50x (2x h100-sxm | vllm bf16 c1 (run1) / 2x a100-80gb-sxm"), r.measured
    # no device count on both sides: nothing to compare
    r = check(_claim("article-70b-ratio"), pts[pts["devices"] != 2])
    assert r.measured == "- (no llama-3.1-70b point on a100-80gb-sxm; measured: h100-sxm)"
    # numbers as numbers: a concurrency column read back as floats
    from harness.claims import no_match_reason

    why = no_match_reason(pts.assign(concurrency=4.0), ("llama-3.1-70b", "h100-sxm", None, None, None, 32))
    assert why == "no llama-3.1-70b point at concurrency 32; measured: 4"


def test_ratio_claim_pairs_the_same_precision_workload_and_load() -> None:
    h100 = {"device": "h100-sxm", "devices": 8, "workload": "128/64"}
    a100 = {"device": "a100-80gb-sxm", "devices": 8, "workload": "128/64"}
    pts = _points(
        [
            {**h100, "precision": "fp8", "concurrency": 64, "output_tok_s": 9000.0},
            {**a100, "precision": "bf16", "concurrency": 1, "output_tok_s": 100.0},
        ]
    )
    # FP8 at concurrency 64 against BF16 at concurrency 1 is no GPU ratio: nothing to pair
    assert check(_claim("article-70b-ratio"), pts).measured == (
        "- (no configuration measured on both sides: same workload, load and engine, device count and "
        "precision)"
    )
    pts = _points(
        [
            {**h100, "precision": "fp8", "concurrency": 64, "output_tok_s": 9000.0},
            {**h100, "precision": "bf16", "concurrency": 1, "output_tok_s": 300.0},
            {**h100, "precision": "bf16", "concurrency": 64, "output_tok_s": 5000.0},
            {**a100, "precision": "bf16", "concurrency": 1, "output_tok_s": 100.0},
            {**a100, "precision": "bf16", "concurrency": 64, "output_tok_s": 2000.0},
            {**a100, "precision": "bf16", "concurrency": 64, "workload": "1024/256", "output_tok_s": 900.0},
        ]
    )
    r = check(_claim("article-70b-ratio"), pts)
    # the numerator's best configuration that the denominator has too (bf16, c64, 128/64), and the range
    assert r.measured.startswith(
        "2.50x (8x h100-sxm | vllm bf16 128/64 c64 (run2) / 8x a100-80gb-sxm | vllm bf16 128/64 c64"
    ), r.measured
    assert r.measured.endswith("; 2 matched configurations: 2.50-3.00x"), r.measured


def test_offload_claim_matches_llamacpp_points_of_any_precision() -> None:
    llama = {"device": "h100-sxm", "devices": 1, "precision": "q8_0", "engine_label": "llamacpp"}
    pts = _points(
        [
            {**llama, "n_gpu_layers": 40, "partial_offload": True, "output_tok_s": 1.6},
            {**llama, "n_gpu_layers": 0, "partial_offload": False, "output_tok_s": 0.9},
        ]
    )
    r = check(_claim("article-cpu-offload"), pts)
    # the n_gpu_layers 0 point is not offload (everything on the CPU): the 40-layer one is the match
    assert r.measured == "1.6 tok/s at 1x h100-sxm | llamacpp q8_0 c1 (run0)"
    assert r.verdict == "measured 1.6 tok/s, inside the claimed 1-5"


def test_a_gguf_named_after_its_catalog_model_is_matched_and_has_a_roofline(tmp_path: Path) -> None:
    """The article's 70B offload scenario: a GGUF file (`catalog: llama-3.1-70b`) on llama.cpp with 40 of
    80 layers on an H100 is the CPU-offload claim's measurement, bounded by the GGUF's own sizes; all 80
    layers (n_gpu_layers 999) are no offload."""
    from harness.results import RunDir
    from harness.runinfo import run_points
    from harness.scenario import Scenario

    model = {"source": "path", "path": "m/Meta-Llama-3.1-70B-Instruct-Q8_0.gguf", "catalog": "llama-3.1-70b"}
    s = Scenario.model_validate(
        {
            "name": "t",
            "engine": {"type": "llamacpp", "launcher": "llama-server", "model": model, "ctx_size": 8192},
            "variants": [{"n_gpu_layers": 40}, {"n_gpu_layers": 999}],
            "hardware": {"gpu": "h100-sxm"},
        }
    )
    gguf = {
        "name": "Meta-Llama-3.1-70B-Instruct-Q8_0",
        "size_bytes": 75e9,
        "block_count": 80,
        "weight_bytes": {"blocks": 72e9, "token_embd": 1.1e9, "output": 1.1e9, "other": 0},
    }
    h100 = {"name": "NVIDIA H100 80GB HBM3", "catalog_key": "h100-sxm"}
    run = RunDir.create(tmp_path, "t")
    run.write_manifest(
        {
            "run_id": run.path.name,
            "status": "complete",
            "scenario": s.model_dump(mode="json"),
            "hardware": {
                "gpu": {"available": True, "gpus": [h100]},
                "cpu": {"model": "AMD EPYC 9654 96-Core Processor"},
            },
            "engines": [{"variant": v, "name": "llamacpp", "model": gguf} for v in (0, 1)],
        }
    )
    base = {"engine": "llamacpp", "launcher": "llama-server", "precision": "Q8_0", "concurrency": 1}
    run.write_points(
        [
            {**base, "point_id": "v0-c1", "variant": 0, "output_tok_s": 1.6, "model": gguf["name"]},
            {**base, "point_id": "v1-c1", "variant": 1, "output_tok_s": 30.0, "model": gguf["name"]},
        ]
    )
    pts = run_points(run.path)
    assert list(pts["model"]) == ["llama-3.1-70b"] * 2 and list(pts["partial_offload"]) == [True, False]
    assert pts["host_cpu"].isna().all()  # on the GPU: the host CPU is no part of the configuration
    assert (
        pts["roofline_tok_s"].notna().all() and pts["roofline_tok_s"].iloc[1] > pts["roofline_tok_s"].iloc[0]
    )
    r = check(_claim("article-cpu-offload"), pts)
    want = "1.6 tok/s at h100-sxm | llamacpp/llama-server | ngl=40 q8_0 128/64 c1"
    assert r.measured.startswith(want), r.measured
    assert r.verdict == "measured 1.6 tok/s, inside the claimed 1-5"


def test_a_ratio_claim_with_a_cpu_side_has_no_compute_ratio() -> None:
    """The CPUs have no FLOP/s peak in the catalog: only the bandwidth ratio is a ceiling there, where it
    was a 'nanx' compute ratio that put every claim outside the range."""
    c = Claim(
        id="gpu-vs-cpu",
        source="test",
        text="H100 is 7-8x an EPYC 9654 for 8B decode",
        kind="ratio",
        value=7.0,
        value_high=8.0,
        model="llama-3.1-8b",
        numerator={"device": "h100-sxm"},
        denominator={"device": "epyc-9654"},
    )
    r = check(c, NO_RUNS)
    # memory-bound: 3350 / 460.8 = 7.27
    assert (
        "ceiling ratio 7.27x, compute-bound (large batch) unknown" in r.roofline and "nan" not in r.roofline
    )
    assert r.verdict == "within the roofline range"
    assert (
        check(c.model_copy(update={"value": 9.0, "value_high": 10.0}), NO_RUNS).verdict
        == "outside the roofline range 7.27-7.27x"
    )


def test_a_measured_ratio_is_set_against_the_claimed_one() -> None:
    """H100 FP8 at 315 tok/s against A100 BF16 at 300: 1.05x is a third of the claimed 3.3x, whatever the
    roofline allows; before, the verdict only said the claim was within the roofline range."""
    from harness.claims import measured_vs_claimed

    base = {"model": "llama-3.1-70b", "devices": 1, "workload": "1024/256", "load": "c16"}
    base |= {"engine_label": "vllm", "concurrency": 16, "run_id": "r"}
    pts = pd.DataFrame(
        [
            {
                **base,
                "device": "h100-sxm",
                "precision": "fp8",
                "output_tok_s": 315.0,
                "config": "h100-sxm | vllm",
            },
            {
                **base,
                "device": "a100-80gb-sxm",
                "precision": "bf16",
                "output_tok_s": 300.0,
                "config": "a100 | vllm",
            },
        ]
    )
    r = check(_claim("article-fp8-ratio"), pts)
    assert r.verdict == (
        "measured 1.05x = 32% of the claimed 3.3x; the claim is within the roofline range; doubtful: the "
        "measured ratio is outside the hardware's 3.24-6.34x"
    )
    assert measured_vs_claimed(1.7, 1.5, 2.0) == "measured 1.70x, inside the claimed 1.5-2x"
    assert measured_vs_claimed(1.2, 1.5, 2.0) == "measured 1.20x = 80% of the claim's low end 1.5x"


def test_a_throughput_claim_takes_the_best_point_matching_every_field_it_names() -> None:
    """A claim names model, device, device count, engine, precision and concurrency: a point differing in
    any one of them is not a measurement of it; of the points that match, the fastest is."""
    claim = Claim(
        id="t", source="t", text="t", kind="throughput", value=1000.0, model="llama-3.1-70b",
        device="h100-sxm", devices=2, engine="vllm", precision="fp8", concurrency=1,
    )  # fmt: skip
    match = {"device": "h100-sxm", "devices": 2, "precision": "fp8"}
    rows = [
        {**match, "output_tok_s": 90.0},
        {**match, "output_tok_s": 95.0},  # the best match
        {**match, "device": "a100-80gb-sxm", "output_tok_s": 900.0},
        {**match, "devices": 8, "output_tok_s": 800.0},
        {**match, "engine_label": "llamacpp", "output_tok_s": 700.0},
        {**match, "precision": "bf16", "output_tok_s": 600.0},
        {**match, "concurrency": 64, "output_tok_s": 500.0},
        {**match, "model": "llama-3.1-8b", "output_tok_s": 400.0},
    ]
    r = check(claim, _points(rows))
    assert r.measured.startswith("95 tok/s at 2x h100-sxm | vllm fp8 c1 (run1)"), r.measured
    assert r.verdict.startswith("measured 10% of the claim")  # 95 / 1000


def test_a_cost_claim_whose_arithmetic_is_wrong_is_said_to_be() -> None:
    # $2/h at 100 tok/s: 2 / (100 x 3600) x 1e6 = $5.56/1M, not the $4 claimed
    wrong = Claim(
        id="c", source="t", text="t", kind="cost", value=4.0, model="mistral-7b", device="h100-sxm",
        usd_per_hour=2.0, tok_s=100.0,
    )  # fmt: skip
    r = check(wrong, NO_RUNS)
    assert r.verdict == "arithmetic wrong"
    assert "$2/h / (100 tok/s x 3600) = $5.56/1M (does NOT match $4)" in r.roofline
    right = wrong.model_copy(update={"value": 5.56})
    assert check(right, NO_RUNS).verdict == "arithmetic checks"


def test_a_cost_claim_prices_the_matched_point_on_its_own_device_count() -> None:
    """A claim without a device count matched a 2-GPU point and priced it as one GPU ($1.90 where the
    two GPUs it ran on cost 2 x $2.49 / (364.8 x 3600) x 1e6 = $3.79)."""
    claim = Claim(
        id="c", source="t", text="t", kind="cost", value=1.9, model="llama-3.1-70b", device="h100-sxm",
        usd_per_hour=2.49, tok_s=364.0,
    )  # fmt: skip
    pts = _points([{"device": "h100-sxm", "devices": 2, "precision": "bf16", "output_tok_s": 364.8}])
    r = check(claim, pts)
    assert r.measured.startswith("$3.79/1M at 365 tok/s (2x h100-sxm | vllm bf16 c1 (run0))"), r.measured
    # $2.49 / (364 x 3600) x 1e6 = $1.9002: "$1.9" states it to one decimal
    assert r.verdict == "arithmetic checks; measured"
    assert check(claim.model_copy(update={"value": 1.8}), NO_RUNS).verdict == "arithmetic wrong"
    # the old rule, round(usd, 2) within 0.006, failed "$1.9" for $1.905 (round gives 1.91)
    from harness.claims import stated_to

    assert stated_to(1.9, 1.9051) and not stated_to(1.91, 1.9051 + 0.01)
    assert stated_to(0.08, 0.0849) and stated_to(0.05, 0.053)  # right to the cent, below 10 cents
    # a float keeps no trailing zeros: "$4.00" reads as 4, yet is held to 5 cents, not to 50
    four = claim.model_copy(update={"value": 4.0, "usd_per_hour": 2.0, "tok_s": 125.0})  # $4.44/1M
    assert check(four, NO_RUNS).verdict == "arithmetic wrong"
    tiny = claim.model_copy(update={"value": 1e-05, "usd_per_hour": 0.001, "tok_s": 1000.0})  # $0.00028
    assert check(tiny, NO_RUNS).verdict == "arithmetic wrong"


def test_a_matched_point_with_failed_requests_says_so() -> None:
    claim = Claim(
        id="t", source="t", text="t", kind="throughput", value=100.0, model="llama-3.1-70b",
        device="h100-sxm", devices=1,
    )  # fmt: skip
    row = {"device": "h100-sxm", "devices": 1, "precision": "bf16", "output_tok_s": 121.0}
    r = check(claim, _points([{**row, "errors": 4, "requests": 8}]))
    assert r.measured.startswith("121 tok/s at 1x h100-sxm | vllm bf16 c1 (run0; 4 of 8 requests failed)")
    assert "failed" not in check(claim, _points([{**row, "errors": 0, "requests": 8}])).measured


# a throughput claim of 60 tok/s on one H100 at concurrency 1, and the points that measure it
H100_60_TOK_S = Claim(
    id="t", source="t", text="t", kind="throughput", value=60.0, model="llama-3.1-70b",
    device="h100-sxm", devices=1, concurrency=1,
)  # fmt: skip
H100_BF16 = {"device": "h100-sxm", "devices": 1, "precision": "bf16", "workload": "128/64"}


def test_reruns_of_a_point_count_once_at_their_median_with_their_range() -> None:
    """Three runs of one configuration at 56.2, 63.5 and 67.1 tok/s: the claim is set against 63.5, not
    the luckiest run, and the measured cell names the runs and their range."""
    from harness.claims import check_all

    one = H100_BF16
    pts = _points([{**one, "output_tok_s": x} for x in (67.1, 56.2, 63.5)])
    pts["started_utc"] = ["2026-12-06T00:12", "2026-12-06T00:13", "2026-12-06T00:14"]
    (r,) = check_all([H100_60_TOK_S], pts)
    assert r.measured.startswith(
        "63.5 tok/s at 1x h100-sxm | vllm bf16 128/64 c1 (median of 3 runs, 56.2-67.1 tok/s: run0, run1, "
        "run2)"
    ), r.measured
    assert r.verdict.startswith("measured 106% of the claim")  # 63.5 / 60
    # another precision is another point, not a rerun: the faster one is the measurement
    pts.loc[0, "precision"] = "fp8"
    (r,) = check_all([H100_60_TOK_S], pts)
    assert r.measured.startswith("67.1 tok/s at 1x h100-sxm | vllm fp8 128/64 c1 (run0)"), r.measured
    # a rerun that measured nothing (every request failed) is no run of the median, and its failures are
    # not the measured run's
    failed = pts.iloc[[1]].assign(run_id="run3", started_utc="2026-12-06T00:15", output_tok_s=math.nan)
    failed = failed.assign(errors=8, requests=8)
    (r,) = check_all([H100_60_TOK_S], pd.concat([pts.iloc[[1]], failed], ignore_index=True))
    assert r.measured.startswith("56.2 tok/s at 1x h100-sxm | vllm bf16 128/64 c1 (run1)"), r.measured
    assert "failed" not in r.measured
    # a point whose every run failed is said to have measured nothing, not to be missing
    (r,) = check_all([H100_60_TOK_S], failed)
    assert r.measured == "- (no llama-3.1-70b point with a measured tok/s)", r.measured


def test_a_throughput_claim_is_not_measured_by_a_point_at_an_arrival_rate() -> None:
    """At 2 req/s an engine serves 2 req/s worth of tokens, whatever it could do: no measure of a peak."""
    from harness.claims import check_all

    one = {"device": "h100-sxm", "devices": 1, "precision": "fp8", "workload": "128/64"}
    rate = _points([{**one, "output_tok_s": 105.2}]).assign(load="r2", concurrency=None)
    (r,) = check_all([_claim("article-70b-h100")], rate)
    assert r.measured == (
        "- (llama-3.1-70b measured at arrival rates only: their tok/s is the rate offered, not a capacity)"
    )
    assert not r.verdict.startswith("measured")
    conc = _points([{**one, "output_tok_s": 90.0}])
    (r,) = check_all([_claim("article-70b-h100")], pd.concat([rate, conc], ignore_index=True))
    assert r.measured.startswith("90 tok/s at 1x h100-sxm | vllm fp8 128/64 c1"), r.measured
    # a concurrency point that measured nothing leaves the rate points the only measurements
    failed = conc.assign(output_tok_s=math.nan, errors=8, requests=8)
    (r,) = check_all([_claim("article-70b-h100")], pd.concat([rate, failed], ignore_index=True))
    assert r.measured == (
        "- (llama-3.1-70b measured at arrival rates only: their tok/s is the rate offered, not a capacity)"
    )


def test_a_ratio_claim_pairs_concurrency_points_not_arrival_rates() -> None:
    """At 2 req/s both GPUs serve the rate: their tok/s differ by how long the last requests took, which
    is no hardware ratio. Only concurrency points are paired."""
    h100 = {"device": "h100-sxm", "devices": 8, "workload": "128/64", "precision": "bf16"}
    a100 = {**h100, "device": "a100-80gb-sxm"}
    rate = _points([{**h100, "output_tok_s": 105.2}, {**a100, "output_tok_s": 93.2}])
    rate = rate.assign(load="r2", concurrency=None)
    r = check(_claim("article-70b-ratio"), rate)
    assert r.measured == (
        "- (llama-3.1-70b measured at arrival rates only: their tok/s is the rate offered, not a capacity)"
    )
    conc = _points([{**h100, "output_tok_s": 5000.0}, {**a100, "output_tok_s": 2000.0}])
    r = check(_claim("article-70b-ratio"), pd.concat([rate, conc], ignore_index=True))
    assert r.measured.startswith("2.50x (8x h100-sxm | vllm bf16 128/64 c1"), r.measured
    assert "matched configurations" not in r.measured  # the rate pair is not among them


def test_reruns_are_a_median_from_two_runs_on_and_named_oldest_first() -> None:
    from harness.claims import check_all

    one = H100_BF16
    pts = _points([{**one, "output_tok_s": x} for x in (70.0, 60.0)])
    pts["started_utc"] = ["2026-12-06T00:14", "2026-12-06T00:12"]  # listed newest first
    (r,) = check_all([H100_60_TOK_S], pts)
    assert r.measured.startswith(
        "65 tok/s at 1x h100-sxm | vllm bf16 128/64 c1 (median of 2 runs, 60-70 tok/s: run1, run0)"
    ), r.measured


def test_runs_with_other_engine_settings_are_not_reruns_of_a_claims_point() -> None:
    import json

    from harness.claims import check_all

    one = H100_BF16
    pts = _points([{**one, "output_tok_s": x} for x in (56.2, 67.1)])
    pts["started_utc"] = ["2026-12-06T00:12", "2026-12-06T00:13"]
    pts["settings"] = [json.dumps({"engine": {"max_num_seqs": n}}) for n in (8, 16)]
    (r,) = check_all([H100_60_TOK_S], pts)
    assert r.measured.startswith(
        "67.1 tok/s at 1x h100-sxm | vllm [engine.max_num_seqs=16] bf16 128/64 c1 (run1)"
    ), r.measured


def test_the_arrival_rate_reason_is_given_only_where_every_point_asked_for_is_at_a_rate() -> None:
    from harness.claims import check_all

    one = {"devices": 1, "precision": "bf16", "workload": "128/64"}
    # the H100 only at a rate, the A100 at a concurrency: the claim is about the H100
    rate = _points([{**one, "device": "h100-sxm", "output_tok_s": 105.2}]).assign(load="r2", concurrency=None)
    a100 = _points([{**one, "device": "a100-80gb-sxm", "output_tok_s": 90.0}])
    (r,) = check_all([_claim("article-70b-h100")], pd.concat([rate, a100], ignore_index=True))
    assert r.measured == (
        "- (llama-3.1-70b measured at arrival rates only: their tok/s is the rate offered, not a capacity)"
    )
    # the H100 at a rate and a concurrency, the A100 at another workload only: no pair, and not for rates
    h100 = _points([{**one, "device": "h100-sxm", "output_tok_s": 120.0}])
    other = a100.assign(workload="4096/64")
    r = check(_claim("article-70b-ratio"), pd.concat([rate, h100, other], ignore_index=True))
    assert r.measured == (
        "- (no configuration measured on both sides: same workload, load and engine, device count and "
        "precision)"
    ), r.measured


def test_a_claims_catalog_note_is_shown_with_the_claim() -> None:
    """The notes (what a source left unsaid, a Llama-2-70B claim checked with the Llama-3.1-70B shape)
    were in the catalog but in no table."""
    from harness.tables import claim_text, claims_markdown

    mlperf = next(c for c in claims() if c.id == "mlperf-70b-server-8xh100")
    assert claim_text(mlperf) == (
        "Llama-2-70B, 8x H100 SXM, server (TTFT <= 2 s, TPOT <= 200 ms): 21,606 tok/s (Llama-2-70B checked "
        "with the Llama-3.1-70B shape)"
    )
    bare = next(c for c in claims() if c.note is None)
    assert claim_text(bare) == bare.text
    assert "(Llama-2-70B checked with the Llama-3.1-70B shape)" in claims_markdown(
        [check(mlperf, pd.DataFrame())]
    )


def test_the_claims_table_on_screen_shows_the_catalogs_note() -> None:
    from tests.conftest import run_harness

    res = run_harness("claims", "--source", "mlperf", env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    said = " ".join(ln.strip("│ ") for ln in res.stdout.splitlines())
    assert "(Llama-2-70B checked with the Llama-3.1-70B shape)" in " ".join(said.split())


def test_a_point_that_may_not_measure_the_claim_is_passed_over_or_doubted() -> None:
    """A claim was 'measured 107%' by a point where 410 of 512 requests failed, or 'measured 100%' at
    890% of its roofline (not the hardware named), with nothing said: such points give way to a clean
    one, and where none is clean the verdict says why it is doubtful."""
    row = {**H100_BF16, "requests": 512, "errors": 0}
    for odd, said in (
        ({"errors": 410}, "doubtful: 410 of 512 requests failed"),
        ({"pct_roofline": 890.0}, "doubtful: 890% of its roofline: likely not the hardware"),
        ({"client_saturated": True}, "doubtful: the client near saturation"),
        ({"short_outputs": 90}, "doubtful: 90 outputs shorter than asked"),
        (
            {"device_declared": True},
            "doubtful: h100-sxm as the scenario declared it: the GPU it ran on was not recorded",
        ),
    ):
        only = _points([{**row, **odd, "output_tok_s": 70.0}])
        r = check(H100_60_TOK_S, only)
        assert r.verdict.startswith("measured 117% of the claim; " + said), r.verdict
        # beside a clean point, the clean one is the measurement, though slower
        both = _points([{**row, **odd, "output_tok_s": 70.0}, {**row, "output_tok_s": 50.0}])
        r = check(H100_60_TOK_S, both)
        assert r.measured.startswith("50 tok/s at") and r.verdict == "measured 83% of the claim", r
    # a few failures (up to 5 %) are said where it was measured, not doubted
    r = check(H100_60_TOK_S, _points([{**row, "errors": 25, "output_tok_s": 70.0}]))
    assert r.verdict == "measured 117% of the claim" and "25 of 512 requests failed" in r.measured


def test_offload_points_measure_offload_claims_only_and_at_their_concurrency() -> None:
    """A GPU streaming its weights over PCIe measured '0% of' the 3,311 tok/s GPU claim; and the fastest
    offload point at concurrency 4 (3.7 tok/s) was set against a single-stream '1-5 tok/s (2-5 s per
    token)', at '370% of the claim's low end'."""
    off = {"device": "h100-sxm", "devices": 1, "precision": "bf16", "partial_offload": True}
    pts = _points(
        [
            {**off, "cpu_offload_gb": 70.0, "concurrency": 1, "output_tok_s": 0.95},
            {**off, "cpu_offload_gb": 70.0, "concurrency": 4, "output_tok_s": 3.7},
        ]
    )
    r = check(_claim("article-70b-h100"), pts)
    assert r.measured == "- (no llama-3.1-70b point without weights offloaded to the host)", r.measured
    r = check(_claim("article-cpu-offload"), pts)
    assert r.measured.startswith("0.95 tok/s at 1x h100-sxm | vllm bf16 c1"), r.measured
    assert r.verdict == "measured 95% of the claim's low end"
    assert check(_claim("article-cpu-offload"), pts.assign(output_tok_s=[3.7, 9.0])).verdict == (
        "measured 3.7 tok/s, inside the claimed 1-5"
    )
    assert check(_claim("article-cpu-offload"), pts.assign(output_tok_s=[6.0, 9.0])).verdict == (
        "measured 6 tok/s, above the claimed 1-5"
    )


def test_a_claim_with_latency_limits_takes_only_points_within_them() -> None:
    """MLPerf's server figure holds p99 TTFT <= 2 s and TPOT <= 200 ms: a point at 12 s TTFT measures
    the offline figure, not it."""
    base = {"device": "h100-sxm", "devices": 8, "precision": "fp8", "tpot_s_p99": 0.1}
    pts = _points(
        [
            {**base, "concurrency": 256, "ttft_s_p99": 12.0, "output_tok_s": 3500.0},
            {**base, "concurrency": 64, "ttft_s_p99": 1.5, "output_tok_s": 2400.0},
        ]
    )
    r = check(_claim("mlperf-70b-server-8xh100"), pts)
    assert r.measured.startswith("2,400 tok/s at 8x h100-sxm | vllm fp8 c64"), r.measured
    r = check(_claim("mlperf-70b-server-8xh100"), pts.iloc[[0]])
    assert r.measured == "- (no llama-3.1-70b point with p99 TTFT <= 2 s; measured: 12)", r.measured
    assert check(_claim("mlperf-70b-offline-8xh100"), pts).measured.startswith("3,500 tok/s")
    # points without latency columns (a run from before they were written) match no limit, and say so
    r = check(_claim("mlperf-70b-server-8xh100"), pts.drop(columns=["ttft_s_p99", "tpot_s_p99"]))
    assert r.measured == "- (no llama-3.1-70b point with p99 TTFT <= 2 s; measured: none)", r.measured


def test_an_up_to_ratio_is_judged_on_its_best_case_and_odd_pairs_are_doubted() -> None:
    """'Up to 3.3x' was judged on the pair of the fastest H100 point (2.96x) while another configuration
    measured 3.75x; and two sides on other engine builds or settings passed as a hardware ratio."""
    h100 = {"device": "h100-sxm", "devices": 1, "precision": "fp8", "workload": "1024/256"}
    a100 = {"device": "a100-80gb-sxm", "devices": 1, "precision": "bf16", "workload": "1024/256"}
    same = json.dumps({"engine": {"max_num_seqs": 256}})
    pts = _points(
        [
            {**h100, "concurrency": 64, "output_tok_s": 2960.0, "settings": same},
            {**a100, "concurrency": 64, "output_tok_s": 1000.0, "settings": same},
            {**h100, "concurrency": 8, "output_tok_s": 750.0, "settings": same},
            {**a100, "concurrency": 8, "output_tok_s": 200.0, "settings": same},
        ]
    )
    r = check(_claim("article-fp8-ratio"), pts)
    assert r.verdict.startswith("measured 3.75x = 114% of the claimed 3.3x"), r.verdict
    assert "doubtful" not in r.verdict
    other = json.dumps({"engine": {"max_num_seqs": 16}, "engine_build": {"version": "0.5.4"}})
    pts.loc[3, "settings"] = other
    r = check(_claim("article-fp8-ratio"), pts)  # the clean pair is the measurement, though lower
    assert r.verdict.startswith("measured 2.96x = 90% of the claimed 3.3x") and "doubtful" not in r.verdict
    pts.loc[1, "settings"] = json.dumps({"engine": {"max_num_seqs": 16}})
    r = check(_claim("article-fp8-ratio"), pts)
    # (the build is said by one side only: not known to differ)
    assert r.verdict.startswith("measured 3.75x") and r.verdict.endswith(
        "doubtful: the sides differ in engine.max_num_seqs"
    ), r.verdict
    # a field one side's harness did not yet write is no difference (as compare reads it)
    newer = json.dumps({"engine": {"max_num_seqs": 256}, "workload": {"request_seed": False}})
    pts["settings"] = [newer, same, newer, same]
    assert "doubtful" not in check(_claim("article-fp8-ratio"), pts).verdict


def test_a_claim_without_a_device_count_is_checked_on_the_count_measured() -> None:
    """An 8-GPU run matched the article's '3,311 tok/s on H100' beside a roofline for one GPU ('bf16
    weights do not fit'): the roofline is the measured count's, and the verdict names it."""
    pts = _points([{"device": "h100-sxm", "devices": 8, "precision": "bf16", "output_tok_s": 3000.0}])
    r = check(_claim("article-70b-h100"), pts)
    assert r.verdict == "measured 91% of the claim on 8 devices"
    assert "8 device(s) as measured; bf16: batch-1 ceiling" in r.roofline, r.roofline


def test_a_claims_precision_is_read_in_any_case(tmp_path: Path) -> None:
    from harness.catalog.claims import load_claims_file

    f = tmp_path / "c.yaml"
    f.write_text(
        "claims:\n- {id: a, source: me, text: t, kind: throughput, value: 50, model: llama-3.1-70b,\n"
        "   device: h100-sxm, devices: 1, precision: FP8}\n"
    )
    (c,) = load_claims_file(f)
    pts = _points([{"device": "h100-sxm", "devices": 1, "precision": "fp8", "output_tok_s": 40.0}])
    assert check(c, pts).verdict == "measured 80% of the claim"


def test_a_cost_claim_naming_no_concurrency_is_priced_at_one_stream_too() -> None:
    """The article's $1.86 for Mistral 7B at 112 tok/s looks like one stream (below the A100's
    single-stream ceiling); only the fastest point, at concurrency 64, was priced: $0.07."""
    row = {"model": "mistral-7b", "device": "a100-80gb-sxm", "devices": 1, "precision": "bf16"}
    pts = _points(
        [{**row, "concurrency": 1, "output_tok_s": 120.0}, {**row, "concurrency": 64, "output_tok_s": 3000.0}]
    )
    r = check(_claim("article-mistral-a100-cost"), pts)
    # $0.75 / (3000 x 3600) x 1e6 = $0.07; $0.75 / (120 x 3600) x 1e6 = $1.74
    assert r.measured.startswith("$0.07/1M at 3,000 tok/s (1x a100-80gb-sxm | vllm bf16 c64 (run1))"), (
        r.measured
    )
    assert r.measured.endswith("; one stream: $1.74/1M at 120 tok/s (1x a100-80gb-sxm | vllm bf16 c1 (run0))")
    assert "one stream" not in check(_claim("article-mistral-a100-cost"), pts.iloc[[1]]).measured
