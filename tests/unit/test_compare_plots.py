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


def test_one_line_per_config_model_and_precision() -> None:
    from harness.report_html import series_labels

    df = pd.DataFrame(
        {
            "config": ["h100-sxm | vllm"] * 4,
            "model": ["llama-3.1-8b"] * 4,
            "precision": ["bf16", "bf16", "fp8", "fp8"],
        }
    )
    # a bf16 and an fp8 run of the same GPU and engine: two lines, not one zigzagging between them
    assert list(series_labels(df)) == ["h100-sxm | vllm | bf16"] * 2 + ["h100-sxm | vllm | fp8"] * 2
    assert list(series_labels(df[df["precision"] == "fp8"])) == ["h100-sxm | vllm"] * 2
    # and two workloads of one configuration are two lines too
    two = df.assign(precision="bf16", workload=["128/64", "128/64", "1024/256", "1024/256"])
    assert list(series_labels(two)) == ["h100-sxm | vllm | 128/64"] * 2 + ["h100-sxm | vllm | 1024/256"] * 2


def test_reruns_are_plotted_once_with_a_note(tmp_path: Path) -> None:
    pts = _points(energy=False)
    pts["model"], pts["precision"], pts["load"] = "m", "bf16", [f"r{r:g}" for r in pts["rate_rps"]]
    pts["workload"] = "128/64"
    pts["point_id"], pts["run_id"], pts["started_utc"] = "v0-r1", "old", "2026-11-01"
    newer = pts[pts["config"] == "h100-sxm | vllm"].assign(run_id="new", started_utc="2026-11-02")
    plots, notes = make_plots(pd.concat([pts, newer]), tmp_path)
    assert len([n for n in notes if "superseded by a newer run of h100-sxm | vllm" in n]) == 3
    assert plots


def test_the_html_points_table_says_which_run_each_row_is_from(tmp_path) -> None:
    """Three reruns of one configuration: the plots take the newest, the table lists all three, which
    without a run column read as three identical rows with different numbers."""
    from pathlib import Path

    from harness.report_html import write_html
    from harness.runinfo import points_frame

    runs = sorted((Path(__file__).resolve().parents[2] / "results/evidence/llama-bench-cpu").glob("2026*"))
    assert len(runs) == 3
    out, _, notes = write_html(runs, points_frame(runs), tmp_path / "r.html")
    text = out.read_text()
    assert "Points of every run (the plots take the newest of reruns)" in text
    assert all(f"<td>{r.name}</td>" in text for r in runs)
    assert sum("superseded" in n for n in notes) == 4  # two older runs x two loads
    # or the median over the reruns, as compare --reruns median gives it
    out, _, notes = write_html(runs, points_frame(runs), tmp_path / "m.html", reruns="median")
    assert "the plots take the median over reruns" in out.read_text()
    assert (
        sum(n.startswith("cpu | llamacpp/llama-server at c") and "median of 3 runs" in n for n in notes) == 2
    )
