"""Edges of a point's summary and its warnings: token counts the server did not report, the columns few
tests read, the engine's view beside the client's, and the limits of each warning (at the limit is not
over it). Expected values are worked out by hand in the comments."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness import flags, metrics, server_view
from harness.records import RequestRecord

MS = 1_000_000  # ns


def rec(i: int, sent: int, chunks: list[int], done: int, out: int | None, **fields: Any) -> RequestRecord:
    """A successful closed-loop request, stamps in ms (never 0: a 0 send stamp means never sent)."""
    r = RequestRecord(
        i,
        "p",
        sent * MS,
        sent * MS,
        chunks[0] * MS if chunks else None,
        done * MS,
        [c * MS for c in chunks],
        prompt_tokens=10,
        output_tokens=out,
    )
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def said(row: dict[str, Any], part: str) -> list[str]:
    return [w for w in flags.flags(row) if part in w]


# summarize: token totals and rates


def test_token_totals_count_what_the_server_did_not_report_as_nothing() -> None:
    # a: 10 prompt + 8 output tokens; b: no usage at all. Window 1000 -> 2000 ms = 1 s
    a = rec(1, 1000, [1100, 1200], 1500, 8)
    b = rec(2, 1000, [1100, 1200], 2000, None, prompt_tokens=None)
    row = metrics.summarize([a, b])
    assert (row["input_tokens"], row["output_tokens"]) == (10, 8)
    assert row["output_tok_s"] == pytest.approx(8.0)
    assert (row["missing_usage"], row["missing_prompt_tokens"]) == (1, 1)
    assert math.isnan(row["total_tok_s"])


def test_goodput_tokens_of_a_request_without_usage_are_none() -> None:
    # both meet the 1 s TTFT limit (100 ms each); only a's 8 tokens are known, over a 1 s window
    a = rec(1, 1000, [1100, 1200], 1500, 8)
    b = rec(2, 1000, [1100, 1200], 2000, None)
    row = metrics.summarize([a, b], slo_ttft_s=1.0)
    assert row["goodput_req_s"] == pytest.approx(2.0)
    assert row["goodput_tok_s"] == pytest.approx(8.0)


def test_requests_without_a_planned_output_length_are_neither_short_nor_long() -> None:
    free = rec(1, 1000, [1100, 1200], 1500, 8)  # a dataset prompt: no length asked
    short = rec(2, 1000, [1100, 1200], 1500, 4, expected_output_tokens=8)
    long = rec(3, 1000, [1100, 1200], 1500, 9, expected_output_tokens=8)
    row = metrics.summarize([free, short, long])
    assert (row["short_outputs"], row["long_outputs"]) == (1, 1)
    assert row["short_at_limit"] == 0  # no finish_reason: not said to be a length limit
    stopped = rec(4, 1000, [1100, 1200], 1500, 4, expected_output_tokens=8, finish_reason="length")
    stopped.output_tokens_source = "usage"
    row = metrics.summarize([short, stopped])
    assert (row["short_outputs"], row["short_at_limit"]) == (2, 1)
    # a count the client made (re-tokenized text, chunks) may be short by itself: not said to be a limit
    stopped.output_tokens_source = "tokenizer"
    assert metrics.summarize([short, stopped])["short_at_limit"] == 0


def test_a_prompt_of_unknown_length_is_no_prompt_token_mismatch() -> None:
    unknown = rec(1, 1000, [1100, 1200], 1500, 8, prompt_tokens=None, expected_input_tokens=10)
    off = rec(2, 1000, [1100, 1200], 1500, 8, prompt_tokens=12, expected_input_tokens=10)
    exact = rec(3, 1000, [1100, 1200], 1500, 8, expected_input_tokens=10)
    assert metrics.summarize([unknown, off, exact])["prompt_token_mismatch"] == 1


def test_text_token_and_cached_prompt_totals_are_sums_when_every_request_told() -> None:
    a = rec(1, 1000, [1100, 1200], 1500, 8, output_text_tokens=7, cached_prompt_tokens=0)
    b = rec(2, 1000, [1100, 1200], 1500, 8, output_text_tokens=9, cached_prompt_tokens=6)
    row = metrics.summarize([a, b])
    assert (row["output_text_tokens"], row["cached_prompt_tokens"]) == (16, 6)


def test_client_and_llamacpp_decode_rates_are_means_over_the_requests_that_have_them() -> None:
    # a: 5 tokens, first 1100, done 1500: TPOT 400 / 4 = 100 ms, 10 tok/s;
    # b: 3 tokens, first 1100, done 1200: TPOT 100 / 2 = 50 ms, 20 tok/s; c: one token, no rate
    a = rec(1, 1000, [1100, 1200, 1300, 1400, 1500], 1500, 5)
    a.server_timings = {"predicted_per_second": 30.0, "prompt_per_second": 500.0}
    b = rec(2, 1000, [1100, 1150, 1200], 1200, 3, server_timings={"predicted_per_second": 50.0})
    c = rec(3, 1000, [1100], 1100, 1)
    row = metrics.summarize([a, b, c])
    assert row["decode_tok_s_mean"] == pytest.approx(15.0)
    assert row["server_decode_tok_s_mean"] == pytest.approx(40.0)
    assert row["server_prefill_tok_s_mean"] == pytest.approx(500.0)
    plain = metrics.summarize([c])
    assert math.isnan(plain["decode_tok_s_mean"]) and math.isnan(plain["server_decode_tok_s_mean"])


def test_latency_columns_are_the_mean_and_the_50th_90th_and_99th_percentiles() -> None:
    row = metrics.summarize([rec(1, 1000, [1100, 1200], 1500, 8)])
    for stem in ("ttft_s", "tpot_s", "e2e_s"):
        expected = [f"{stem}_mean", f"{stem}_p50", f"{stem}_p90", f"{stem}_p99"]
        assert [k for k in row if k.startswith(f"{stem}_")] == expected


def test_a_stream_is_one_read_only_when_its_first_and_last_chunk_share_a_stamp() -> None:
    late_first = rec(1, 1000, [1100, 1300, 1300], 1300, 3)
    early_last = rec(2, 1000, [1300, 1300, 1400], 1400, 3)
    whole = rec(3, 1000, [1300, 1300, 1300], 1300, 3)
    assert [metrics.one_read(r) for r in (late_first, early_last, whole)] == [False, False, True]
    assert metrics.summarize([late_first, early_last, whole])["one_read_streams"] == 1


# server_comparison


def test_server_comparison_of_tpot_and_e2e() -> None:
    # the engine's TPOT 0.9 s / 30 = 30 ms, E2E 6 s / 4 = 1.5 s; the client's 33 ms and 1.2 s
    tpot, e2e = "server_vllm_request_time_per_output_token_seconds", "server_vllm_e2e_request_latency_seconds"
    row = {
        "tpot_s_mean": 0.033,
        "e2e_s_mean": 1.2,
        f"{tpot}_sum_delta": 0.9,
        f"{tpot}_count_delta": 30.0,
        f"{e2e}_sum_delta": 6.0,
        f"{e2e}_count_delta": 4.0,
    }
    assert server_view.server_comparison(row) == {
        "server_tpot_s_mean": pytest.approx(0.03),
        "server_tpot_s_rel_diff": pytest.approx(0.1),  # (33 - 30) / 30
        "server_e2e_s_mean": pytest.approx(1.5),
        "server_e2e_s_rel_diff": pytest.approx(-0.2),  # (1.2 - 1.5) / 1.5
    }


def test_a_histogram_without_its_sum_or_count_gives_no_column() -> None:
    e2e = "server_vllm_e2e_request_latency_seconds"
    assert server_view.server_comparison({"e2e_s_mean": 1.0, f"{e2e}_count_delta": 4.0}) == {}
    assert server_view.server_comparison({"e2e_s_mean": 1.0, f"{e2e}_sum_delta": 4.0}) == {}
    assert server_view.server_comparison({f"{e2e}_sum_delta": 4.0, f"{e2e}_count_delta": 0.0}) == {}


def test_the_engines_mean_is_given_but_not_judged_without_a_client_mean() -> None:
    ttft = "server_vllm_time_to_first_token_seconds"
    engine = {f"{ttft}_sum_delta": 0.5, f"{ttft}_count_delta": 10.0}  # 50 ms
    assert server_view.server_comparison(engine) == {"server_ttft_s_mean": pytest.approx(0.05)}
    # NaN as read back from a points table where nothing succeeded
    assert server_view.server_comparison({**engine, "ttft_s_mean": math.nan}) == {
        "server_ttft_s_mean": pytest.approx(0.05)
    }


def test_an_engine_mean_of_zero_is_given_but_not_judged() -> None:
    itl = "server_vllm_inter_token_latency_seconds"
    row = {"itl_s_mean": 0.004, f"{itl}_sum_delta": 0.0, f"{itl}_count_delta": 5.0}
    assert server_view.server_comparison(row) == {"server_itl_s_mean": 0.0}


# warnings: KV cache


def test_no_kv_cache_warning_without_a_concurrency() -> None:
    row = {"mode": "closed", "kv_cache_tokens": 1000, "ok": 4, "input_tokens": 4000, "output_tokens": 1120}
    assert flags.kv_cache_short(row) is None
    assert flags.kv_cache_short({**row, "concurrency": math.nan}) is None


def test_kv_cache_request_size_leaves_out_unknown_token_columns() -> None:
    row = {"mode": "closed", "concurrency": 4, "ok": 4}
    # no input count: 1120 output tokens / 4 = 280 each; 4 x 280 = 1120 > 1000
    no_input = {**row, "kv_cache_tokens": 1000, "input_tokens": math.nan, "output_tokens": 1120}
    assert flags.kv_cache_short(no_input) == (1000.0, 280.0, 4)
    # no output count: 4000 / 4 = 1000 each; 4 x 1000 = 4000 > 3000
    no_output = {**row, "kv_cache_tokens": 3000, "input_tokens": 4000}
    assert flags.kv_cache_short(no_output) == (3000.0, 1000.0, 4)


def test_kv_cache_warning_for_requests_of_a_single_token() -> None:
    # 4 requests of 1 token each, a cache of 3 tokens: 4 x 1 > 3
    row = {"mode": "closed", "concurrency": 4, "ok": 4, "input_tokens": 4, "output_tokens": 0}
    assert flags.kv_cache_short({**row, "kv_cache_tokens": 3}) == (3.0, 1.0, 4)
    assert flags.kv_cache_short({**row, "kv_cache_tokens": 4}) is None


# warnings: outputs and counts


def test_token_count_cross_checks_are_warned_about() -> None:
    got = flags.flags({"ok": 5, "chunk_token_mismatch": 2, "text_token_mismatch": 1})
    assert got == [
        "2/5 requests: content chunks differ from usage by > 2 %",
        "1/5 requests: tokenizer count of the streamed text differs from usage by > 2 %",
    ]


def test_short_outputs_blame_eos_unless_the_row_says_ignore_eos_was_off() -> None:
    row = {"ok": 4, "short_outputs": 1}
    eos = "1/4 requests returned fewer tokens than asked (EOS not ignored?): TPOT and tok/s mix lengths"
    assert flags.flags(row) == [eos]
    assert flags.flags({**row, "ignore_eos": True}) == [eos]
    assert said({**row, "ignore_eos": False}, "(ignore_eos is off)")
    # a request that a length limit stopped (the context filled: 900 in + 124 out of a 1024 slot) is
    # not blamed on its end of sequence
    both = {"ok": 4, "short_outputs": 3, "short_at_limit": 1, "ignore_eos": True}
    assert flags.flags(both) == [
        "1/4 requests stopped short of the tokens asked at a length limit (finish_reason length: the "
        "engine's context filled?): TPOT and tok/s mix lengths",
        "2/4 requests returned fewer tokens than asked (EOS not ignored?): TPOT and tok/s mix lengths",
    ]


def test_zero_gaps_are_warned_about_over_a_tenth_of_the_gaps_only() -> None:
    assert not said({"ok": 4, "itl_zero_frac": 0.1}, "were 0")
    (w,) = said({"ok": 4, "itl_zero_frac": 0.11}, "were 0")
    assert w.startswith("11% of the gaps between content chunks were 0 (chunks that arrived in one read)")


# warnings: the window


def test_energy_is_warned_about_below_a_one_second_window_only() -> None:
    row = {"ok": 4, "gpu_energy_j": 50.0}
    (w,) = said({**row, "window_s": 0.5}, "energy over")
    assert w.startswith("energy over a 0.50 s window: the GPU energy counter updates every 20-100 ms")
    assert said({**row, "window_s": 0.95}, "energy over")
    for window in ({"window_s": 1.0}, {"window_s": 2.0}, {}, {"window_s": math.nan}):
        assert not said({**row, **window}, "energy over")


def test_no_arrival_warning_without_an_offered_rate() -> None:
    row = {"ok": 4, "mode": "open", "rate_rps": 10.0, "requests": 400}
    assert flags.flags(row) == []
    assert flags.flags({**row, "offered_req_s": math.nan}) == []


def test_arrival_draws_of_poisson_shape_without_a_burstiness_column() -> None:
    # 101 requests, shape 1: expected within 2 / sqrt(1 x 100) = 20 % of the rate
    row = {"ok": 101, "mode": "open", "rate_rps": 10.0, "requests": 101}
    for shape in ({}, {"burstiness": math.nan}, {"burstiness": 1.0}):
        assert said({**row, **shape, "offered_req_s": 7.5}, "arrival draw")  # 25 % off
        assert not said({**row, **shape, "offered_req_s": 8.3}, "arrival draw")  # 17 % off


def test_arrival_draw_limits_are_2_over_sqrt_of_the_gaps_and_10_percent() -> None:
    # 101 requests: 100 gaps, 2 / sqrt(100) = 20 %: 2.0 req/s off 10 is at the limit, 2.01 over it
    row = {"ok": 101, "mode": "open", "rate_rps": 10.0, "requests": 101}
    assert not said({**row, "offered_req_s": 8.0}, "arrival draw")
    assert said({**row, "offered_req_s": 7.99}, "arrival draw")
    # 2 requests: 1 gap, 2 / sqrt(1) = 200 %
    two = {**row, "requests": 2}
    assert not said({**two, "offered_req_s": 25.0}, "arrival draw")
    assert said({**two, "offered_req_s": 31.0}, "arrival draw")
    # 10001 requests: 2 / sqrt(10000) = 2 %, so the 10 % floor holds
    many = {**row, "requests": 10001}
    assert not said({**many, "offered_req_s": 9.0}, "arrival draw")
    assert said({**many, "offered_req_s": 8.99}, "arrival draw")


# warnings: load, client, engine


def test_a_failed_tail_is_warned_about_over_a_tenth_of_the_window_only() -> None:
    row = {"ok": 4, "window_s": 10.0}
    assert not said({**row, "failed_tail_s": 0.5}, "failed requests ended")  # 5 %
    assert not said({**row, "failed_tail_s": 1.0}, "failed requests ended")  # 10 %: at the limit
    assert said({**row, "failed_tail_s": 1.05}, "failed requests ended")  # 10.5 %
    (w,) = said({**row, "failed_tail_s": 1.5}, "failed requests ended")
    assert w.startswith("failed requests ended 1.5 s after the last successful one: 15% of the window")
    for window in ({"window_s": 0.0}, {"window_s": math.nan}):
        assert not said({**row, **window, "failed_tail_s": 1.5}, "failed requests ended")


def test_steal_of_exactly_5_percent_is_not_warned_about() -> None:
    assert not said({"ok": 8, "host_cpu_steal_pct_mean": 5.0}, "hypervisor")
    assert said({"ok": 8, "host_cpu_steal_pct_mean": 5.5}, "hypervisor")


def test_other_load_is_warned_about_over_half_a_core_on_a_host_at_least_90_percent_busy() -> None:
    # 1.56 busy cores - the engine's 100 % (1.0 core) - the client's 0 s of CPU = 0.56 cores of others
    row = {
        "ok": 8,
        "host_cpu_pct_mean": 90.0,
        "host_busy_cores_mean": 1.56,
        "engine_cpu_pct_mean": 100.0,
        "client_cpu_s": 0.0,
        "window_s": 10.0,
    }
    (w,) = said(row, "other processes")
    assert w.startswith("the host's CPUs were 90 % busy during the point, about 0.6 cores of it other")
    assert not said({**row, "host_cpu_pct_mean": 89.9}, "other processes")
    assert not said({**row, "host_busy_cores_mean": 1.5}, "other processes")  # 0.5 cores: at the limit
    assert not said({**row, "host_cpu_pct_mean": math.nan}, "other processes")


def test_other_busy_cores_need_the_clients_cpu_and_a_window() -> None:
    # 1.6 - 1.0 - 2 s / 10 s = 0.4 cores
    row = {"host_busy_cores_mean": 1.6, "engine_cpu_pct_mean": 100.0, "client_cpu_s": 2.0, "window_s": 10.0}
    assert flags.other_busy_cores(row) == pytest.approx(0.4)
    assert flags.other_busy_cores({**row, "client_cpu_s": math.nan}) is None
    assert flags.other_busy_cores({**row, "window_s": 0.0}) is None
    assert flags.other_busy_cores({**row, "window_s": math.nan}) is None


def test_client_saturation_as_read_back_from_a_points_table() -> None:
    for flag in (True, 1, 1.0):
        (w,) = said({"ok": 4, "client_saturated": flag, "client_cpu_util_max": 0.95}, "saturation")
        assert w.startswith("the client is near saturation (busiest client process at 95% of a core)")
    for flag in (False, 0, 0.0, math.nan):
        assert not said({"ok": 4, "client_saturated": flag}, "saturation")
    assert said({"ok": 4, "client_saturated": True}, "saturation")  # no CPU column


def test_send_lag_is_warned_about_over_5_ms_only() -> None:
    row = {"ok": 4, "mode": "open", "max_concurrency": None}
    assert not said({**row, "send_lag_s_p99": 0.001}, "went out late")
    assert not said({**row, "send_lag_s_p99": 0.005}, "went out late")
    assert said({**row, "send_lag_s_p99": 0.0051}, "went out late")


def test_event_loop_lag_at_its_limit_is_not_warned_about() -> None:
    row = {"ok": 4, "itl_s_p50": 0.01}  # a tenth of it, 1 ms, is under the 5 ms floor
    assert not said({**row, "client_loop_lag_s_p99": 0.005}, "event loop")
    assert said({**row, "client_loop_lag_s_p99": 0.0051}, "event loop")
    slow = {"ok": 4, "itl_s_p50": 0.08}  # a tenth of it: 8 ms
    assert not said({**slow, "client_loop_lag_s_p99": 0.008}, "event loop")
    assert said({**slow, "client_loop_lag_s_p99": 0.0081}, "event loop")


def test_client_and_engine_means_within_5_percent_are_not_warned_about() -> None:
    # 40 ms apart is more than the 5 ms floor, but only 4 % (and then exactly 5 %) of the engine's 1 s
    row = {"ok": 4, "server_ttft_s_mean": 1.0}
    assert not said({**row, "ttft_s_mean": 1.04, "server_ttft_s_rel_diff": 0.04}, "differs")
    assert not said({**row, "ttft_s_mean": 1.05, "server_ttft_s_rel_diff": 0.05}, "differs")
    assert said({**row, "ttft_s_mean": 1.06, "server_ttft_s_rel_diff": 0.06}, "differs")


def test_client_and_engine_means_exactly_the_floor_apart_are_not_warned_about() -> None:
    # TTFT 10 ms against 5 ms (+100 %) and ITL 6 ms against 5 ms (+20 %): 5 ms and 1 ms apart, the floors
    ttft = {"ok": 4, "ttft_s_mean": 0.01, "server_ttft_s_mean": 0.005, "server_ttft_s_rel_diff": 1.0}
    itl = {"ok": 4, "itl_s_mean": 0.006, "server_itl_s_mean": 0.005, "server_itl_s_rel_diff": 0.2}
    assert not said(ttft, "differs") and not said(itl, "differs")
    assert said({**ttft, "ttft_s_mean": 0.011}, "TTFT differs")
    assert said({**itl, "itl_s_mean": 0.0062}, "ITL differs")


def test_a_point_where_nothing_succeeded_warns_only_of_what_it_sent() -> None:
    row = {"ok": 0, "energy_scope": "incomplete", "host_cpu_steal_pct_mean": 41.0, "client_saturated": True}
    assert flags.flags(row) == ["GPU energy unknown for this window (a GPU's samples missing): no J/token"]
    assert flags.flags({"ok": 0, "server_output_tokens_diff": -4}) == []


def test_a_point_with_some_failures_names_the_first_ones_message() -> None:
    """A prompt past the engine's context failed with HTTP 400 and what the server said, and the note
    gave only `(http:1)`: the row keeps the first failure's message, and the note says it."""
    import pandas as pd

    from harness.report import point_notes

    ok = rec(1, 1000, [1100, 1200], 1500, 8)
    bad = rec(2, 1000, [], 1100, None)
    bad.error_kind, bad.error = (
        "http",
        "HTTP 400: request (1500 tokens)\n  exceeds the available context size",
    )
    row = metrics.summarize([ok, bad])
    # on one line (a proxy's HTML error page would break the Markdown notes)
    assert row["first_error"] == "HTTP 400: request (1500 tokens) exceeds the available context size"
    assert metrics.summarize([ok])["first_error"] == ""
    (note, *_) = point_notes(pd.DataFrame([{**row, "point_id": "v0-c1"}]))
    assert note == (
        "point v0-c1: 1 of 2 measured requests failed (http:1; first: HTTP 400: request (1500 tokens) "
        "exceeds the available context size); its latencies cover the others only"
    )
