"""A comparison written out: one rich table per metric on the terminal (labels as `#N` where they do
not fit), and compare.md, compare.csv, compare.parquet and points.csv in a directory."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.compare import METRICS, ROW_KEYS, Comparison
from harness.compare_notes import P99_LATENCIES
from harness.fileio import replaced_whole, write_text_whole
from harness.formatting import fmt, md_row
from harness.table_fit import print_fitted


def _present(c: Comparison) -> list[tuple[str, str, str]]:
    return [
        (m, h, f)
        for m, h, f in METRICS
        if m in c.wide.columns.get_level_values(0) and not c.wide[m].isna().all().all()
    ]


def metric_frame(c: Comparison, metric: str, spec: str) -> pd.DataFrame:
    sub = c.wide[metric]
    rows = []
    for key, vals in sub.iterrows():
        rows.append([*[str(k) for k in key], *[fmt(v, spec) for v in vals]])
    return pd.DataFrame(rows, columns=[*ROW_KEYS, *sub.columns])


# terminal columns a table's row keys (model, precision, workload, load) and its borders take, about
ROW_KEYS_WIDTH = 60


def column_keys(configs: list[str], width: int) -> dict[str, str]:
    """Column headings for the configurations: their labels where the table fits `width` terminal
    columns, else `#1`, `#2`, ... (a legend gives the labels): cut to fit, long labels that differ only
    at their end read the same."""
    if ROW_KEYS_WIDTH + sum(len(c) + 3 for c in configs) <= width:
        return {c: c for c in configs}
    return {c: f"#{i}" for i, c in enumerate(configs, 1)}


def rich_tables(
    c: Comparison, metrics: list[str] | None = None, keys: dict[str, str] | None = None
) -> list[Table]:
    tables = []
    for m, header, spec in _present(c):
        if metrics is not None and m not in metrics:
            continue
        df = metric_frame(c, m, spec)
        title = header + (f" (baseline: {c.baseline})" if m == "speedup" else "")
        # labels are text: `[engine.cpu_offload_gb=40]` would be taken for rich markup and dropped
        t = Table(title=escape(title), title_justify="left")
        for col in df.columns:
            head = (keys or {}).get(str(col), str(col))
            t.add_column(escape(head), justify="left" if col in ROW_KEYS else "right")
        for _, r in df.iterrows():
            t.add_row(*[escape(str(x)) for x in r])
        tables.append(t)
    return tables


def markdown(c: Comparison) -> str:
    parts = ["# Comparison\n", f"Runs: {', '.join(dict.fromkeys(c.points['run_id']))}\n"]
    if c.baseline:
        parts.append(f"Baseline: `{c.baseline}`\n")
    for m, header, spec in _present(c):
        df = metric_frame(c, m, spec)
        parts.append(f"## {header}\n")
        parts.append(md_row(df.columns))
        parts.append("|" + "---|" * len(df.columns))
        parts += [md_row(r) for _, r in df.iterrows()]
        parts.append("")
    notes = [*empty_metric_notes(c, None), *c.notes, *c.p99_notes]  # every metric present is written here
    if notes:
        parts.append("## Notes\n")
        parts += [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def flat(wide: pd.DataFrame) -> pd.DataFrame:
    """The wide table with one-level column names `metric [config]` (for CSV and Parquet)."""
    out = wide.copy()
    out.columns = [f"{col[0]} [{col[1]}]" for col in wide.columns]
    return out.reset_index()


def write(c: Comparison, out_dir: str | Path) -> list[Path]:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    f = flat(c.wide)
    paths = [d / "compare.csv", d / "compare.parquet", d / "compare.md", d / "points.csv"]
    # each file whole or not at all (a full disk leaves no truncated table that reads as a result)
    with replaced_whole(paths[0]) as tmp:
        f.to_csv(tmp, index=False)
    with replaced_whole(paths[1]) as tmp:
        f.to_parquet(tmp, index=False)
    write_text_whole(paths[2], markdown(c))
    with replaced_whole(paths[3]) as tmp:
        c.points.to_csv(tmp, index=False)
    return paths


# why a metric asked for by name can have no value in any cell
EMPTY_METRIC_HINTS = {
    "speedup": "needs --baseline, one of the configuration columns",
    "speedup_per_device": "only against a --baseline with another device count",
    "energy_j_per_output_token": "no GPU or CPU energy was measured in these runs",
    "usd_per_1m_tokens": "needs a price for the device: --price DEVICE=USD_PER_HOUR",
    "energy_usd_per_1m_tokens": "needs --usd-per-kwh and measured energy",
    "total_usd_per_1m_tokens": "needs a price, --usd-per-kwh and measured energy",
    "pct_roofline": "needs the device's memory bandwidth, from the catalog or --bandwidth "
    "DEVICE=GB_PER_S, and the model's size (for an external endpoint, engine.precision and model.catalog)",
    "reruns": "only with --reruns median",
    "output_tok_s_spread_pct": "only with --reruns median over several runs of a cell",
}


def empty_metric_notes(c: Comparison, metrics: list[str] | None) -> list[str]:
    """A line for each metric asked for by name that no cell has a value for (it would vanish unsaid);
    by default, for the roofline share (price and energy have notes of their own)."""
    shown = {m for m, _, _ in _present(c)}
    if metrics is None:
        return (
            []
            if "pct_roofline" in shown
            else [f"no % of roofline table: {EMPTY_METRIC_HINTS['pct_roofline']}"]
        )
    return [f"{m}: no values to show ({_empty_hint(c, m)})" for m in metrics if m not in shown]


def _empty_hint(c: Comparison, metric: str) -> str:
    """Why `metric` has no value in any cell of `c`."""
    if metric == "speedup" and c.baseline is not None:
        return "no concurrency row the baseline measured: rows at an arrival rate have no speedup"
    return EMPTY_METRIC_HINTS.get(metric, "not measured in these runs")


def print_comparison(c: Comparison, console: Console, metrics: list[str] | None = None) -> None:
    configs = [str(x) for x in dict.fromkeys(c.wide.columns.get_level_values(1))]
    keys = column_keys(configs, console.width)
    tables = rich_tables(c, metrics, keys)
    if tables and any(k != label for label, k in keys.items()):
        console.print("columns:", markup=False, highlight=False)
        for label, k in keys.items():
            console.print(f"  {k} = {label}", markup=False, highlight=False, soft_wrap=True)
    for t in tables:  # the row labels (ROW_KEYS) are its left-justified columns, first
        print_fitted(console, t, keys=sum(col.justify == "left" for col in t.columns))
    p99_shown = metrics is None or any(m in metrics for m in P99_LATENCIES)
    for n in [*empty_metric_notes(c, metrics), *c.notes, *(c.p99_notes if p99_shown else [])]:
        console.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
