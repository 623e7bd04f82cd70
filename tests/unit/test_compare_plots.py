"""Plot selection of the HTML report: open-loop points and energy columns (GPU runs carry them).

CPU runs, which have neither, are covered end to end in tests/integration/test_report_html.py."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

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


def test_the_html_report_says_what_failed_and_which_telemetry_is_absent(tmp_path) -> None:
    """A point with failed requests was plotted without a word in the HTML (report.md said it); NVML that
    never loaded was listed as telemetry; a run with nothing measured had its cost plot 'not plotted, no
    price' beside a table of the price used."""
    import json
    import shutil
    from pathlib import Path

    from harness.report_html import write_html
    from harness.runinfo import points_frame

    src = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    run = tmp_path / src.name
    shutil.copytree(src, run)
    pts = pd.read_parquet(run / "points.parquet")
    pts.loc[0, ["errors", "ok", "error_kinds"]] = [4, 4, "http:4"]
    pts.to_parquet(run / "points.parquet")
    (run / "points.csv").unlink()
    m = json.loads((run / "manifest.json").read_text())
    m.update(status="partial", status_message="point v0-c4: engine process exited")
    m["telemetry"]["engine_metrics"]["error"] = "start: RuntimeError: scrape refused"  # failed to start
    # recorded every point, then failed once: still recorded, its error said apart
    m["telemetry"]["cpu"]["error"] = "end_window: OSError: gone"
    m["scenario"]["description"] = "Gemma <b>270M</b> & llama.cpp"  # said, as text
    (run / "manifest.json").write_text(json.dumps(m))
    out, _, notes = write_html([run], points_frame([run]), tmp_path / "r.html", {"cpu": 0.1})
    text = out.read_text()
    assert "<h2>Notes: 20261125T114708Z-quickstart-cpu</h2>" in text
    assert (
        "point v0-c1: 4 of 8 measured requests failed (http:4); its latencies cover the others only" in text
    )
    assert "<td>status</td><td>partial: point v0-c4: engine process exited</td>" in text
    assert "<td>telemetry</td><td>cpu</td>" in text
    assert "<td>description</td><td>Gemma &lt;b&gt;270M&lt;/b&gt; &amp; llama.cpp</td>" in text
    assert "<td>telemetry errors</td><td>cpu: end_window: OSError: gone</td>" in text
    assert "engine_metrics: start: RuntimeError: scrape refused" in text
    assert "<td>telemetry absent</td><td>cpu.rapl: /sys/class/powercap does not exist" in text
    assert "nvml: nvmlInit: NVML Shared Library Not Found" in text
    # nothing measured: the cost plot is left out for that, not for a price
    empty = points_frame([run]).assign(output_tok_s=math.nan)
    _, _, notes = write_html([run], empty, tmp_path / "e.html", {"cpu": 0.1})
    assert "Cost per 1M output tokens: not plotted, no priced point measured output tokens/s." in notes
    _, _, notes = write_html([run], points_frame([run]), tmp_path / "n.html", {})
    assert any(n.startswith("Cost per 1M output tokens: not plotted, no price for ") for n in notes)


def test_values_spread_over_orders_of_magnitude_get_log_axes_and_load_labels(tmp_path: Path) -> None:
    """A CPU run at 2-60 tok/s beside a GPU run at 650: on linear axes the CPU lines sat on zero; and a
    marker of TTFT against throughput did not say which load it was."""
    from harness.report_html import load_tag, wide

    assert wide([1.5, 64.0, 658.0]) and not wide([100.0, 400.0]) and not wide([0.0, 5.0])
    assert not wide([0.0, 1.5, 658.0])  # a zero would fall off a log axis: linear
    assert not wide([math.nan, 3.0])  # one value: nothing to spread
    assert load_tag({"concurrency": 4.0, "rate_rps": math.nan}) == "c4"
    assert load_tag({"concurrency": math.nan, "rate_rps": 2.5}) == "r2.5"
    pts = _points(energy=False)
    pts.loc[pts["config"].str.startswith("a100"), ["output_tok_s", "ttft_s_p50"]] = [2.0, 9.0]
    plots, _ = make_plots(pts, tmp_path)
    by_title = {p.title: p.caption for p in plots}
    assert by_title["Output throughput vs load (open loop)"].endswith("Log y axis.")
    assert by_title["TTFT vs throughput"].endswith("Log x and y axis.")
    assert "labelled with its load" in by_title["TTFT vs throughput"]
    assert not by_title["Cost per 1M output tokens (open loop)"].endswith("axis.")  # 0.75-3 $: linear


def test_the_html_points_table_names_model_and_workload_where_they_differ(tmp_path: Path) -> None:
    from harness.report_html import write_html
    from harness.runinfo import points_frame

    ev = Path(__file__).resolve().parents[2] / "results/evidence"
    runs = [ev / "20261125T114708Z-quickstart-cpu", ev / "20261201T120142Z-vllm-tiny-cpu"]
    out, _, _ = write_html(runs, points_frame(runs), tmp_path / "r.html")
    text = out.read_text()
    assert "<th>model</th>" in text and "<th>workload (in/out)</th>" in text
    assert "<td>128/64</td>" in text and "<td>64/32</td>" in text
    out, _, _ = write_html(runs[:1], points_frame(runs[:1]), tmp_path / "one.html")
    assert "<th>model</th>" not in out.read_text()  # one model, one workload: the header says it


def test_labels_are_drawn_as_written(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    """A served model's name is free text: `$...$` had been read as maths markup (an unknown command
    failed the whole report), and a character the font lacks printed a warning per label."""
    import matplotlib.pyplot as plt

    pts = _points(energy=False)
    pts["config"] = pts["config"].replace(
        {
            "h100-sxm | vllm": "bad $\\undefinedcmd{x}$ model",
            "a100-80gb-sxm | vllm": "price $5 and $10 模型 🚀",
        }
    )
    seen: list[str] = []
    close = plt.close

    def legend_texts(fig: object = None) -> None:  # read each figure's legend before it is closed
        for ax in getattr(fig, "axes", []):
            if (leg := ax.get_legend()) is not None:
                seen.extend(t.get_text() for t in leg.get_texts())
        close(fig)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "close", legend_texts)
        plots, _ = make_plots(pts, tmp_path)
    assert plots and all(p.path.is_file() for p in plots)
    assert "bad $\\undefinedcmd{x}$ model" in seen and "price $5 and $10 模型 🚀" in seen
    assert not [w for w in recwarn if "missing from font" in str(w.message)]
    assert plt.rcParams["text.parse_math"]  # the setting is the plots' own, not left on the process


def test_log_axes_are_labelled_with_plain_numbers(tmp_path: Path) -> None:
    """With labels drawn as written, matplotlib's log tick labels printed as `$\\mathdefault{10^{2}}$`:
    no value could be read off a log axis."""
    import matplotlib.pyplot as plt

    pts = _points(energy=False)
    pts.loc[pts["config"].str.startswith("a100"), ["output_tok_s", "ttft_s_p50"]] = [2.0, 9.0]
    ticks: dict[str, list[str]] = {}
    close = plt.close

    def tick_texts(fig: object = None) -> None:  # each log axis's labels, drawn, before the figure closes
        for ax in getattr(fig, "axes", []):
            fig.canvas.draw()  # type: ignore[attr-defined]
            for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
                if axis.get_scale() == "log":
                    labels = [t.get_text() for t in axis.get_ticklabels(which="both")]
                    ticks[f"{ax.get_title()} {name}"] = [t for t in labels if t]
        close(fig)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt, "close", tick_texts)
        make_plots(pts, tmp_path)
    assert {"TTFT vs throughput x", "TTFT vs throughput y", "Output throughput vs load (open loop) y"} <= set(
        ticks
    )
    for where, labels in ticks.items():
        assert labels and not [t for t in labels if "$" in t or "mathdefault" in t], (where, labels)
    assert "100" in ticks["TTFT vs throughput x"]
