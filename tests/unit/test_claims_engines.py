"""Which runs a claim about an engine or a GPU takes: an external endpoint declared to be vLLM, and the
article's "A100" and "H100" read as the parts its own spec table describes."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from harness.catalog import CatalogError
from harness.catalog.claims import claims, parse_claims
from harness.catalog.hardware import devices
from harness.claims import check, check_all, stated_to

# Lambda's 1x H100 row: vLLM, FP8, one H100 SXM, 418.9 tok/s
LAMBDA_H100 = next(c for c in claims() if c.id == "lambda-70b-fp8-1xh100")
ONE_H100_FP8 = {"model": "llama-3.1-70b", "device": "h100-sxm", "devices": 1, "precision": "fp8"}


def _points(rows: list[dict]) -> pd.DataFrame:
    """Points of Llama-3.1-70B fp8 on one H100 at concurrency 1; each row gives its engine and tok/s."""
    out = []
    for i, r in enumerate(rows):
        row = {**ONE_H100_FP8, "concurrency": 1, "load": "c1", "cpu_offload_gb": 0.0, "n_gpu_layers": None}
        row.update({"served_by": None, "owned_by": None, "run_id": f"run{i}", "workload": "128/64", **r})
        row["config"] = f"h100-sxm | {row['engine_label']}"
        out.append(row)
    return pd.DataFrame(out)


EXTERNAL_VLLM = {"engine_label": "external", "served_by": "vllm", "owned_by": "vllm"}


def test_an_external_endpoint_declared_as_vllm_meets_vllm_claims_and_says_it_was_declared() -> None:
    """A run against a vLLM server started by hand (`engine: external`) never met a claim about vLLM:
    `- (no llama-3.1-70b point on engine vllm; measured: external)`. Declared in its scenario
    (`served_by: vllm`), it does, and the verdict says that the engine was declared, not launched."""
    r = check(LAMBDA_H100, _points([{**EXTERNAL_VLLM, "output_tok_s": 400.0}]))
    assert r.measured.startswith("400 tok/s at h100-sxm | external fp8 128/64 c1 (run0)"), r.measured
    # 400 / 418.9 = 95.5 %
    assert r.verdict == (
        "measured 95% of the claim; doubtful: engine vllm as the scenario declared it: an external endpoint "
        "the harness did not launch (its /models says owned_by vllm too)"
    )
    # what the endpoint said of itself is given as it was, also where it names another engine
    llama = check(
        LAMBDA_H100.model_copy(update={"engine": "llamacpp"}),
        _points([{**EXTERNAL_VLLM, "served_by": "llamacpp", "output_tok_s": 400.0}]),
    )
    assert llama.verdict.endswith("the harness did not launch (its /models says owned_by vllm)"), llama
    # a launched vLLM beside it is the measurement, though slower: 380 / 418.9 = 90.7 %
    launched = {"engine_label": "vllm", "output_tok_s": 380.0}
    r = check(LAMBDA_H100, _points([{**EXTERNAL_VLLM, "output_tok_s": 400.0}, launched]))
    assert r.measured.startswith("380 tok/s at h100-sxm | vllm fp8"), r.measured
    assert r.verdict == "measured 91% of the claim"


def test_an_undeclared_endpoint_is_not_taken_for_the_engine_its_models_list_names() -> None:
    """`owned_by: vllm` is the server's word, not the scenario's: without `served_by` the point meets no
    vLLM claim, and the reason says what would let it."""
    r = check(LAMBDA_H100, _points([{**EXTERNAL_VLLM, "served_by": None, "output_tok_s": 400.0}]))
    assert r.measured == (
        "- (no llama-3.1-70b point on engine vllm; measured: external; an external endpoint (its /models "
        "says owned_by vllm) meets a claim about vllm where its scenario declares engine.served_by: vllm)"
    )
    # nor does one declared as another engine
    r = check(LAMBDA_H100, _points([{**EXTERNAL_VLLM, "served_by": "sglang", "output_tok_s": 400.0}]))
    assert r.measured == "- (no llama-3.1-70b point on engine vllm; measured: external)"


def test_a_declared_engine_is_doubted_only_by_claims_about_an_engine() -> None:
    """A claim naming no engine takes an external endpoint as it took it before: its declaration adds
    no doubt there (an undeclared endpoint would have none)."""
    any_engine = LAMBDA_H100.model_copy(update={"engine": None})
    r = check(any_engine, _points([{**EXTERNAL_VLLM, "output_tok_s": 400.0}]))
    assert r.verdict == "measured 95% of the claim"


def test_a_claim_naming_an_engine_no_point_can_have_is_refused() -> None:
    """`engine: vLLM` or `llama.cpp` in a claims file matched nothing, silently (points name engines
    `vllm`, `llamacpp`)."""
    entry = {"id": "x", "source": "me", "text": "t", "kind": "throughput", "value": 1, "model": "m"}
    with pytest.raises(CatalogError, match=r"mine.yaml: claims\[0\].engine: invalid value 'vLLM' \(allowed"):
        parse_claims({"claims": [{**entry, "device": "cpu", "engine": "vLLM"}]}, "mine.yaml")
    assert parse_claims({"claims": [{**entry, "device": "cpu", "engine": "sglang"}]}, "mine.yaml")


def test_a_claim_about_external_endpoints_takes_them_whatever_they_are_declared_to_be() -> None:
    """`engine: external` (a claim about an endpoint, whatever serves it) meets declared and undeclared
    endpoints alike, and doubts neither for its engine."""
    endpoint = LAMBDA_H100.model_copy(update={"engine": "external"})
    for served in ("vllm", None):
        r = check(endpoint, _points([{**EXTERNAL_VLLM, "served_by": served, "output_tok_s": 400.0}]))
        assert r.verdict == "measured 95% of the claim", (served, r)
    r = check(endpoint, _points([{"engine_label": "vllm", "output_tok_s": 400.0}]))
    assert r.measured == "- (no llama-3.1-70b point on engine external; measured: vllm)"


def test_a_run_against_an_endpoint_declared_as_vllm_meets_a_vllm_claim(tmp_path: Path) -> None:
    """End to end: the scenario's `served_by` and what the endpoint's /v1/models says (`owned_by`) go
    into the manifest, the points frame and the claim's verdict."""
    from harness.runinfo import points_frame
    from harness.runner import run_scenario
    from harness.scenario import parse_scenario
    from harness.testing.fake_server import FakeScript, FakeServer

    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0, owned_by="vllm")).start_in_thread()
    try:
        engine = {
            "type": "external",
            "base_url": srv.base_url,
            "model": {"source": "served", "name": "fake", "catalog": "llama-3.1-70b"},
            "precision": "fp8",
            "served_by": "vllm",
        }
        s = parse_scenario(
            {
                "name": "declared",
                "engine": engine,
                "workload": {"input_tokens": 8, "output_tokens": 4},
                "load": {"concurrency": [1], "requests": 4},
                "hardware": {"gpu": "h100-sxm"},
            }
        )
        run = run_scenario(s, tmp_path, console=Console(file=io.StringIO()), show_progress=False).run_dir
    finally:
        srv.stop()
    pts = points_frame([run])
    assert (pts["engine_label"].tolist(), pts["served_by"].tolist(), pts["owned_by"].tolist()) == (
        ["external"],
        ["vllm"],
        ["vllm"],
    )
    (r,) = check_all([LAMBDA_H100], pts)
    assert " tok/s at h100-sxm | external fp8 8/4 c1 (" in r.measured, r.measured
    declared = "engine vllm as the scenario declared it: an external endpoint the harness did not launch"
    assert f"{declared} (its /models says owned_by vllm too)" in r.verdict


# The article's spec table (REFERENCE: "HBM bandwidth A100 2.0 TB/s (HBM2e), H100 3.35 TB/s (HBM3)";
# "NVLink A100 600 GB/s, H100 900 GB/s"): the only description it gives of either GPU
ARTICLE_SPECS = {"A100": ("HBM2e", 2.0, 600), "H100": ("HBM3", 3.35, 900)}


def _parts_as_the_article_describes(family: str) -> set[str]:
    """The catalog GPUs of `family` with the article's memory type, bandwidth as stated (2.0 TB/s is
    1.95-2.05) and NVLink bandwidth."""
    memory, tb_s, nvlink = ARTICLE_SPECS[family]
    return {
        k
        for k, d in devices().items()
        if family in d.name
        and d.memory_type == memory
        and stated_to(tb_s, d.bandwidth_gbs / 1000)
        and d.nvlink_gbs == nvlink
    }


def _article_devices(family: str) -> set[str]:
    """The devices the article's claims (and ratio sides) name for a GPU of `family`."""
    named: set[str] = set()
    for c in claims():
        if c.source == "article":
            named |= {d for d in (c.device, c.numerator and c.numerator.device) if d}
            named |= {c.denominator.device} if c.denominator else set()
    return {d for d in named if family.lower() in d}


def test_the_articles_a100_is_the_80gb_sxm4_part_and_its_h100_the_sxm5() -> None:
    """The article says "A100" and "H100" without a model, but its spec table describes one part each:
    HBM2e at 2.0 TB/s with 600 GB/s NVLink is the A100 80GB SXM4 alone (the 80GB PCIe card's 1,935 GB/s
    is 1.9 TB/s; the 40GB parts have HBM2 at 1,555 GB/s), and HBM3 at 3.35 TB/s with 900 GB/s NVLink
    the H100 SXM5 (the NVL has 3.9 TB/s). Its claims name those parts, so a run on another A100 or
    H100 does not measure them."""
    assert _parts_as_the_article_describes("A100") == {"a100-80gb-sxm"} == _article_devices("A100")
    assert _parts_as_the_article_describes("H100") == {"h100-sxm"} == _article_devices("H100")
    a100 = next(c for c in claims() if c.id == "article-70b-a100")
    for other in ("a100-80gb-pcie", "a100-40gb-sxm", "a100-40gb-pcie"):
        r = check(a100, _points([{"engine_label": "vllm", "device": other, "output_tok_s": 1000.0}]))
        assert r.measured == f"- (no llama-3.1-70b point on a100-80gb-sxm; measured: {other})"
    r = check(a100, _points([{"engine_label": "vllm", "device": "a100-80gb-sxm", "output_tok_s": 1000.0}]))
    assert r.verdict == "measured 87% of the claim"  # 1000 / 1148
    assert "the article's A100 (HBM2e, 2.0 TB/s, NVLink 600 GB/s) is the 80GB SXM4 part" in str(a100.note)
