"""Goodput, send lag and token cross-checks from hand-built records (values computed by hand)."""

from __future__ import annotations

import math

import pytest

from harness import flags, metrics
from harness.load.search import slo_met
from harness.records import RequestRecord

MS = 1_000_000
T0 = 1000  # ms: stamps are perf_counter_ns readings, never 0


def rec(
    i: int, sched: int, sent: int, first: int, done: int, out: int, chunks: int | None = None
) -> RequestRecord:
    n = out if chunks is None else chunks
    step = (done - first) // max(n - 1, 1)
    return RequestRecord(
        i,
        "p",
        (T0 + sched) * MS,
        (T0 + sent) * MS,
        (T0 + first) * MS,
        (T0 + done) * MS,
        [(T0 + first + k * step) * MS for k in range(n)],
        10,
        out,
        out,
        10,
        finish_reason="length",
    )


def test_goodput_counts_requests_meeting_every_slo() -> None:
    # SLOs: TTFT <= 100 ms, TPOT <= 20 ms (open loop: from the scheduled time)
    rs = [
        rec(0, 0, 0, 50, 250, 11),  # ttft 50, tpot (250-50)/10 = 20 -> meets both
        rec(1, 0, 40, 120, 220, 11),  # ttft from scheduled 0: 120 > 100 -> fails (from send: 80)
        rec(2, 100, 100, 150, 550, 11),  # tpot (550-150)/10 = 40 > 20 -> fails
        rec(3, 200, 200, 260, 1000, 41),  # ttft 60, tpot 740/40 = 18.5 -> meets
    ]
    row = metrics.summarize(rs, open_loop=True, slo_ttft_s=0.1, slo_tpot_s=0.02)
    assert row["window_s"] == pytest.approx(1.0)  # last done 1000 - first send 0
    assert row["goodput_req_s"] == pytest.approx(2.0)  # 2 good / 1 s
    assert row["goodput_tok_s"] == pytest.approx(52.0)  # (11 + 41) / 1 s
    assert row["slo_attainment"] == pytest.approx(0.5)
    assert slo_met(row, 0.5) and not slo_met(row, 0.51)
    # closed loop measures TTFT from the send: request 1 then meets its TTFT (80 ms)
    closed = metrics.summarize(rs, open_loop=False, slo_ttft_s=0.1, slo_tpot_s=0.02)
    assert closed["goodput_req_s"] == pytest.approx(3.0)


def test_send_lag_percentiles() -> None:
    # lags 0, 1, 2, 10 ms: p50 = 1.5 ms, p99 = 2 + 0.97 * 8 = 9.76 ms (linear interpolation)
    rs = [
        rec(i, 100 * i, 100 * i + lag, 100 * i + 50, 100 * i + 90, 5) for i, lag in enumerate((0, 1, 2, 10))
    ]
    row = metrics.summarize(rs, open_loop=True)
    assert metrics.send_lag_s(rs[3]) == pytest.approx(0.010)
    assert row["send_lag_s_p50"] == pytest.approx(0.0015)
    assert row["send_lag_s_p99"] == pytest.approx(0.00976)


def test_token_cross_checks_flag_more_than_2_percent() -> None:
    a = rec(0, 0, 0, 10, 1010, 100, chunks=98)  # chunks off by 2 %: not flagged
    b = rec(1, 0, 0, 10, 1010, 100, chunks=97)  # 3 %: flagged
    a.output_text_tokens, b.output_text_tokens = 103, 100  # text 3 % off on a, exact on b
    c = rec(2, 0, 0, 10, 510, 50)
    c.expected_output_tokens, c.finish_reason = 64, "stop"  # asked 64, got 50 and an end of sequence
    c.prompt_tokens = 11  # planned 10
    row = metrics.summarize([a, b, c])
    assert row["output_tokens"] == 250 and row["output_chunks"] == 98 + 97 + 50
    assert row["chunk_token_mismatch"] == 1
    assert row["text_token_mismatch"] == 1
    assert row["output_text_tokens"] is None  # c has no text count: a partial sum would mislead
    assert row["short_outputs"] == 1 and row["prompt_token_mismatch"] == 1
    text = " | ".join(flags.flags(row))
    assert "fewer tokens than asked" in text and "prompt tokens differ" in text


def test_server_comparison_means_and_counters() -> None:
    from harness.flags import flags
    from harness.server_view import server_comparison

    row = {
        # client side: 10 requests, 320 tokens, TTFT mean 18 ms, ITL mean 6.3 ms
        "ttft_s_mean": 0.018,
        "itl_s_mean": 0.0063,
        "output_tokens": 320,
        "input_tokens": 640,
        "ok": 10,
        # vLLM histograms over the window: TTFT sum 0.15 s over 10 -> 15 ms; ITL 1.953 s over 310 -> 6.3 ms
        "server_vllm_time_to_first_token_seconds_sum_delta": 0.15,
        "server_vllm_time_to_first_token_seconds_count_delta": 10.0,
        "server_vllm_inter_token_latency_seconds_sum_delta": 1.953,
        "server_vllm_inter_token_latency_seconds_count_delta": 310.0,
        "server_vllm_generation_tokens_total_delta": 320.0,
        "server_vllm_prompt_tokens_total_delta": 650.0,
    }
    got = server_comparison(row)
    assert got["server_ttft_s_mean"] == pytest.approx(0.015)
    assert got["server_ttft_s_rel_diff"] == pytest.approx(0.2)  # (18 - 15) / 15
    assert got["server_itl_s_mean"] == pytest.approx(0.0063)
    assert got["server_itl_s_rel_diff"] == pytest.approx(0.0, abs=1e-12)
    assert got["server_output_tokens"] == 320 and got["server_output_tokens_diff"] == 0
    assert got["server_input_tokens"] == 650 and got["server_input_tokens_diff"] == -10
    assert "server_tpot_s_mean" not in got  # not exported in this row
    msgs = flags({**row, **got})
    # 3 ms more at the client (+20 %): the HTTP request and the first event, what any loopback costs
    assert not any("TTFT differs" in m or "ITL" in m for m in msgs)
    slow = {**row, "ttft_s_mean": 0.024}  # 9 ms more: said
    msgs = flags({**slow, **server_comparison(slow)})
    assert (
        "client mean TTFT differs from the engine's own by +60.0% (client 24.00 ms, engine 15.00 ms)" in msgs
    )
    # ITL: 1.5 ms more than 6.3 ms (+24 %) is said; 0.5 ms (+8 %) is not
    # a client ITL mean of 0 (every stream read in one piece) is 0.4 ms from the engine's: not said
    zero = {"ok": 4, "itl_s_mean": 0.0, "server_itl_s_mean": 0.0004, "server_itl_s_rel_diff": -1.0}
    assert not any("ITL differs" in m for m in flags(zero))
    for itl_s, said in ((0.0078, True), (0.0068, False)):
        r = {**row, "itl_s_mean": itl_s}
        assert any("ITL differs" in m for m in flags({**r, **server_comparison(r)})) is said
    assert "input tokens: client counted -10 vs the engine's counter" in msgs
    # cooldown requests finished in the window: the engine's means include them, so they are shown, not judged
    shared = server_comparison(row, unmeasured_in_window=3)
    assert shared["server_ttft_s_mean"] == pytest.approx(0.015) and "server_ttft_s_rel_diff" not in shared
    assert not any("TTFT differs" in m for m in flags({**row, **shared}))
    # vLLM 0.10 and older export the same inter-token histogram as time_per_output_token_seconds
    old = {k.replace("inter_token_latency", "time_per_output_token"): v for k, v in row.items()}
    assert server_comparison(old)["server_itl_s_mean"] == pytest.approx(0.0063)
    # 0.11 and 0.12 export both, the same observations: the new name is read
    both = {**row, "server_vllm_time_per_output_token_seconds_sum_delta": 9.0}
    both["server_vllm_time_per_output_token_seconds_count_delta"] = 10.0
    assert server_comparison(both)["server_itl_s_mean"] == pytest.approx(0.0063)


def test_server_counters_of_llamacpp_and_windows_shared_with_unmeasured_requests() -> None:
    from harness.flags import flags
    from harness.server_view import server_comparison

    row = {
        "ok": 4,
        "output_tokens": 96,
        "input_tokens": 128,
        "server_llamacpp_tokens_predicted_total_delta": 100.0,
        "output_tokens_from": "usage",
    }
    got = server_comparison(row)
    assert got == {"server_output_tokens": 100, "server_output_tokens_diff": -4}  # llama.cpp's counter
    (said,) = [m for m in flags({**row, **got}) if "engine's counter" in m]
    # more generated than received: another client's requests at the engine meanwhile, said as such
    assert said.startswith("output tokens: client counted -4 vs the engine's counter: the engine generated")
    assert "another client uses it at the same time" in said
    # a count the client made itself (one token per chunk) may be short by itself: no other client said
    chunked = {**row, "output_tokens_from": "chunks,usage"}
    (said,) = [m for m in flags({**chunked, **got}) if "engine's counter" in m]
    assert said == "output tokens: client counted -4 vs the engine's counter"
    fewer = {**row, "server_llamacpp_tokens_predicted_total_delta": 90.0}
    (said,) = [m for m in flags({**fewer, **server_comparison(fewer)}) if "engine's counter" in m]
    assert said == "output tokens: client counted +6 vs the engine's counter"
    # cooldown requests were at the engine in the window: it counted their tokens too, no diff to judge
    shared = server_comparison(row, unmeasured_in_window=2)
    assert shared == {"server_output_tokens": 100}
    assert not any("engine's counter" in m for m in flags({**row, **shared}))


def test_unmeasured_requests_in_the_window_are_those_at_the_engine_during_it() -> None:
    from harness.load.driver import PointOutcome
    from harness.point import _unmeasured_in

    def at(i: int, sent: int, done: int | None, warmup: bool = True) -> RequestRecord:
        r = RequestRecord(i, "p", 0, sent, None, done, [])  # sent 0: never sent, as records have it
        r.warmup = warmup
        return r

    recs = [
        at(0, 100, 900),  # warmup that ended before the window: not counted
        at(1, 900, 1100),  # open-loop warmup still running when it opened
        at(2, 1500, None),  # cooldown cancelled in flight (no done stamp)
        at(3, 0, None),  # cooldown never sent
        at(6, 0, 1500),  # failed before it was sent (connect error), stamped done in the window
        at(4, 2500, 2600),  # sent after the window closed
        at(5, 1000, 1200, warmup=False),  # measured
    ]
    assert _unmeasured_in(PointOutcome(recs, started_ns=1000, ended_ns=2000)) == 2


def test_points_on_a_vm_whose_hypervisor_took_cpu_time_are_warned_about() -> None:
    from harness.flags import flags

    assert any("hypervisor took 41 %" in m for m in flags({"ok": 8, "host_cpu_steal_pct_mean": 41.2}))
    assert not any("hypervisor" in m for m in flags({"ok": 8, "host_cpu_steal_pct_mean": 4.9}))
    assert not any("hypervisor" in m for m in flags({"ok": 8}))  # not measured (not Linux)


def test_a_point_whose_host_other_processes_kept_busy_is_flagged() -> None:
    """A 2-core host 95 % busy (1.9 cores) over a 10 s window, the engine 75 % of a core, the client 0.5 s:
    other processes used 1.9 - 0.75 - 0.05 = 1.1 cores (the quickstart at a sixth of its usual speed)."""
    from harness.flags import flags, other_busy_cores

    row = {
        "ok": 8,
        "host_cpu_pct_mean": 95.0,
        "host_busy_cores_mean": 1.9,
        "engine_cpu_pct_mean": 75.0,
        "client_cpu_s": 0.5,
        "window_s": 10.0,
    }
    assert other_busy_cores(row) == pytest.approx(1.1)
    assert any(
        "CPUs were 95 % busy during the point, about 1.1 cores of it other processes" in m for m in flags(row)
    )
    # a large host with idle cores: what others run costs the engine nothing
    assert not any("other processes" in m for m in flags({**row, "host_cpu_pct_mean": 40.0}))
    # the engine itself on both cores: nothing else ran
    alone = {**row, "host_busy_cores_mean": 1.99, "engine_cpu_pct_mean": 194.0}
    assert other_busy_cores(alone) == pytest.approx(0.0)
    assert not any("other processes" in m for m in flags(alone))
    assert not any("other processes" in m for m in flags({**row, "host_busy_cores_mean": 1.25}))  # 0.45
    assert other_busy_cores({**row, "engine_cpu_pct_mean": None}) is None  # an external engine


def test_time_spent_connecting_is_not_send_lag_and_is_said_apart() -> None:
    """A request 12 ms late of which 10 ms went to opening its connection was 2 ms late by the client's
    own doing; the point counts the new connections and says the slowest one where it is over 5 ms."""
    rs = [rec(i, 100 * i, 100 * i + 12, 100 * i + 50, 100 * i + 90, 5) for i in range(3)]
    rs[0].connect_s, rs[1].connect_s = 0.010, 0.001
    assert metrics.send_lag_s(rs[0]) == pytest.approx(0.002)
    assert metrics.send_lag_s(rs[2]) == pytest.approx(0.012)
    row = metrics.summarize(rs, open_loop=True)
    assert row["new_connections"] == 2 and row["connect_s_max"] == pytest.approx(0.010)
    said = [f for f in flags.flags({**row, "mode": "open"}) if "new connection" in f]
    assert said == [
        "2 request(s) opened a new connection to the server first, taking up to 10.0 ms (not counted as send "
        "lag): their TTFT and E2E, counted from the schedule, include it"
    ]
    rs[0].connect_s = 0.005  # not over the 5 ms the client's own lateness is allowed either
    row = metrics.summarize(rs, open_loop=True)
    assert not [f for f in flags.flags({**row, "mode": "open"}) if "new connection" in f]
    none_new = metrics.summarize(rs[2:], open_loop=True)  # on open connections only: nothing to say
    assert none_new["new_connections"] == 0 and math.isnan(none_new["connect_s_max"])
    closed = metrics.summarize(rs[:1], open_loop=False)
    closed["connect_s_max"] = 0.02
    assert "counted from the send, leave it out" in " ".join(flags.flags({**closed, "mode": "closed"}))
