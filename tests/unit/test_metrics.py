"""Metrics from hand-built records; every expected value computed by hand in the comments."""

from __future__ import annotations

import math

import pytest

from harness import flags, metrics, server_view
from harness.records import RequestRecord

MS = 1_000_000  # ns


def rec(
    i: int,
    sched: int,
    sent: int,
    chunks: list[int],
    done: int,
    out: int,
    prompt: int = 10,
    warmup: bool = False,
) -> RequestRecord:
    return RequestRecord(
        i,
        "p",
        sched * MS,
        sent * MS,
        chunks[0] * MS if chunks else None,
        done * MS,
        [c * MS for c in chunks],
        prompt,
        out,
        out,
        prompt,
        finish_reason="length",
        warmup=warmup,
    )


def test_single_request_latencies() -> None:
    # sent at 100 ms, chunks at 150, 160, 180, 190 ms, done 200 ms, 4 tokens
    r = rec(0, 90, 100, [150, 160, 180, 190], 200, 4)
    assert metrics.ttft_s(r) == pytest.approx(0.050)  # 150 - 100
    assert metrics.ttft_s(r, open_loop=True) == pytest.approx(0.060)  # 150 - 90 (scheduled)
    assert metrics.e2e_s(r) == pytest.approx(0.100)  # 200 - 100
    assert metrics.tpot_s(r) == pytest.approx(0.050 / 3)  # (200 - 150) / (4 - 1)
    assert metrics.itl_s(r) == pytest.approx([0.010, 0.020, 0.010])
    assert metrics.itl_array_s(r).tolist() == metrics.itl_s(r)  # the same floats, as an array
    assert metrics.itl_array_s(rec(0, 90, 100, [], 200, 0)).size == 0
    assert metrics.decode_tok_s(r) == pytest.approx(60.0)  # 3 tokens / 0.05 s


def test_tpot_undefined_for_one_token() -> None:
    r = rec(0, 1, 1, [10], 10, 1)
    assert metrics.tpot_s(r) is None
    assert metrics.decode_tok_s(r) is None


def test_summary_throughput_window_and_percentiles() -> None:
    rs = [
        rec(0, 0, 0, [5, 6], 10, 8, warmup=True),  # excluded
        rec(1, 100, 100, [200, 250], 300, 10),  # ttft 100 ms, e2e 200 ms
        rec(2, 100, 120, [400, 450], 600, 20),  # ttft 280 ms, e2e 480 ms
        rec(3, 150, 150, [], 160, 0),  # failed below
    ]
    rs[3].error_kind = "http"
    rs[3].first_token_ns = None
    row = metrics.summarize(rs)
    assert row["requests"] == 3 and row["ok"] == 2 and row["errors"] == 1
    assert row["window_s"] == pytest.approx(0.5)  # last done 600 - first send 100
    assert row["output_tok_s"] == pytest.approx(60.0)  # (10 + 20) / 0.5
    assert row["total_tok_s"] == pytest.approx(100.0)  # (10 + 20 + 10 + 10) / 0.5
    assert row["req_s"] == pytest.approx(4.0)  # 2 / 0.5
    assert row["ttft_s_mean"] == pytest.approx(0.190)  # (0.100 + 0.280) / 2
    assert row["ttft_s_p50"] == pytest.approx(0.190)  # linear between two values
    assert row["ttft_s_p90"] == pytest.approx(0.100 + 0.9 * 0.180)  # 0.262
    assert row["e2e_s_p99"] == pytest.approx(0.200 + 0.99 * 0.280)
    assert row["error_kinds"] == "http:1"
    # chunk counts (2) differ from usage (10, 20): flagged, usage wins
    assert row["chunk_token_mismatch"] == 2


def test_summary_pools_itl_times_open_loop_from_the_schedule_and_keeps_failures_out() -> None:
    """Open loop, four measured requests (times in ms):
    r1 scheduled 0, sent 10, chunks 50 60, done 70: TTFT 50, E2E 70 (from the schedule), gaps [10]
    r2 scheduled 100, sent 100, chunks 120 130 140 150 160 200, done 200: TTFT 20, E2E 100,
       gaps [10, 10, 10, 10, 40]
    r3 cut mid-stream (disconnected) after chunks 105 and 400: no TTFT, ITL or E2E of it counts
    r4 scheduled 200, sent 200, chunks 230 240, done 250, no usage: TTFT 30, E2E 50, gaps [10]"""
    r1 = rec(1, 0, 10, [50, 60], 70, 2)
    r2 = rec(2, 100, 100, [120, 130, 140, 150, 160, 200], 200, 6)
    r3 = rec(3, 100, 100, [105, 400], 400, 2)
    r3.error_kind = "disconnected"
    r4 = rec(4, 200, 200, [230, 240], 250, 2)
    r4.output_tokens = None
    row = metrics.summarize([r1, r2, r3, r4], open_loop=True, slo_ttft_s=0.040)
    # ITL pooled over the successful requests: [10] * 6 + [40]; the mean of per-request means would be 12
    assert row["itl_s_mean"] == pytest.approx(0.100 / 7)
    assert row["itl_s_p50"] == pytest.approx(0.010)
    assert row["itl_s_p99"] == pytest.approx(0.010 + 0.94 * 0.030)  # rank 0.99 x 6 = 5.94
    assert row["ttft_s_mean"] == pytest.approx((0.050 + 0.020 + 0.030) / 3)
    assert row["e2e_s_mean"] == pytest.approx((0.070 + 0.100 + 0.050) / 3)  # from sent it would be 0.210 / 3
    assert row["ttft_from_send_s_mean"] == pytest.approx((0.040 + 0.020 + 0.030) / 3)
    # TPOT of the successful requests with usage: r1 (70 - 50) / 1 = 20 ms, r2 (200 - 120) / 5 = 16 ms
    assert row["tpot_s_mean"] == pytest.approx(0.018)
    assert row["missing_usage"] == 1
    assert "1/3 requests carried no usage: their output tokens are unknown, left out of tok/s" in flags.flags(
        row
    )
    # TTFT SLO 40 ms: r2 and r4 meet it, r1 does not, the failed r3 cannot; attainment is over all four
    assert row["slo_attainment"] == pytest.approx(2 / 4)
    assert row["goodput_req_s"] == pytest.approx(2 / 0.390)  # window: last done 400 - first send 10


def test_total_tok_s_needs_every_prompt_count() -> None:
    """An endpoint without usage and without a tokenizer: the prompt counts are unknown, and a total of
    output tokens alone read as total tok/s (the same number as output tok/s)."""
    known = rec(1, 100, 100, [200, 250], 300, 10)
    unknown = rec(2, 100, 100, [200, 250], 300, 10)
    unknown.prompt_tokens = None
    row = metrics.summarize([known, unknown])
    assert row["output_tok_s"] == pytest.approx(100.0)  # 20 tokens / 0.2 s
    assert math.isnan(row["total_tok_s"]) and row["missing_prompt_tokens"] == 1
    assert "1/2 requests: prompt tokens unknown (no usage in the stream, no tokenizer)" in " ".join(
        flags.flags(row)
    )
    assert metrics.summarize([known])["total_tok_s"] == pytest.approx(100.0)  # (10 + 10) / 0.2


def test_prompts_fitted_longer_than_asked_are_flagged() -> None:
    """input_tokens 2 with a 1-token shared prefix: the fitted prompt is 3 tokens (its opening number
    and the prefix alone); the prompt-token check compares against the fitted count, so it said nothing."""
    r = rec(1, 100, 100, [200, 250], 300, 10, prompt=3)
    r.expected_input_tokens, r.asked_input_tokens = 3, 2
    fine = rec(2, 100, 100, [200, 250], 300, 10, prompt=8)
    fine.expected_input_tokens, fine.asked_input_tokens = 8, 8
    row = metrics.summarize([r, fine])
    assert row["prompts_over_asked"] == 1 and row["prompt_token_mismatch"] == 0
    assert any(w.startswith("1/2 prompts are longer than the workload asked") for w in flags.flags(row))


def test_goodput_counts_only_requests_within_every_slo() -> None:
    # sent_ns == 0 means "never sent", so the stamps start at 1000 ms
    fast = rec(1, 1000, 1000, [1100, 1110], 1200, 11)  # ttft 0.1 s, tpot 0.01 s
    slow_ttft = rec(2, 1000, 1000, [4000, 4010], 4100, 11)  # ttft 3 s
    slow_tpot = rec(3, 1000, 1000, [1100, 1200], 3100, 11)  # tpot (3100 - 1100) / 10 = 0.2 s
    row = metrics.summarize([fast, slow_ttft, slow_tpot], slo_ttft_s=2.0, slo_tpot_s=0.1)
    assert row["window_s"] == pytest.approx(3.1)
    assert row["goodput_req_s"] == pytest.approx(1 / 3.1)
    assert row["slo_attainment"] == pytest.approx(1 / 3)
    assert metrics.meets_slo(fast, 2.0, 0.1, None)
    assert not metrics.meets_slo(slow_tpot, 2.0, 0.1, None)
    # a one-token output has no TPOT to violate; an unknown token count (no usage) has no TPOT to meet
    one = rec(4, 1000, 1000, [1100], 1100, 1)
    unknown = rec(5, 1000, 1000, [1100, 1200], 3100, 11)
    unknown.output_tokens = None
    assert metrics.meets_slo(one, 2.0, 0.1, None) and not metrics.meets_slo(unknown, 2.0, 0.1, None)
    assert metrics.meets_slo(unknown, 2.0, None, None)  # without a TPOT limit it is not asked
    # a failed request meets no SLO, however fast its stamps (cut after its first chunks)
    cut = rec(6, 1000, 1000, [1100, 1110], 1200, 11)
    cut.error_kind = "disconnected"
    assert not metrics.meets_slo(cut, 2.0, 0.1, None) and not metrics.meets_slo(cut, None, None, None)


def test_empty_point_gives_nan_not_errors() -> None:
    row = metrics.summarize([])
    assert row["requests"] == 0
    assert math.isnan(row["output_tok_s"]) and math.isnan(row["ttft_s_p50"])


def test_streams_that_arrived_in_one_read_are_counted_and_noted() -> None:
    import pandas as pd

    from harness.report import point_notes

    held = rec(0, 0, 0, [300, 300, 300, 300], 300, 4)  # every chunk in the read at 300 ms
    normal = rec(1, 0, 0, [100, 110, 120, 130], 130, 4)
    short = rec(2, 0, 0, [50, 50], 50, 2)  # two chunks in one read: too short to say
    assert [metrics.one_read(r) for r in (held, normal, short)] == [True, False, False]
    row = metrics.summarize([held, normal, short])
    assert row["one_read_streams"] == 1
    notes = point_notes(pd.DataFrame([{"point_id": "v0-c2", **row}]))
    assert notes[0] == (
        "point v0-c2: 1 of 3 streams arrived in a single read (TPOT and ITL 0): the engine or this client "
        "held them back (a saturated host?)"
    )
    # the whole stream's gaps are said above; of the others, `short`'s one gap of 4 was 0
    assert notes[1:] == [
        "point v0-c2: 25% of the gaps between content chunks were 0 (chunks that arrived in one read): ITL "
        "percentiles show how tokens were delivered, not how fast they were generated (an engine that sends "
        "tokens in bursts, or a client that read late)"
    ]


def test_a_point_where_nothing_succeeded_has_no_rates() -> None:
    """Sent and failed (a timeout) gave 0.0 tok/s, never sent (connect error) NaN: both are now NaN."""
    timed_out = rec(1, 100, 100, [], 700, 0)
    refused = rec(2, 100, 0, [], 100, 0)
    for r in (timed_out, refused):
        r.error_kind, r.first_token_ns, r.output_tokens = "timeout", None, None
    for rs in ([timed_out], [refused], [timed_out, refused]):
        row = metrics.summarize(rs)
        assert row["ok"] == 0 and row["errors"] == len(rs)
        for k in ("output_tok_s", "total_tok_s", "req_s", "goodput_req_s", "goodput_tok_s"):
            assert math.isnan(row[k]), (k, rs)


def test_failures_that_outlast_the_successes_are_measured_and_flagged() -> None:
    # 2 successes end at 300 ms; a timeout sent at 100 ms ends at 1100 ms: window 1.0 s, 0.8 s of it failures
    rs = [rec(1, 100, 100, [200, 250], 300, 10), rec(2, 100, 100, [150, 200], 250, 10)]
    late = rec(3, 100, 100, [], 1100, 0)
    late.error_kind, late.first_token_ns = "timeout", None
    row = metrics.summarize([*rs, late])
    assert row["window_s"] == pytest.approx(1.0) and row["output_tok_s"] == pytest.approx(20.0)
    assert row["failed_tail_s"] == pytest.approx(0.8)
    assert any("ended 0.8 s after the last successful one: 80%" in w for w in flags.flags(row))
    # a failure that ends before the last success adds nothing
    early = rec(4, 100, 100, [], 200, 0)
    early.error_kind, early.first_token_ns = "http", None
    row = metrics.summarize([*rs, early])
    assert row["failed_tail_s"] == 0.0 and not any("after the last successful" in w for w in flags.flags(row))


def test_offered_rate_is_what_the_schedule_offered_and_a_far_draw_is_flagged() -> None:
    # scheduled at 0, 100, 150, 400 ms after a perf_counter origin 1000 s on: 3 gaps over 0.4 s = 7.5 req/s
    # offered (from an origin of 0, the span and its end were one number)
    t0 = 1_000_000
    rs = [
        rec(i, t0 + t, t0 + t, [t0 + t + 10, t0 + t + 20], t0 + t + 30, 2)
        for i, t in enumerate((0, 100, 150, 400))
    ]
    row = metrics.summarize(rs, open_loop=True)
    assert row["offered_req_s"] == pytest.approx(7.5)
    assert metrics.offered_req_s(rs[:1]) != metrics.offered_req_s(rs[:1])  # NaN: one request, no span
    assert "offered_req_s" not in metrics.summarize(rs)  # closed loop has no schedule
    # 4 requests: a random schedule that short is expected to be off by about 1/sqrt(3) = 58 %
    assert not any("arrival draw" in w for w in flags.flags({**row, "rate_rps": 10.0}))
    # had 400 requests offered 7.5 against 10 (25 % off; expected within about 2/sqrt(399) = 10 %)
    many = {**row, "rate_rps": 10.0, "requests": 400}
    (w,) = [w for w in flags.flags(many) if "arrival draw" in w]
    assert w.startswith("the arrival draw offered 7.5 req/s, not the point's 10 (400 requests are a short")
    # within 10 % of the rate: nothing to say
    assert not any("arrival draw" in w for w in flags.flags({**many, "rate_rps": 8.0}))
    # gamma arrivals of shape 0.1 spread wider: 2 / sqrt(0.1 x 399) = 32 %, so 25 % off is expected
    assert not any("arrival draw" in w for w in flags.flags({**many, "burstiness": 0.1}))
    assert any("arrival draw" in w for w in flags.flags({**many, "burstiness": 0.25}))  # 20 %


def test_requests_that_waited_for_a_slot_reached_the_server_slower_than_offered() -> None:
    """With max_concurrency the schedule offered 19.7 req/s and the server got 14.9: offered_req_s alone
    read as the engine's load."""
    t0 = 1_000_000
    # offered at 0, 100, 150, 400 ms (7.5 req/s); sent at 0, 200, 400, 600 ms after waiting for the slot
    rs = [
        rec(i, t0 + t, t0 + s, [t0 + s + 10, t0 + s + 20], t0 + s + 30, 2)
        for i, (t, s) in enumerate(((0, 0), (100, 200), (150, 400), (400, 600)))
    ]
    row = metrics.summarize(rs, open_loop=True)
    assert row["offered_req_s"] == pytest.approx(7.5) and row["sent_req_s"] == pytest.approx(5.0)  # 3 / 0.6 s
    (w,) = [w for w in flags.flags({**row, "max_concurrency": 1}) if "reached the server" in w]
    assert w == (
        "requests reached the server at 5 req/s, not the 7.5 offered: they waited for a max_concurrency slot "
        "(the wait is in their TTFT and E2E)"
    )
    assert "client sent them late" in next(w for w in flags.flags(row) if "reached the server" in w)
    # a request never sent (its connection failed: sent_ns 0) did not reach the server at time 0
    never = rec(4, t0 + 500, 0, [], t0 + 501, 0)
    never.error_kind = "connect"
    assert metrics.summarize([*rs, never], open_loop=True)["sent_req_s"] == pytest.approx(5.0)
    # sent as scheduled: nothing to say
    on_time = metrics.summarize(
        [rec(i, t0 + t, t0 + t, [t0 + t + 10], t0 + t + 30, 1) for i, t in enumerate((0, 100, 150, 400))],
        open_loop=True,
    )
    assert on_time["sent_req_s"] == pytest.approx(7.5)
    assert not [w for w in flags.flags({**on_time, "max_concurrency": 1}) if "reached the server" in w]


def test_an_open_loop_window_that_ends_without_arrivals_is_flagged() -> None:
    """At 100 req/s with too few cooldown requests, arrivals stopped 85 ms before the window's end: the
    requests in flight drained, and req/s read 10 % under the arrivals the server saw."""
    t0 = 5000  # ms
    # measured sent at 0.0-0.8 s, a cooldown request at 0.9 s; the last measured one ends at 2.0 s
    rs = [rec(i, t0 + i * 100, t0 + i * 100, [], t0 + 2000, 1) for i in range(9)]
    cool = rec(9, t0 + 900, t0 + 900, [], t0 + 2000, 1, warmup=True)
    w0, w1 = t0 * MS, (t0 + 2000) * MS
    assert metrics.arrivals_tail_s([*rs, cool], w0, w1) == pytest.approx(1.1)  # 2.0 - 0.9
    assert metrics.arrivals_tail_s(rs, w0, w1) == pytest.approx(1.2)  # without it: 2.0 - 0.8
    row = {"window_s": 2.0, "rate_rps": 10.0, "arrivals_tail_s": 1.1, "e2e_s_p99": 1.5}
    (w,) = [w for w in flags.flags(row) if "no request arrived" in w]
    assert w == (
        "no request arrived in the last 1.10 s of the 2.00 s window (55%): the requests in flight drained as "
        "the load fell off, so the point's end measured less than 10 req/s (cooldown_requests of about rate "
        "x E2E p99 = 15 keep it up)"
    )
    assert not [w for w in flags.flags({**row, "arrivals_tail_s": 0.1}) if "no request arrived" in w]


def test_concurrency_beyond_the_kv_cache_is_flagged() -> None:
    # 4 concurrent requests of 1000 + 280 tokens = 5120 tokens; the cache holds 3000: about 2 fit at once
    row = {"mode": "closed", "concurrency": 4, "ok": 4, "input_tokens": 4000, "output_tokens": 1120}
    assert flags.kv_cache_short({**row, "kv_cache_tokens": 3000}) == (3000.0, 1280.0, 4)
    (w,) = [w for w in flags.flags({**row, "kv_cache_tokens": 3000}) if "KV cache" in w]
    assert "holds 3,000 tokens: about 2 of the 4 concurrent requests (1,280 tokens each)" in w
    # room for all of them, an unknown cache (NaN as read back from a table), an open loop: no warning
    for other in ({"kv_cache_tokens": 5120}, {"kv_cache_tokens": math.nan}, {"mode": "open"}, {"ok": 0}):
        assert flags.kv_cache_short({**row, "kv_cache_tokens": 3000, **other}) is None


def test_open_loop_points_set_a_ttft_from_the_send_beside_the_engines() -> None:
    """A request that waited 400 ms for a max_concurrency slot: its TTFT (from the schedule) holds that
    wait, which the engine never saw; the comparison with the engine's histogram uses the send."""
    r = [rec(0, 0, 400, [450, 460], 470, 2), rec(1, 100, 100, [150, 160], 170, 2)]
    row = metrics.summarize(r, open_loop=True)
    assert row["ttft_s_mean"] == pytest.approx((0.450 + 0.050) / 2)
    assert row["ttft_from_send_s_mean"] == pytest.approx(0.050)
    assert row["e2e_from_send_s_mean"] == pytest.approx(0.070)
    vllm = "server_vllm_time_to_first_token_seconds"
    row |= {f"{vllm}_sum_delta": 0.1, f"{vllm}_count_delta": 2}  # the engine's 50 ms mean
    cmp = server_view.server_comparison(row)
    assert cmp["server_ttft_s_mean"] == pytest.approx(0.050) and cmp[
        "server_ttft_s_rel_diff"
    ] == pytest.approx(0)
    # closed loop: TTFT counts from the send already
    closed = metrics.summarize(r)
    assert "ttft_from_send_s_mean" not in closed and closed["ttft_s_mean"] == pytest.approx(0.050)


def test_a_stream_without_usage_that_stopped_early_is_counted_by_its_chunks() -> None:
    """An endpoint that ignores stream_options.include_usage: a stream that ended for `length` ran to
    max_tokens; one that stopped early is counted one token per content chunk, flagged as approximate.
    Counted as 0 tokens, it had read 90 tok/s where 180 were streamed."""
    from harness.token_counts import count_without_usage

    full = rec(0, 1, 1, [100 + 10 * k for k in range(90)], 1001, 90)
    early = rec(1, 1, 1, [100 + 10 * k for k in range(90)], 1001, 90)
    early.output_tokens, early.finish_reason = None, "stop"
    early.expected_output_tokens = 128
    count_without_usage(early)  # a tokenizer pass follows (an engine that never sends usage)
    assert early.output_tokens is None
    count_without_usage(early, by_chunks=True)
    assert (early.output_tokens, early.output_tokens_source) == (90, "chunks")
    row = metrics.summarize([full, early])
    assert row["output_tokens"] == 180 and row["output_tok_s"] == pytest.approx(180 / 1.0)
    assert (row["missing_usage"], row["chunk_counted"]) == (0, 1)
    assert row["output_tokens_from"] == "chunks"  # `full` was built without a source
    (said,) = [f for f in flags.flags(row) if "no usage" in f]
    assert said.startswith("1/2 requests carried no usage (an endpoint that ignores stream_options")
    # a stream that ran to max_tokens is counted as max_tokens, not by its chunks
    length = rec(2, 0, 0, [100, 110], 200, 0)
    length.output_tokens, length.expected_output_tokens = None, 64
    count_without_usage(length, by_chunks=True)
    assert (length.output_tokens, length.output_tokens_source) == (64, "max_tokens")


def test_gaps_of_chunks_that_came_in_one_read_are_said_to_be_the_delivery() -> None:
    """At saturation most chunks arrived several to a read and ITL p50 read 0.0 ms with nothing saying why."""
    burst = rec(0, 0, 100, [150, 150, 150, 160, 160], 170, 5)  # gaps 0, 0, 10, 0 ms
    even = rec(1, 0, 100, [150, 160, 170, 180, 190], 200, 5)  # gaps 10 ms each
    row = metrics.summarize([burst, even])
    assert row["itl_zero_frac"] == pytest.approx(3 / 8)
    assert row["itl_s_p50"] == pytest.approx(0.010)
    assert row["itl_s_mean"] == pytest.approx(0.050 / 8)  # the zero gaps are gaps too
    (said,) = [f for f in flags.flags(row) if "in one read" in f]
    assert said.startswith("38% of the gaps between content chunks were 0 (chunks that arrived in one read)")
    assert metrics.summarize([even])["itl_zero_frac"] == 0.0
    assert not [f for f in flags.flags(metrics.summarize([even])) if "in one read" in f]
    assert math.isnan(metrics.summarize([rec(2, 0, 100, [150], 150, 1)])["itl_zero_frac"])  # no gaps
    whole = rec(4, 0, 100, [150, 150, 150], 150, 3)  # one stream in one read: said apart, not a zero gap
    assert math.isnan(metrics.summarize([whole])["itl_zero_frac"])
    # one zero gap in 10 is at the limit, not over it
    tenth = rec(3, 0, 100, [150, 150, *range(160, 250, 10)], 250, 11)
    assert metrics.summarize([tenth])["itl_zero_frac"] == pytest.approx(0.1)
    assert not [f for f in flags.flags(metrics.summarize([tenth])) if "in one read" in f]
