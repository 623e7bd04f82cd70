"""Plot selection of the HTML report: open-loop points and energy columns (GPU runs carry them).

CPU runs, which have neither, are covered end to end in tests/integration/test_report_html.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.report_html import make_plots


def _points(energy: bool) -> pd.DataFrame:
    rows = []
    for cfg in ("h100-sxm | vllm", "a100-80gb-sxm | vllm"):
        for rate in (1.0, 2.0, 4.0):
            row = {"config": cfg, "device": cfg.split(" ")[0], "concurrency": math.nan, "rate_rps": rate}
            row.update(
                output_tok_s=100 * rate, ttft_s_p50=0.1, ttft_s_p99=0.3, tpot_s_p50=0.02, tpot_s_p99=0.04
            )
            row["usd_per_1m_tokens"] = 3.0 / rate
            row["energy_j_per_output_token"] = 0.5 if energy else math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def test_open_loop_points_plot_against_rate_and_energy_when_present(tmp_path: Path) -> None:
    plots, notes = make_plots(_points(energy=True), tmp_path)
    assert [p.title for p in plots] == [
        "Output throughput vs load (open loop)",
        "TTFT vs throughput",
        "TPOT vs throughput",
        "Energy per output token (open loop)",
        "Cost per 1M output tokens (open loop)",
    ]
    assert notes == []
    assert all(p.path.is_file() and p.path.stat().st_size > 5000 for p in plots)


def test_empty_energy_column_is_skipped_with_a_note(tmp_path: Path) -> None:
    plots, notes = make_plots(_points(energy=False), tmp_path)
    assert "Energy per output token (open loop)" not in [p.title for p in plots]
    assert notes == [
        "Energy per output token: not plotted, these runs have no energy telemetry "
        "(energy_j_per_output_token is absent or empty)."
    ]
