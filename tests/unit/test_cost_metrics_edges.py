"""Edges of the cost and metrics math: a rate below one token per second, the columns `harness cost RUN`
shows, and the offered rate and window of too few requests.

Each test pins a result that a one-token change in harness/cost.py or harness/metrics.py (> 0 for > 1,
== for !=, a column dropped) would alter; the comments give the arithmetic by hand.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness import metrics
from harness.cost import run_cost_frame, usd_per_million_tokens
from harness.records import RequestRecord

S = 1_000_000_000  # ns

COLUMNS = [
    "config",
    "model",
    "precision",
    "workload",
    "load",
    "output_tok_s",
    "devices",
    "usd_per_device_hour",
    "usd_per_1m_tokens",
]
ENERGY_COLUMNS = ["energy_usd_per_1m_tokens", "total_usd_per_1m_tokens"]


def _points(run_ids: list[str]) -> pd.DataFrame:
    """One point per run id: 2 H100s at 1000 output tok/s, 0.5 J per output token."""
    return pd.DataFrame(
        {
            "run_id": run_ids,
            "config": ["c"] * len(run_ids),
            "model": ["m"] * len(run_ids),
            "precision": ["bf16"] * len(run_ids),
            "workload": ["128/64"] * len(run_ids),
            "load": ["c=1"] * len(run_ids),
            "device": ["h100-sxm"] * len(run_ids),
            "devices": [2] * len(run_ids),
            "output_tok_s": [1000.0] * len(run_ids),
            "energy_j_per_output_token": [0.5] * len(run_ids),
        }
    )


def test_a_rate_below_one_token_per_second_is_still_priced() -> None:
    # 3.6 $/h / (0.5 tok/s x 3600 s/h) x 1e6 = 3.6 / 1800 x 1e6 = 2000 $
    assert usd_per_million_tokens(3.6, 0.5) == pytest.approx(2000.0, rel=1e-12)


def test_run_cost_frame_of_one_run_prices_rent_and_energy_without_a_run_column() -> None:
    # rent: 3.6 $/h x 2 devices / (1000 tok/s x 3600) x 1e6 = 2.0 $;
    # energy: 0.5 J x 0.2 $/kWh / 3.6e6 J/kWh x 1e6 = 0.0277778 $; total 2.0277778 $
    got = run_cost_frame(_points(["r1"]), {"h100-sxm": 3.6}, usd_per_kwh=0.2)
    assert list(got.columns) == COLUMNS + ENERGY_COLUMNS
    row = got.iloc[0]
    assert row["usd_per_device_hour"] == 3.6
    assert row["usd_per_1m_tokens"] == pytest.approx(2.0, rel=1e-12)
    assert row["energy_usd_per_1m_tokens"] == pytest.approx(0.1 / 3.6, rel=1e-12)
    assert row["total_usd_per_1m_tokens"] == pytest.approx(2.0 + 0.1 / 3.6, rel=1e-12)


def test_run_cost_frame_of_two_runs_names_the_run() -> None:
    got = run_cost_frame(_points(["r1", "r2"]), {"h100-sxm": 3.6}, usd_per_kwh=0.2)
    assert list(got.columns) == ["run_id", *COLUMNS, *ENERGY_COLUMNS]
    assert list(got["run_id"]) == ["r1", "r2"]


def test_run_cost_frame_without_an_electricity_price_has_no_energy_columns() -> None:
    got = run_cost_frame(_points(["r1"]), {"h100-sxm": 3.6})
    assert list(got.columns) == COLUMNS
    assert got.iloc[0]["usd_per_1m_tokens"] == pytest.approx(2.0, rel=1e-12)


def test_offered_rate_of_two_requests_half_a_second_apart() -> None:
    # (2 - 1) requests / (1.5 - 1.0) s = 2.0 req/s
    recs = [RequestRecord(0, "p", S), RequestRecord(1, "p", 3 * S // 2)]
    assert metrics.offered_req_s(recs) == 2.0


def test_offered_rate_is_undefined_without_a_span() -> None:
    # both scheduled at 1.0 s: a zero span; no records: nothing offered
    assert math.isnan(metrics.offered_req_s([RequestRecord(0, "p", S), RequestRecord(1, "p", S)]))
    assert math.isnan(metrics.offered_req_s([]))


def test_window_of_no_requests_is_zero() -> None:
    assert metrics.window_s([]) == 0.0
    assert metrics.summarize([])["window_s"] == 0.0
