"""Goodput, send lag and token cross-checks from hand-built records (values computed by hand)."""

from __future__ import annotations

import pytest

from harness import metrics
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
        "length",
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
    c.expected_output_tokens = 64  # asked 64, got 50: short
    c.prompt_tokens = 11  # planned 10
    row = metrics.summarize([a, b, c])
    assert row["output_tokens"] == 250 and row["output_chunks"] == 98 + 97 + 50
    assert row["chunk_token_mismatch"] == 1
    assert row["text_token_mismatch"] == 1
    assert row["output_text_tokens"] is None  # c has no text count: a partial sum would mislead
    assert row["short_outputs"] == 1 and row["prompt_token_mismatch"] == 1
    text = " | ".join(metrics.flags(row))
    assert "fewer tokens than asked" in text and "prompt tokens differ" in text
