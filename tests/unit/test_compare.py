"""The comparison pivot, speedups, de-duplication and baseline choice, on literal point rows.

(The same code over real run directories is exercised in tests/integration/test_report_html.py.)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from harness.compare import CompareError, Comparison, add_speedup, choose_baseline, dedupe, pivot
from harness.compare_output import flat, markdown, print_comparison


def _rows() -> pd.DataFrame:
    base = {"model": "llama-3.1-70b", "precision": "fp8", "workload": "1024/256"}
    rows = [
        # config A (baseline) and B at two loads; loads out of numeric order on purpose
        {
            **base,
            "load": "c16",
            "config": "a100-80gb-sxm | vllm",
            "device": "a100-80gb-sxm",
            "output_tok_s": 200.0,
        },
        {
            **base,
            "load": "c2",
            "config": "a100-80gb-sxm | vllm",
            "device": "a100-80gb-sxm",
            "output_tok_s": 50.0,
        },
        {**base, "load": "c16", "config": "h100-sxm | vllm", "device": "h100-sxm", "output_tok_s": 500.0},
        {**base, "load": "c2", "config": "h100-sxm | vllm", "device": "h100-sxm", "output_tok_s": 80.0},
        # B only at a third load: no baseline there
        {**base, "load": "c64", "config": "h100-sxm | vllm", "device": "h100-sxm", "output_tok_s": 900.0},
    ]
    df = pd.DataFrame(rows)
    df["ttft_s_p50"] = [0.5, 0.1, 0.2, 0.05, 0.9]
    return df


def test_speedup_is_tok_s_over_baseline_on_the_same_row() -> None:
    df = add_speedup(_rows(), "a100-80gb-sxm | vllm")
    got = dict(zip(zip(df["config"], df["load"], strict=True), df["speedup"], strict=True))
    assert got[("a100-80gb-sxm | vllm", "c2")] == 1.0
    assert got[("h100-sxm | vllm", "c16")] == 2.5  # 500 / 200
    assert got[("h100-sxm | vllm", "c2")] == 1.6  # 80 / 50
    assert math.isnan(got[("h100-sxm | vllm", "c64")])  # no baseline measured at c64


def test_rows_at_an_arrival_rate_get_no_speedup_and_a_note_says_why() -> None:
    from harness.compare_notes import rate_rows_note

    # two engines that both kept up with 2 req/s: the slower one's window ends later, so its tok/s is
    # lower, but that is its latency, not its capacity
    rate = _rows().iloc[[0, 2]].assign(load="r2", output_tok_s=[93.2, 105.2])
    df = add_speedup(pd.concat([_rows(), rate], ignore_index=True), "a100-80gb-sxm | vllm")
    got = dict(zip(zip(df["config"], df["load"], strict=True), df["speedup"], strict=True))
    assert math.isnan(got[("h100-sxm | vllm", "r2")]) and math.isnan(got[("a100-80gb-sxm | vllm", "r2")])
    assert got[("h100-sxm | vllm", "c16")] == 2.5  # concurrency rows keep theirs
    (note,) = rate_rows_note(df, "a100-80gb-sxm | vllm")
    assert note.startswith("rows at an arrival rate (r...) have no speedup") and "--find-max-goodput" in note
    assert rate_rows_note(df, None) == [] and rate_rows_note(_rows(), "a100-80gb-sxm | vllm") == []


def test_speedup_over_another_device_count_is_also_given_per_device() -> None:
    from harness.compare_notes import device_count_note

    df = _rows().assign(devices=[1, 1, 8, 8, 8])
    df["config"] = df["config"].str.replace("h100-sxm", "8x h100-sxm")
    out = add_speedup(df, "a100-80gb-sxm | vllm")
    per = dict(zip(zip(out["config"], out["load"], strict=True), out["speedup_per_device"], strict=True))
    assert per[("8x h100-sxm | vllm", "c16")] == pytest.approx(2.5 / 8)  # 500 / 200 over 8 GPUs against 1
    assert math.isnan(per[("a100-80gb-sxm | vllm", "c16")])  # the same count: nothing to add
    assert device_count_note(out, "a100-80gb-sxm | vllm") == [
        "speedup sets 8x h100-sxm | vllm (8 devices) against the baseline's 1 device(s); "
        "see 'speedup per device' for a device against a device"
    ]
    # a 2-device baseline against 8: speedup x 2 / 8
    two = add_speedup(df.assign(devices=[2, 2, 8, 8, 8]), "a100-80gb-sxm | vllm")
    per = dict(zip(zip(two["config"], two["load"], strict=True), two["speedup_per_device"], strict=True))
    assert per[("8x h100-sxm | vllm", "c2")] == pytest.approx(1.6 * 2 / 8)  # 80 / 50 = 1.6
    same = add_speedup(_rows().assign(devices=1), "a100-80gb-sxm | vllm")
    assert same["speedup_per_device"].isna().all() and device_count_note(same, "a100-80gb-sxm | vllm") == []


def test_pivot_rows_in_numeric_load_order_and_columns_per_config() -> None:
    wide = pivot(add_speedup(_rows(), "a100-80gb-sxm | vllm"))
    assert [k[3] for k in wide.index] == ["c2", "c16", "c64"]
    row = ("llama-3.1-70b", "fp8", "1024/256")
    assert wide.loc[(*row, "c16"), ("output_tok_s", "h100-sxm | vllm")] == 500.0
    assert wide.loc[(*row, "c2"), ("ttft_s_p50", "a100-80gb-sxm | vllm")] == 0.1
    assert math.isnan(wide.loc[(*row, "c64"), ("output_tok_s", "a100-80gb-sxm | vllm")])
    f = flat(wide)
    assert "output_tok_s [h100-sxm | vllm]" in f.columns and "speedup [h100-sxm | vllm]" in f.columns
    assert list(f["load"]) == ["c2", "c16", "c64"]
    assert f["speedup [h100-sxm | vllm]"].tolist()[:2] == [1.6, 2.5]
    # workloads by their numbers too: 64/16 before 512/32 before 1024/256, datasets after them
    more = pd.concat(
        [_rows()]
        + [_rows().iloc[:1].assign(workload=w) for w in ("512/32", "64/16", "dataset sharegpt.jsonl")]
    )
    assert list(dict.fromkeys(k[2] for k in pivot(more).index)) == [
        "64/16",
        "512/32",
        "1024/256",
        "dataset sharegpt.jsonl",
    ]


def test_markdown_has_one_table_per_metric_with_formatted_cells() -> None:
    pts = add_speedup(_rows(), "a100-80gb-sxm | vllm")
    pts["run_id"] = "r1"
    md = markdown(Comparison(pts, pivot(pts), "a100-80gb-sxm | vllm"))
    assert "## output tok/s" in md and "## speedup vs baseline" in md and "## TTFT p50 ms" in md
    assert "| llama-3.1-70b | fp8 | 1024/256 | c16 | 200.0 | 500.0 |" in md
    assert "| llama-3.1-70b | fp8 | 1024/256 | c16 | 1.00x | 2.50x |" in md
    assert "| llama-3.1-70b | fp8 | 1024/256 | c2 | 100.0 | 50.0 |" in md  # TTFT in ms
    assert "| llama-3.1-70b | fp8 | 1024/256 | c64 | - | 900.0 |" in md


def test_markdown_cells_show_free_text_literally_on_one_line() -> None:
    """A served model's name went into report.md and compare.md as it was: a line break split a table
    row, and `<i>` rendered as HTML (only `|` had been escaped)."""
    from harness.formatting import md_row, md_text

    assert md_text("org/模型 name|<i>x</i> 🚀") == "org/模型 name\\|\\<i\\>x\\</i\\> 🚀"
    assert md_text("line1\n| injected | row |\r\n# Heading\t`tick`") == (
        "line1 \\| injected \\| row \\|  # Heading \\`tick\\`"
    )
    # no code span or entity: each shows as written (`<N>` in a code span had read `&lt;N&gt;`)
    assert md_text("`--max-num-seqs <N>` &lt; C:\\m") == "\\`--max-num-seqs \\<N\\>\\` \\&lt; C:\\\\m"
    assert md_row(["a\nb", 1.5, None]) == "| a b | 1.5 | None |"
    assert md_text("a\u202eb\u200bc") == "a b c"  # format characters (right-to-left override, zero width)


def test_newest_run_wins_a_duplicate_cell() -> None:
    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = ["old", "old"], ["v0-c16", "v0-c2"], ["2026-01-01"] * 2
    newer = df.iloc[[0]].copy()
    newer["run_id"], newer["started_utc"], newer["output_tok_s"] = "new", "2026-02-01", 210.0
    kept, notes = dedupe(pd.concat([newer, df]))
    assert len(kept) == 2
    assert kept[kept["load"] == "c16"]["output_tok_s"].tolist() == [210.0]
    assert notes == [
        "old v0-c16: superseded by a newer run of a100-80gb-sxm | vllm at c16",
        "older runs of a cell are left out: --reruns median shows the median over all and how far apart they "
        "were",
    ]
    # a newer run whose every request failed (no tok/s) does not hide the measurement
    failed = newer.assign(run_id="bad", started_utc="2026-03-01", output_tok_s=math.nan)
    kept, notes = dedupe(pd.concat([newer, df, failed]))
    assert kept[kept["load"] == "c16"]["run_id"].tolist() == ["new"]
    said = "bad v0-c16: measured nothing; another run's point of a100-80gb-sxm | vllm at c16 is shown"
    assert said in notes


def test_reruns_can_be_shown_as_their_median_and_spread() -> None:
    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = ["r1", "r1"], ["v0-c16", "v0-c2"], ["2026-01-01"] * 2
    df["requests"], df["errors"] = 16, 0
    r2 = df.assign(run_id="r2", started_utc="2026-01-02", output_tok_s=[240.0, 55.0], ttft_s_p50=[0.7, 0.2])
    r2["errors"] = [3, 0]  # the run in the middle had failures at c16: said, and kept as the worst
    r3 = df.assign(run_id="r3", started_utc="2026-01-03", output_tok_s=[180.0, 50.0], ttft_s_p50=[0.4, 0.3])
    kept, notes = dedupe(pd.concat([r3, df, r2]), reruns="median")
    got = kept.set_index("load")
    # c16: 200, 240, 180 -> median 200, spread (240 - 180) / 200 = 30 %; TTFT 0.5, 0.7, 0.4 -> 0.5
    assert got.loc["c16", "output_tok_s"] == 200.0 and got.loc["c16", "ttft_s_p50"] == 0.5
    assert got.loc["c16", "output_tok_s_spread_pct"] == pytest.approx(30.0)
    assert got.loc["c2", "output_tok_s"] == 50.0 and got.loc["c2", "output_tok_s_spread_pct"] == 10.0
    assert (got["reruns"] == 3).all() and (got["run_id"] == "r1, r2, r3").all()
    assert got.loc["c16", "errors"] == 3 and got.loc["c2", "errors"] == 0
    assert notes == [
        "a100-80gb-sxm | vllm at c16: median of 3 runs (r1, r2, r3), output tok/s 180-240",
        "a100-80gb-sxm | vllm at c2: median of 3 runs (r1, r2, r3), output tok/s 50-55",
        "run r2 point v0-c16: 3 of 16 measured requests failed; its numbers cover the others only",
    ]
    # one run alone: itself, no spread
    alone, notes = dedupe(df, reruns="median")
    assert alone["output_tok_s"].tolist() == [200.0, 50.0] and alone["output_tok_s_spread_pct"].isna().all()
    assert notes == []
    # the default stays the newest run's point
    kept, _ = dedupe(pd.concat([r3, df, r2]))
    assert kept.set_index("load").loc["c16", "output_tok_s"] == 180.0


def test_runs_with_other_engine_settings_under_one_label_are_not_reruns() -> None:
    """cpu_offload_gb 70 and 40 in the base `engine:` block: the same label, two configurations."""
    from harness.runinfo import settings_of

    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = ["a", "a"], ["v0-c16", "v0-c2"], ["2026-01-01"] * 2
    df["settings"] = settings_of({"type": "vllm", "cpu_offload_gb": 70, "python": "/a"}, {"api": "chat"})
    other = df.assign(run_id="b", started_utc="2026-02-01", output_tok_s=[150.0, 20.0])
    other["settings"] = settings_of({"type": "vllm", "cpu_offload_gb": 40, "python": "/b"}, {"api": "chat"})
    kept, notes = dedupe(pd.concat([df, other]))
    assert len(kept) == 4  # nothing superseded
    assert sorted(set(kept["config"])) == [
        "a100-80gb-sxm | vllm [engine.cpu_offload_gb=40]",
        "a100-80gb-sxm | vllm [engine.cpu_offload_gb=70]",
    ]
    assert notes == ["a100-80gb-sxm | vllm: runs with other settings (engine.cpu_offload_gb) are shown apart"]
    # the same settings (the python path is not one): a rerun, the newer run wins
    again = df.assign(run_id="c", started_utc="2026-03-01", output_tok_s=[1.0, 2.0])
    again["settings"] = settings_of({"type": "vllm", "cpu_offload_gb": 70, "python": "/c"}, {"api": "chat"})
    kept, notes = dedupe(pd.concat([df, again]))
    assert len(kept) == 2 and set(kept["run_id"]) == {"c"} and len(notes) == 3  # 2 superseded, the hint
    # a field a later harness added (present in one run only) is no difference either
    later = df.assign(run_id="d", started_utc="2026-04-01")
    later["settings"] = settings_of({"type": "vllm", "cpu_offload_gb": 70, "new_knob": 1}, {"api": "chat"})
    kept, notes = dedupe(pd.concat([df, later]))
    assert set(kept["run_id"]) == {"d"} and all("superseded" in n for n in notes[:-1])
    # runs whose settings differ only where the rows do (here the workload): rows, not labels
    wl = df.assign(run_id="e", workload="4096/64")
    wl["settings"] = settings_of({"type": "vllm", "cpu_offload_gb": 70}, {"input_tokens": 4096})
    kept, notes = dedupe(pd.concat([df, wl]))
    assert set(kept["config"]) == {"a100-80gb-sxm | vllm"} and len(kept) == 4 and notes == []


def test_open_loop_runs_with_other_arrivals_or_a_cap_are_not_reruns() -> None:
    """At r40, a run with `max_concurrency: 2` queued requests on the client (TTFT 2 s) where one without
    it did not (TTFT 50 ms): their median was printed as a measurement neither run made."""
    from harness.runinfo import settings_of

    df = _rows().iloc[:1].copy()
    df["load"], df["run_id"], df["point_id"], df["started_utc"] = "r40", "a", "v0-r40", "2026-01-01"
    eng, wl = {"type": "vllm"}, {"api": "completion"}
    df["settings"] = settings_of(eng, wl, load={"mode": "open", "arrival": "constant"})
    capped = df.assign(run_id="b", started_utc="2026-02-01", output_tok_s=50.0)
    capped["settings"] = settings_of(
        eng, wl, load={"mode": "open", "arrival": "constant", "max_concurrency": 2}
    )
    kept, notes = dedupe(pd.concat([df, capped]))
    assert sorted(kept["config"]) == [
        "a100-80gb-sxm | vllm [load.max_concurrency=2]",
        "a100-80gb-sxm | vllm [load.max_concurrency=null]",
    ]
    assert notes == ["a100-80gb-sxm | vllm: runs with other settings (load.max_concurrency) are shown apart"]
    poisson = df.assign(run_id="c", started_utc="2026-03-01")
    poisson["settings"] = settings_of(eng, wl, load={"mode": "open"})  # poisson by default
    kept, _ = dedupe(pd.concat([df, poisson]))
    assert len(kept) == 2 and any("load.arrival=poisson" in c for c in kept["config"])
    # another seed is a rerun (the same offered load, another draw of it); closed loop has no shape
    again = df.assign(run_id="d", started_utc="2026-04-01")
    again["settings"] = settings_of(eng, wl, load={"mode": "open", "arrival": "constant", "seed": 7})
    kept, _ = dedupe(pd.concat([df, again]))
    assert list(kept["run_id"]) == ["d"]
    assert settings_of(eng, wl, load={"mode": "closed", "max_concurrency": 3}) == settings_of(eng, wl)


def test_runs_of_different_workloads_are_different_rows() -> None:
    # 128/16 and 128/64 at the same load are two measurements, not a rerun: both kept, on two rows
    df = _rows().iloc[:1].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "a", "v0-c16", "2026-01-01"
    other = df.assign(run_id="b", started_utc="2026-02-01", workload="1024/64", output_tok_s=150.0)
    kept, notes = dedupe(pd.concat([df, other]))
    assert len(kept) == 2 and notes == []
    wide = pivot(kept)
    assert [k[2] for k in wide.index] == ["1024/64", "1024/256"]  # by the numbers


def test_baseline_by_device_key_label_or_prefix() -> None:
    configs = ["a100-80gb-sxm | vllm", "h100-sxm | vllm", "h100-sxm | llamacpp/xllamacpp"]
    devs = {"a100-80gb-sxm | vllm": "a100-80gb-sxm", "h100-sxm | vllm": "h100-sxm"}
    devs["h100-sxm | llamacpp/xllamacpp"] = "h100-sxm"
    assert choose_baseline(configs, devs, "a100-80gb-sxm") == "a100-80gb-sxm | vllm"
    assert choose_baseline(configs, devs, "h100-sxm | vllm") == "h100-sxm | vllm"
    with pytest.raises(CompareError, match="several"):
        choose_baseline(configs, devs, "h100-sxm")
    with pytest.raises(CompareError, match="matches no configuration"):
        choose_baseline(configs, devs, "mi300x")


def test_caveats_name_unfinished_runs_and_points_with_failed_requests() -> None:
    from harness.compare_notes import caveats

    df = _rows()
    df["run_id"] = ["a", "a", "b", "b", "b"]
    df["run_status"] = ["complete", "complete", "partial", "partial", "partial"]
    df["point_id"] = ["v0-c16", "v0-c2", "v0-c16", "v0-c2", "v0-c64"]
    df["requests"] = 8
    df["errors"] = [0, 6, 0, 0, float("nan")]
    df["attempt"] = [0, 0, 0, 1, float("nan")]  # NaN: a row from before points recorded it
    assert caveats(df) == [
        "run b is partial: only its finished points are shown",
        "run b: v0-c2 measured after a resume (engine restarted)",
        "run a point v0-c2: 6 of 8 measured requests failed; its numbers cover the others only",
    ]


def test_energy_over_other_gpus_than_priced_is_named() -> None:
    """An external endpoint on this machine had its energy summed over all 8 GPUs NVML saw while its
    label and $/1M were for the scenario's 1: nothing compared the two."""
    from harness.compare_notes import caveats

    df = _rows().iloc[:2].copy()
    df["config"] = "h100-sxm | external"
    df["devices"] = 1
    df["gpu_count"] = [8, 1]
    df["energy_j_per_output_token"] = [2.0, 1.5]
    df["run_id"], df["point_id"] = "r", ["v0-c1", "v0-c2"]
    assert caveats(df) == [
        "h100-sxm | external: J/token covers the 8 GPUs sampled (NVML), $/1M prices the label's 1 (the "
        "manifest's telemetry.nvml.gpu_selection says which were sampled)"
    ]
    # a CPU engine on a GPU machine: its energy scope says what it counts, its label is the CPU
    assert caveats(df.assign(host_cpu="AMD EPYC 9654")) == []
    # no J/token (a multi-node engine's head node: energy left blank), nothing to say
    assert caveats(df.assign(energy_j_per_output_token=float("nan"))) == []


def test_printed_tables_keep_labels_with_brackets() -> None:
    from rich.console import Console

    df = _rows().iloc[:2].copy()
    df["config"] = "a100-80gb-sxm | vllm [engine.cpu_offload_gb=40]"
    c = Comparison(df, pivot(add_speedup(df, None)), None)
    console = Console(record=True, width=300)
    print_comparison(c, console, ["output_tok_s"])
    assert "a100-80gb-sxm | vllm [engine.cpu_offload_gb=40]" in console.export_text()


def test_a_metric_asked_for_that_no_cell_has_is_said_so() -> None:
    from rich.console import Console

    df = _rows()
    c = Comparison(df, pivot(add_speedup(df, None)), None)  # no baseline: no speedup anywhere
    console = Console(record=True, width=300)
    print_comparison(c, console, ["output_tok_s", "speedup", "pct_roofline"])
    text = console.export_text()
    assert "output tok/s" in text and "speedup vs baseline" not in text
    assert "note: speedup: no values to show (needs --baseline, one of the configuration columns)" in text
    assert "note: pct_roofline: no values to show (needs the device's memory bandwidth" in text
    console = Console(record=True, width=300)
    print_comparison(c, console, None)  # all metrics by default: the empty ones go unsaid ...
    text = console.export_text()
    assert "no values to show" not in text
    # ... but the roofline's table, which needs what a CPU run or an external endpoint may not give
    assert "note: no % of roofline table: needs the device's memory bandwidth, from the catalog or" in text
    c.points["run_id"] = "r1"
    assert "- no % of roofline table: needs the device's memory bandwidth" in markdown(c)  # compare.md too


def test_j_per_token_of_different_energy_scopes_is_said_to_differ() -> None:
    from harness.compare_notes import energy_scope_notes

    df = _rows().iloc[:3].copy()
    df["config"] = ["h100 | vllm", "h100 | vllm", "a100 | vllm"]
    df["energy_j_per_output_token"] = [0.5, 0.6, 0.9]
    df["energy_scope"] = ["gpu", "gpu", "gpu+cpu_package"]
    (note,) = energy_scope_notes(df)
    assert note.startswith(
        "J/token counts different energy per configuration (a100 | vllm: gpu+cpu_package; h100"
    )
    df["energy_scope"] = "gpu"
    assert energy_scope_notes(df) == []
    # beside configurations that measured it, one that measured no energy is named (a blank, not a 0)
    df.loc[2, ["energy_j_per_output_token", "energy_scope"]] = [float("nan"), None]
    assert energy_scope_notes(df) == [
        "no energy measured for a100 | vllm (no GPU or CPU energy telemetry there): no J/token nor energy "
        "cost for it"
    ]


def test_cpu_runs_on_machines_the_catalog_does_not_know_are_not_reruns_of_each_other(tmp_path) -> None:
    """Both label as `cpu`: a VM that calls its CPU "AMD EPYC" can have AVX2 or AVX-512, 2 threads or 16."""
    import json
    import shutil
    from pathlib import Path

    from harness.rundevice import host_cpu_label
    from harness.runinfo import points_frame

    src = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    for name, isa, threads in (("a", None, None), ("b", "avx512f", None), ("c", None, 16)):
        shutil.copytree(src, tmp_path / name)
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        m["run_id"], m["started_utc"] = name, f"2026-11-2{ord(name) - 90}T00:00:00Z"
        if isa:
            m["hardware"]["cpu"]["isa"].append(isa)
        if threads:
            m["hardware"]["cpu"]["usable_threads"] = threads
        (tmp_path / name / "manifest.json").write_text(json.dumps(m))
    assert (
        host_cpu_label(json.loads((tmp_path / "a/manifest.json").read_text())) == "AMD EPYC, 2 threads, AVX2"
    )
    kept, notes = dedupe(points_frame([tmp_path / n for n in "abc"]))
    assert sorted(set(kept["config"])) == [
        f"cpu | llamacpp/xllamacpp [host.cpu=AMD EPYC, {t}]"
        for t in ("16 threads, AVX2", "2 threads, AVX-512", "2 threads, AVX2")
    ]
    assert len(kept) == 9 and not any("superseded" in n for n in notes)
    # the same machine again: a rerun
    kept, notes = dedupe(points_frame([tmp_path / "a", src]))
    assert len(kept) == 3 and sum("superseded" in n for n in notes) == 3


def test_cells_keep_three_significant_digits_so_small_costs_stay_apart() -> None:
    from harness.formatting import fmt, significant

    # $/1M of 0.0361 and 0.0448 were both "0.04"; 23,456 tok/s was "2.346e+04"
    assert [fmt(x, "usd") for x in (0.03611, 0.0448, 13.2889, 1.384, 1234.5)] == [
        "0.0361",
        "0.0448",
        "13.29",
        "1.38",
        "1234.50",
    ]
    assert fmt(23456.0, "sig4") == "23456" and fmt(0.000421, "sig3") == "0.000421"
    # the cost table's plain numbers: counts and prices as given, rates without exponents
    assert [fmt(x, "num") for x in (1.0, 0.05, 23456.7, 7.93214, 0.000123456)] == [
        "1",
        "0.05",
        "23457",
        "7.932",
        "0.0001235",
    ]
    assert fmt(float("nan"), "usd") == "-" and fmt(0.0, "usd") == "0.00" and significant(0.5) == "0.500"
    # latencies under a millisecond and ratios under 0.1 were "0.0" and "0.02x"
    assert [fmt(x, "ms") for x in (0.0000412, 0.00093, 0.01142, 9.2)] == ["0.041", "0.93", "11.4", "9200.0"]
    assert [fmt(x, "x") for x in (0.0241, 0.052, 1.994, 12.0)] == ["0.024x", "0.052x", "1.99x", "12.00x"]
    # decimals from the rounded value: just under 1 ms or 0.1x reads as 1 ms and 0.1x do
    assert (fmt(0.00099996, "ms"), fmt(0.0999, "x"), fmt(0.099996, "usd")) == ("1.0", "0.10x", "0.100")


def test_labels_too_wide_for_the_terminal_become_numbered_columns_with_a_legend() -> None:
    """Two variants whose labels differ only at their end were cut to the same text in an 80-column
    terminal; numbered headings and a legend keep them apart."""
    from rich.console import Console

    df = _rows().iloc[:2].copy()
    long = "cpu | llamacpp/xllamacpp | model=source=synthetic,layers=2,hidden=256"
    df = pd.concat([df.assign(config=f"{long},dtype=f16"), df.assign(config=f"{long},dtype=q8_0")])
    df["output_tok_s"] = [10.0, 20.0, 30.0, 40.0]
    c = Comparison(df, pivot(add_speedup(df, None)), None)
    console = Console(record=True, width=80)
    print_comparison(c, console, ["output_tok_s"])
    text = console.export_text()
    assert f"  #1 = {long},dtype=f16\n  #2 = {long},dtype=q8_0\n" in text
    assert "#1" in text.split("output tok/s")[1] and "#2" in text.split("output tok/s")[1]
    from harness.compare_output import ROW_KEYS_WIDTH, column_keys

    assert column_keys(["a" * 7], ROW_KEYS_WIDTH + 10) == {"a" * 7: "a" * 7}  # 7 + 3 columns: it just fits
    assert column_keys(["a" * 7], ROW_KEYS_WIDTH + 9) == {"a" * 7: "#1"}
    wide = Console(record=True, width=400)  # room for the labels: no legend
    print_comparison(c, wide, ["output_tok_s"])
    text = wide.export_text()
    assert "columns:" not in text and f"{long},dtype=q8_0" in text


def test_a_point_whose_every_request_failed_is_not_said_to_cover_the_others() -> None:
    from harness.compare_notes import caveats

    df = pd.DataFrame([{"run_id": "r", "point_id": "v0-c4", "errors": 8, "requests": 8}])
    assert caveats(df) == ["run r point v0-c4: all 8 measured requests failed: it measured nothing"]


def test_a_point_above_its_roofline_is_said_to_have_the_wrong_ceiling() -> None:
    """169.8 % of the roofline with a declared L40S on another GPU went without a word."""
    from harness.compare_notes import above_roofline_notes

    df = pd.DataFrame(
        [
            {"run_id": "r", "point_id": "v0-c1", "device": "l40s", "pct_roofline": 169.8},
            {"run_id": "r", "point_id": "v0-c4", "device": "l40s", "pct_roofline": 64.0},
            {"run_id": "r", "point_id": "v0-c2", "device": "l40s", "pct_roofline": 104.0},  # nominal GB/s
            {"run_id": "r", "point_id": "v0-c8", "device": "l40s", "pct_roofline": math.nan},
        ]
    )
    assert above_roofline_notes(df) == [
        "run r point v0-c1: 170% of its roofline, above the ceiling: the hardware (l40s, or a --bandwidth "
        "given for it), precision or model it was worked out for is likely not what ran"
    ]


def test_p99s_of_100_requests_or_fewer_are_said_to_lie_between_the_two_slowest() -> None:
    import numpy as np

    from harness.compare_notes import P99_BETWEEN_SLOWEST_MAX_REQUESTS, few_requests_for_p99_note

    # the note's claim, for numpy's percentile as metrics.stats takes it: up to 100 values p99 is between
    # the two largest, from 101 on it is not above the second largest
    for n in range(2, P99_BETWEEN_SLOWEST_MAX_REQUESTS + 1):
        values = np.arange(n, dtype=float)
        assert n - 2 < np.percentile(values, 99) <= n - 1, n
    assert np.percentile(np.arange(101.0), 99) == 99.0  # the second largest of 101
    pts = _rows().assign(ok=[8, 8, 16, 101, 0], ttft_s_p99=0.5)
    (note,) = few_requests_for_p99_note(pts)
    assert note.startswith("p99 latencies of 3 of 5 points come from 8, 16 requests each: with 100 or fewer")
    assert few_requests_for_p99_note(pts.assign(ok=[101, 200, 0, 500, 1000])) == []
    assert few_requests_for_p99_note(pts.drop(columns="ttft_s_p99")) == []  # no p99 shown, nothing to say
    # client-side p99s (send lag, loop lag) and pooled ITL are not per-request latencies
    other = pts.drop(columns="ttft_s_p99").assign(send_lag_s_p99=0.001, itl_s_p99=0.02)
    assert few_requests_for_p99_note(other) == []
    # points without a p99 (an old table, a point that measured nothing) are not counted
    (note,) = few_requests_for_p99_note(pts.assign(ttft_s_p99=[0.5, None, 0.5, 0.5, None]))
    assert note.startswith("p99 latencies of 2 of 5 points come from 8, 16 requests each")


def test_the_p99_note_is_printed_where_a_p99_table_is_and_the_speedup_hint_names_rate_rows() -> None:
    from io import StringIO

    from rich.console import Console

    from harness.compare_notes import few_requests_for_p99_note

    df = add_speedup(_rows().assign(ok=8, ttft_s_p99=0.5, run_id="r1"), "a100-80gb-sxm | vllm")
    c = Comparison(df, pivot(df), "a100-80gb-sxm | vllm", [], few_requests_for_p99_note(df))

    def printed(metrics: list[str] | None, comparison: Comparison = c) -> str:
        buf = StringIO()
        print_comparison(comparison, Console(file=buf, width=200), metrics)
        return buf.getvalue()

    assert "note: p99 latencies of 5 of 5 points come from 8 requests each" in printed(None)
    assert "note: p99 latencies" in printed(["ttft_s_p99"])
    assert "p99 latencies" not in printed(["output_tok_s", "speedup"])
    assert "p99 latencies of 5 of 5 points" in markdown(c)  # the Markdown has every table
    # every row at an arrival rate: no speedup, and the hint says why rather than asking for --baseline
    rate = add_speedup(_rows().assign(load="r2", run_id="r1").iloc[[0, 2]], "a100-80gb-sxm | vllm")
    said = printed(["speedup"], Comparison(rate, pivot(rate), "a100-80gb-sxm | vllm"))
    assert (
        "speedup: no values to show (no concurrency row the baseline measured: rows at an arrival rate"
        in (" ".join(said.split()))
    )


def test_a_speedup_inside_the_reruns_spread_is_said_to_measure_no_difference() -> None:
    """Baseline reruns at c16 gave 180-240 tok/s; the other configuration's 230 (1.15x the median 200)
    lies inside that range; at c2 its 80 is outside the 50-55 the baseline gave."""
    from harness.compare import add_speedup, within_spread_note

    df = _rows().iloc[:4].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"] * 2, "2026-01-01"
    df.loc[2, "output_tok_s"] = 230.0
    r2 = df.iloc[:2].assign(run_id="r2", started_utc="2026-01-02", output_tok_s=[240.0, 55.0])
    r3 = df.iloc[:2].assign(run_id="r3", started_utc="2026-01-03", output_tok_s=[180.0, 50.0])
    kept, _ = dedupe(pd.concat([df, r2, r3]), reruns="median")
    out = add_speedup(kept, "a100-80gb-sxm | vllm")
    assert within_spread_note(out, "a100-80gb-sxm | vllm") == [
        "speedups inside the reruns' spread (their tok/s range overlaps the baseline's): "
        "h100-sxm | vllm at c16 (1.15x): no difference was measured there"
    ]
    # one run each side: no spread was measured, nothing to say; nor without a baseline
    single = add_speedup(dedupe(df, reruns="median")[0], "a100-80gb-sxm | vllm")
    assert within_spread_note(single, "a100-80gb-sxm | vllm") == []
    assert within_spread_note(out, None) == []
    # the newest-run view has no ranges to compare
    assert (
        within_spread_note(add_speedup(dedupe(df)[0], "a100-80gb-sxm | vllm"), "a100-80gb-sxm | vllm") == []
    )


def test_every_load_that_is_an_arrival_rate_is_at_a_rate() -> None:
    from harness.runinfo import at_rate

    loads = pd.Series(["c1", "c16", "r0.5", "r2", "r16"])  # runinfo writes rates as r{rate_rps:g}
    assert at_rate(loads).tolist() == [False, False, True, True, True]


def test_the_spread_note_takes_ranges_that_touch_not_ranges_apart_nor_single_runs() -> None:
    from harness.compare import within_spread_note

    base = "a100-80gb-sxm | vllm"
    df = _rows().iloc[:4].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"] * 2, "2026-01-01"
    # c16: baseline 180 / 240, other 240 / 260 (the ranges touch at 240); c2: baseline 50 / 55, other
    # 30 / 40, wholly below it
    df["output_tok_s"] = [180.0, 50.0, 240.0, 30.0]
    again = df.assign(run_id="r2", started_utc="2026-01-02", output_tok_s=[240.0, 55.0, 260.0, 40.0])
    out = add_speedup(dedupe(pd.concat([df, again]), reruns="median")[0], base)
    assert within_spread_note(out, base) == [
        "speedups inside the reruns' spread (their tok/s range overlaps the baseline's): "
        "h100-sxm | vllm at c16 (1.19x): no difference was measured there"
    ]
    # one run each at the same tok/s: 1.00x, but no spread was measured for it to be inside
    same = dedupe(df.assign(output_tok_s=[200.0, 50.0, 200.0, 80.0]), reruns="median")[0]
    assert within_spread_note(add_speedup(same, base), base) == []


def test_the_p99_note_counts_100_requests_and_every_per_request_p99() -> None:
    from harness.compare_notes import few_requests_for_p99_note

    pts = _rows().assign(ok=[100, 101, 101, 101, 101], ttft_s_p99=0.5)
    (note,) = few_requests_for_p99_note(pts)  # 100 is "100 or fewer"
    assert note.startswith("p99 latencies of 1 of 5 points come from 100 requests each"), note
    for col in ("tpot_s_p99", "e2e_s_p99"):  # not only TTFT's
        (note,) = few_requests_for_p99_note(pts.drop(columns="ttft_s_p99").assign(**{col: 0.5}))
        assert note.startswith("p99 latencies of 1 of 5 points"), col
    # up to five request counts are listed, and " ..." only past them
    (note,) = few_requests_for_p99_note(pts.assign(ok=[1, 2, 3, 4, 5]))
    assert "come from 1, 2, 3, 4, 5 requests each" in note, note
    six = pd.concat([pts, pts.iloc[[0]]], ignore_index=True).assign(ok=[1, 2, 3, 4, 5, 6])
    assert "come from 1, 2, 3, 4, 5 ... requests each" in few_requests_for_p99_note(six)[0]


def test_the_p99_note_is_printed_with_any_per_request_p99_table() -> None:
    from io import StringIO

    from rich.console import Console

    from harness.compare_notes import few_requests_for_p99_note

    df = _rows().assign(ok=8, ttft_s_p99=0.5, tpot_s_p99=0.02, e2e_s_p99=6.0, run_id="r1")
    c = Comparison(df, pivot(df), None, [], few_requests_for_p99_note(df))
    for metric in ("ttft_s_p99", "tpot_s_p99", "e2e_s_p99"):
        buf = StringIO()
        print_comparison(c, Console(file=buf, width=200), [metric])
        assert "note: p99 latencies of 5 of 5 points" in buf.getvalue(), metric


def test_with_a_baseline_only_the_speedup_hint_is_about_rate_rows() -> None:
    from harness.compare_output import EMPTY_METRIC_HINTS, empty_metric_notes

    rate = add_speedup(_rows().assign(load="r2", run_id="r1").iloc[[0, 2]], "a100-80gb-sxm | vllm")
    c = Comparison(rate, pivot(rate), "a100-80gb-sxm | vllm")
    assert empty_metric_notes(c, ["speedup", "reruns"]) == [
        "speedup: no values to show (no concurrency row the baseline measured: rows at an arrival rate have "
        "no speedup)",
        f"reruns: no values to show ({EMPTY_METRIC_HINTS['reruns']})",
    ]


def test_a_cell_whose_reruns_all_measured_nothing_has_no_tok_s_range() -> None:
    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"], "2026-01-01"
    failed = df.assign(run_id="r2", started_utc="2026-01-02", output_tok_s=math.nan)
    kept, _ = dedupe(pd.concat([df.assign(output_tok_s=[200.0, math.nan]), failed]), reruns="median")
    c16, c2 = (kept[kept["load"] == load].iloc[0] for load in ("c16", "c2"))
    assert (c16["reruns"], c16["output_tok_s_min"], c16["output_tok_s_max"]) == (1, 200.0, 200.0)
    assert c2["reruns"] == 0 and math.isnan(c2["output_tok_s_min"]) and math.isnan(c2["output_tok_s_max"])


def test_the_reruns_hint_is_not_given_where_only_runs_that_measured_nothing_were_left_out() -> None:
    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = ["old", "old"], ["v0-c16", "v0-c2"], ["2026-01-01"] * 2
    failed = df.iloc[[0]].assign(run_id="bad", started_utc="2026-03-01", output_tok_s=math.nan)
    _, notes = dedupe(pd.concat([df, failed]))
    assert notes == [
        "bad v0-c16: measured nothing; another run's point of a100-80gb-sxm | vllm at c16 is shown"
    ]


def test_a_comparison_notes_the_rate_rows_and_the_speedups_inside_the_spread() -> None:
    from harness.compare import compare_points

    df = _rows().iloc[:4].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"] * 2, "2026-01-01"
    df.loc[2, "output_tok_s"] = 230.0
    r2 = df.iloc[:2].assign(run_id="r2", started_utc="2026-01-02", output_tok_s=[240.0, 55.0])
    rate = df.iloc[[0, 2]].assign(load="r2", point_id="v1-r2", output_tok_s=[93.2, 105.2])
    frame = pd.concat([df, r2, rate], ignore_index=True).assign(devices=1)
    c = compare_points(frame, baseline="a100-80gb-sxm | vllm", reruns="median")
    assert sum(n.startswith("rows at an arrival rate (r...) have no speedup") for n in c.notes) == 1
    (spread,) = (n for n in c.notes if n.startswith("speedups inside the reruns' spread"))
    assert "h100-sxm | vllm at c16" in spread


def test_a_price_per_token_at_an_arrival_rate_is_said_to_be_that_rates() -> None:
    from harness.compare import compare_points
    from harness.cost import rate_rows_cost_note

    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"], "2026-01-01"
    rate = df.iloc[[0]].assign(load="r2", point_id="v1-r2", output_tok_s=93.2)
    frame = pd.concat([df, rate], ignore_index=True).assign(devices=1)
    c = compare_points(frame, prices_usd_per_hour={"a100-80gb-sxm": 2.0})
    (note,) = (n for n in c.notes if n.startswith("$/1M tokens at an arrival rate (r...)"))
    assert "--find-max-goodput" in note
    # no price, or no rate row: nothing to say
    assert not any("at an arrival rate" in n for n in compare_points(frame).notes)
    assert not any(
        "at an arrival rate" in n
        for n in compare_points(df.assign(devices=1), None, {"a100-80gb-sxm": 2.0}).notes
    )
    assert rate_rows_cost_note(pd.DataFrame({"load": ["r2"], "usd_per_1m_tokens": [float("nan")]})) == []


def test_settings_that_split_a_label_are_shown_as_a_scenario_writes_them() -> None:
    from harness.compare import split_settings
    from harness.runinfo import settings_of

    df = _rows().iloc[:2].copy()
    df["run_id"] = ["a", "b"]
    df["load"] = "c2"
    df["settings"] = [settings_of({"type": "vllm"}, {"api": "chat", "temperature": t}) for t in (None, 0.0)]
    out, _ = split_settings(df)
    assert sorted(out["config"]) == [
        "a100-80gb-sxm | vllm [workload.temperature=0.0]",
        "a100-80gb-sxm | vllm [workload.temperature=null]",
    ]


def test_lengths_drawn_from_a_distribution_are_not_reruns_of_a_fixed_length() -> None:
    """A workload of input_tokens 256 and one of a normal of mean 256 share the row `256/64`; the fixed
    length flattened to one field and the distribution to others, so their runs were taken for reruns."""
    from harness.compare import split_settings
    from harness.runinfo import settings_of

    normal = {"dist": "normal", "mean": 256, "min": None, "max": None, "stddev": 64.0}
    uniform = {"dist": "uniform", "mean": 64, "min": 16, "max": None, "stddev": None}
    fixed = {"dist": "fixed", "mean": 256, "min": None, "max": None, "stddev": None}
    df = _rows().iloc[:1].copy()
    frame = pd.concat(
        [
            df.assign(run_id=r, settings=settings_of({"type": "vllm"}, w))
            for r, w in (
                ("dist", {"input_tokens": normal, "output_tokens": uniform}),
                ("int", {"input_tokens": 256, "output_tokens": 64}),
                ("fixed", {"input_tokens": fixed, "output_tokens": 64}),  # the same as 256
            )
        ]
    )
    out, notes = split_settings(frame)
    cfg = "a100-80gb-sxm | vllm"
    assert list(out["config"]) == [
        f"{cfg} [workload.input_tokens=normal 256 sd 64 in [1, none] workload.output_tokens=uniform 16-112]",
        f"{cfg} [workload.input_tokens=256 workload.output_tokens=64]",
        f"{cfg} [workload.input_tokens=256 workload.output_tokens=64]",
    ]
    assert notes == [
        f"{cfg}: runs with other settings (workload.input_tokens, workload.output_tokens) are shown apart"
    ]


def test_a_setting_that_is_a_mapping_in_one_run_and_a_value_in_another_differs() -> None:
    from harness.compare import split_settings
    from harness.runinfo import settings_of

    df = _rows().iloc[:1].copy()
    spec = {"method": "ngram", "num_speculative_tokens": 4}
    frame = pd.concat(
        [
            df.assign(run_id="a", settings=settings_of({"type": "vllm", "speculative": spec}, {})),
            df.assign(run_id="b", settings=settings_of({"type": "vllm", "speculative": None}, {})),
            # a field the older run's harness did not write is no difference
            df.assign(run_id="c", settings=settings_of({"type": "vllm", "speculative": None, "new": 1}, {})),
        ]
    )
    out, _ = split_settings(frame)
    assert list(out["config"]) == [
        'a100-80gb-sxm | vllm [engine.speculative={"method": "ngram", "num_speculative_tokens": 4}]',
        "a100-80gb-sxm | vllm [engine.speculative=null]",
        "a100-80gb-sxm | vllm [engine.speculative=null]",
    ]


def test_runs_that_differ_in_a_field_an_older_run_lacks_are_not_reruns() -> None:
    """A (x=1) and B (x=2) were taken for reruns because an older run C, whose harness did not write x,
    left x out of the fields compared."""
    from harness.compare import split_settings
    from harness.runinfo import settings_of

    df = _rows().iloc[:1].copy()
    frame = pd.concat(
        [
            df.assign(run_id="a", settings=settings_of({"type": "vllm", "new": 1}, {})),
            df.assign(run_id="b", settings=settings_of({"type": "vllm", "new": 2}, {})),
            df.assign(run_id="c", settings=settings_of({"type": "vllm"}, {})),
        ]
    )
    out, notes = split_settings(frame)
    assert list(out["config"]) == [
        "a100-80gb-sxm | vllm [engine.new=1]",
        "a100-80gb-sxm | vllm [engine.new=2]",
        "a100-80gb-sxm | vllm [engine.new=unrecorded]",
    ]
    assert notes == ["a100-80gb-sxm | vllm: runs with other settings (engine.new) are shown apart"]
    # one run with the field and one without: a field added between them, no difference
    out, notes = split_settings(frame[frame["run_id"] != "b"])
    assert set(out["config"]) == {"a100-80gb-sxm | vllm"} and notes == []


def test_a_utilization_below_one_is_said_beside_the_prices_and_kept_in_the_points() -> None:
    """At --utilization 0.5 the $/1M doubled while the notes gave only the $/hour: the figure could not be
    worked back from what the comparison showed."""
    from harness.compare import compare_points

    df = _rows().iloc[:2].copy()
    df["run_id"], df["point_id"], df["started_utc"] = "r1", ["v0-c16", "v0-c2"], "2026-01-01"
    frame = df.assign(devices=1)
    half = compare_points(frame, prices_usd_per_hour={"a100-80gb-sxm": 2.0}, utilization=0.5)
    full = compare_points(frame, prices_usd_per_hour={"a100-80gb-sxm": 2.0})
    assert (
        "$/1M tokens assume the devices busy 0.5 of the hours rented (--utilization 0.5): x2 what they "
        "would be if always busy"
    ) in half.notes
    assert not [n for n in full.notes if "--utilization" in n]
    assert list(half.points["utilization"]) == [0.5, 0.5] and list(full.points["utilization"]) == [1.0, 1.0]
    unpriced = compare_points(frame, prices_usd_per_hour={"h100-sxm": 2.0}, utilization=0.5).points
    assert unpriced["utilization"].isna().all()  # no price, no hours rented to be busy in
    ratio = half.points["usd_per_1m_tokens"] / full.points["usd_per_1m_tokens"]
    assert list(ratio) == pytest.approx([2.0, 2.0])
    # nothing priced: no $/1M to qualify
    assert not [n for n in compare_points(frame, utilization=0.5).notes if "--utilization" in n]


def test_configurations_measured_on_different_host_cpus_are_said_to_be() -> None:
    """The quickstart ran on an AVX2 EPYC and the llama-bench runs on an AVX-512 one: both go by `cpu`,
    and llama-server's 1.7x over xllamacpp read as the engines' difference alone."""
    from harness.compare import compare_runs
    from harness.compare_notes import host_cpu_notes

    ev = Path(__file__).resolve().parents[2] / "results/evidence"
    quick = ev / "20261125T114708Z-quickstart-cpu"
    bench = sorted((ev / "llama-bench-cpu").glob("2*"))
    (note,) = [n for n in compare_runs([quick, *bench]).notes if "different host CPUs" in n]
    assert note == (
        "cpu: the configurations ran on different host CPUs (cpu | llamacpp/llama-server: AMD EPYC, 2 "
        "threads, AVX-512; cpu | llamacpp/xllamacpp: AMD EPYC, 2 threads, AVX2): ratios between them "
        "measure the machines as well as the engines"
    )
    assert not [n for n in compare_runs(bench).notes if "different host CPUs" in n]  # one machine
    assert host_cpu_notes(pd.DataFrame({"device": ["h100-sxm"], "config": ["h100-sxm | vllm"]})) == []


def test_the_host_cpu_note_needs_two_configurations_and_two_cpus_on_one_device() -> None:
    from harness.compare_notes import host_cpu_notes

    def frame(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
        return pd.DataFrame(rows, columns=["device", "config", "host_cpu"])

    assert host_cpu_notes(frame([("cpu", "cpu | a", "X"), ("cpu", "cpu | b", "X")])) == []  # one machine
    assert host_cpu_notes(frame([("cpu", "cpu | a", "X"), ("cpu", "cpu | a", "Y")])) == []  # no ratio
    # GPU rows have no host CPU: left out, not compared as text beside the CPU rows
    gpu_and_cpu = [("h100-sxm", "h100-sxm | a", None), ("h100-sxm", "h100-sxm | b", None)]
    gpu_and_cpu += [("cpu", "cpu | a", "X"), ("cpu", "cpu | a", "Y"), ("cpu", "cpu | b", "X")]
    assert host_cpu_notes(frame(gpu_and_cpu)) == [
        "cpu: the configurations ran on different host CPUs (cpu | a: X / Y; cpu | b: X): ratios between "
        "them measure the machines as well as the engines"
    ]


def test_the_empty_metric_hints_name_the_flags_as_spelled_now() -> None:
    from harness.compare_output import EMPTY_METRIC_HINTS

    hints = " ".join(EMPTY_METRIC_HINTS.values())
    assert "--usd-per-kwh" in hints and "--kwh" not in hints.replace("--usd-per-kwh", "")


def test_rows_the_baseline_lacks_are_said_to_have_no_speedup() -> None:
    """An H100 at fp8 against an A100 at bf16 (rows are split by precision): every speedup was blank,
    without a word."""
    from harness.compare import missing_baseline_note

    df = _rows()
    assert missing_baseline_note(df, "a100-80gb-sxm | vllm") == [
        "baseline a100-80gb-sxm | vllm has no point at llama-3.1-70b | fp8 | 1024/256 | c64: no speedup "
        "there (rows are split by model, precision, workload and load; a run of the baseline there, or "
        "another --baseline, gives one)"
    ]
    assert missing_baseline_note(df.iloc[:4], "a100-80gb-sxm | vllm") == []
    assert missing_baseline_note(df, None) == []


def test_a_point_whose_outputs_came_short_is_noted_in_its_full_length_row() -> None:
    """Rows are keyed by the lengths asked: 16-token outputs sat in the 128/64 row at 1.78x, unsaid."""
    from harness.compare_notes import caveats

    df = _rows().assign(run_id="r1", point_id="v0-c2", ok=8, short_outputs=[0, 8, 0, 0, 0])
    assert caveats(df) == [
        "run r1 point v0-c2: 8 of 8 requests returned fewer tokens than asked (an end of sequence not "
        "ignored?): its row is the lengths asked, its numbers are over shorter outputs"
    ]
    df["short_at_limit"] = [0, 8, 0, 0, 0]
    assert "(a length limit (the context?))" in caveats(df)[0]


def test_runs_of_another_engine_build_are_not_reruns(tmp_path) -> None:
    """Two runs of one configuration on two llama.cpp builds were pooled as reruns (`--reruns median`)
    or the older superseded without a word: another build is another measurement."""
    import json
    import shutil
    from pathlib import Path

    from harness.runinfo import points_frame

    src = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    for name, version in (("a", None), ("b", "b9999-0123abc")):
        shutil.copytree(src, tmp_path / name)
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        m["run_id"] = name
        if version:
            for e in m["engines"]:
                e["version"] = version
        (tmp_path / name / "manifest.json").write_text(json.dumps(m))
    original = json.loads((src / "manifest.json").read_text())["engines"][0]["version"]
    kept, notes = dedupe(points_frame([tmp_path / "a", tmp_path / "b"]), reruns="median")
    assert sorted(set(kept["config"])) == [
        f"cpu | llamacpp/xllamacpp [engine_build.version={v}]" for v in sorted([original, "b9999-0123abc"])
    ]
    said = "cpu | llamacpp/xllamacpp: runs with other settings (engine_build.version) are shown apart"
    assert said in notes
    # the same build again: a rerun
    kept, _ = dedupe(points_frame([tmp_path / "a", src]), reruns="median")
    assert len(kept) == 3 and set(kept["reruns"]) == {2}


def test_builds_of_one_version_with_other_files_are_not_reruns(tmp_path) -> None:
    """Two llama.cpp builds from trees without git metadata both say `b0-unknown`: they compared as one
    engine, their points pooled as reruns. The digest of their files (the manifest's `build.sha256`) tells
    them apart; a run from before the digest was recorded is a rerun of either."""
    import shutil

    from harness.runinfo import points_frame

    src = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    digests = {"a": "c1ff30efebd9" + "0" * 52, "b": "7e5d2a9b04f1" + "1" * 52, "c": "c1ff30efebd9" + "0" * 52}
    for name in ("a", "b", "c", "old"):
        shutil.copytree(src, tmp_path / name)
        m = json.loads((tmp_path / name / "manifest.json").read_text())
        m["run_id"] = name
        for e in m["engines"]:
            e["version"] = "llama-server b0-unknown"
            if name in digests:
                e["build"] = {"sha256": digests[name], "files": {}, "from": "loaded"}
        (tmp_path / name / "manifest.json").write_text(json.dumps(m))
    kept, notes = dedupe(points_frame([tmp_path / "a", tmp_path / "b"]), reruns="median")
    assert sorted(set(kept["config"])) == [
        "cpu | llamacpp/xllamacpp [engine_build.sha256=7e5d2a9b04f1]",
        "cpu | llamacpp/xllamacpp [engine_build.sha256=c1ff30efebd9]",
    ]
    assert "cpu | llamacpp/xllamacpp: runs with other settings (engine_build.sha256) are shown apart" in notes
    kept, _ = dedupe(points_frame([tmp_path / "a", tmp_path / "c"]), reruns="median")  # the same files
    assert len(kept) == 3 and set(kept["reruns"]) == {2}
    kept, _ = dedupe(points_frame([tmp_path / "a", tmp_path / "old"]), reruns="median")
    assert len(kept) == 3 and set(kept["reruns"]) == {2}


def test_a_run_that_sent_seeds_is_no_rerun_of_one_that_did_not_where_sampling() -> None:
    """Runs from before `workload.request_seed` sent a seed with every request, which slows a sampling
    vLLM: at temperature > 0 they are not reruns of a run that sent none; at 0 a seed changes nothing."""
    from harness.runinfo import settings_of

    def seeded(workload: dict) -> dict:
        return json.loads(settings_of({"type": "vllm"}, workload))["workload"]

    assert seeded({"temperature": 0.7})["request_seed"] is True  # an older run's: it sent one
    assert seeded({"temperature": 0.7, "request_seed": False})["request_seed"] is False
    assert "request_seed" not in seeded({"temperature": 0.0, "request_seed": True})
    assert seeded({"temperature": None})["request_seed"] is True  # the server's default temperature
