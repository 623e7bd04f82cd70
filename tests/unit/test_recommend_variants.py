"""`recommend`'s choice of a measured point: the asked output length too, the newest of runs that measured
nothing, the TPOT limit alone where no TTFT limit is asked (a p99 at the limit is within it), and the
basis naming a configuration only where a run had several labelled ones."""

from __future__ import annotations

import pandas as pd

from harness.catalog import get_model
from harness.recommend import Need, recommend

NAN = float("nan")


def _point(**over: object) -> dict[str, object]:
    base = {
        "model": "llama-3.1-70b", "device": "h100-sxm", "precision": "bf16", "devices": 8,
        "concurrency": 32, "output_tok_s": 2500.0, "ttft_s_p99": 0.5, "tpot_s_p99": 0.02,
        "run_id": "r8", "started_utc": "2026-11-01", "ok": 64, "errors": 0,
        "workload_input_tokens": 1024, "workload_output_tokens": 256,
    }  # fmt: skip
    return {**base, **over}


def test_a_point_of_another_output_length_is_not_the_measurement() -> None:
    """1024/128 tokens measured, 1024/256 asked: TP 8 is not listed, TP 2 and 4 are estimates."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(workload_output_tokens=128)])
    df, notes = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    assert sorted(df["devices"]) == [2, 4]
    assert list(df["basis"]) == ["roofline estimate (efficiency 1)"] * 2
    assert "run r8 not used: workload 1024/128 tokens, not the 1024/256 asked" in notes


def test_of_runs_that_all_measured_nothing_the_newest_is_the_measurement() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    failed = {"ok": 0, "errors": 64, "output_tok_s": NAN}
    runs = [_point(run_id="old", **failed), _point(run_id="new", started_utc="2026-11-02", **failed)]
    for order in (runs, runs[::-1]):
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(order), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["basis"] == "measured (new, p99 latencies)"
        assert tp8["why_not"] == "64 of 64 measured requests failed"


def test_without_a_ttft_limit_the_tpot_limit_still_picks_the_configuration() -> None:
    """No TTFT asked, TPOT p99 <= 0.03 s: the 2500 tok/s configuration at 0.05 s is over it, the 2100 tok/s
    one within it is taken."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, None, 0.03)
    variants = [
        _point(variant_label="mnbt=8192", output_tok_s=2500.0, tpot_s_p99=0.05),
        _point(variant_label="mnbt=2048", output_tok_s=2100.0),
    ]
    for order in (variants, variants[::-1]):
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(order), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["output_tok_s"] == 2100.0 and tp8["meets_slo"]
        assert tp8["basis"] == "measured (r8 mnbt=2048, the best of 2 configurations, p99 latencies)"


def test_a_configuration_exactly_at_the_tpot_limit_is_within_it() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, None, 0.05)
    variants = [
        _point(variant_label="mnbt=8192", output_tok_s=2500.0, tpot_s_p99=0.05),
        _point(variant_label="mnbt=2048", output_tok_s=2100.0),
    ]
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(variants), precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["output_tok_s"] == 2500.0
    assert tp8["basis"] == "measured (r8 mnbt=8192, the best of 2 configurations, p99 latencies)"


def test_a_lone_configuration_that_measured_nothing_is_not_called_the_best_of_several() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    point = _point(run_id="failed", variant_label="mnbt=8192", ok=0, errors=64, output_tok_s=NAN)
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame([point]), precisions=("bf16",))
    assert df[df["devices"] == 8].iloc[0]["basis"] == "measured (failed, p99 latencies)"


def test_a_run_of_one_labelled_configuration_is_named_by_its_run_alone() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    df, _ = recommend(
        need, {"h100-sxm": 2.0}, pd.DataFrame([_point(variant_label="mnbt=8192")]), precisions=("bf16",)
    )
    assert df[df["devices"] == 8].iloc[0]["basis"] == "measured (r8, p99 latencies)"


def test_several_unlabelled_points_of_one_option_are_named_by_their_run_alone() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(output_tok_s=2400.0), _point()])
    df, _ = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (r8, p99 latencies)" and tp8["output_tok_s"] == 2500.0


def test_a_point_without_request_counts_is_taken_as_no_failures() -> None:
    """A points table another tool wrote, or one whose counts are empty: NaN had crashed the ranking."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(errors=float("nan"), ok=float("nan"))])
    df, _ = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (r8, p99 latencies)" and tp8["meets_slo"] and tp8["why_not"] == ""
