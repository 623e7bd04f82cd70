"""`harness compare`: one table over many runs.

Rows are model x precision x workload (mean input/output tokens, `128/64`) x load level (concurrency
`c8` or rate `r2`), columns are configurations
(`hardware | engine [| variant]`, read from each run's manifest, see harness.runinfo). Each metric is
its own rows x configurations table; `speedup` is a configuration's output tok/s divided by the
baseline configuration's output tok/s on the same row (concurrency rows only: at an arrival rate the
tok/s is the rate's).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.catalog.prices import unused_override_notes
from harness.cost import add_cost_columns, rate_rows_cost_note
from harness.fileio import replaced_whole, write_text_whole
from harness.formatting import fmt, md_row
from harness.runinfo import at_rate, points_frame
from harness.table_fit import print_fitted

# (column, header, format); "ms" shows seconds as milliseconds, "x" as a ratio
METRICS: tuple[tuple[str, str, str], ...] = (
    ("output_tok_s", "output tok/s", "{:.1f}"),
    ("speedup", "speedup vs baseline", "x"),
    ("speedup_per_device", "speedup per device vs baseline (other device counts only)", "x"),
    ("ttft_s_p50", "TTFT p50 ms", "ms"),
    ("ttft_s_p99", "TTFT p99 ms", "ms"),
    ("tpot_s_p50", "TPOT p50 ms", "ms"),
    ("tpot_s_p99", "TPOT p99 ms", "ms"),
    ("energy_j_per_output_token", "J/output token", "sig3"),
    ("usd_per_1m_tokens", "$/1M output tokens", "usd"),
    ("energy_usd_per_1m_tokens", "energy $/1M output tokens", "usd"),
    ("total_usd_per_1m_tokens", "rent + energy $/1M output tokens", "usd"),
    ("pct_roofline", "% of decode roofline", "{:.1f}"),
    ("reruns", "runs (median over reruns)", "{:.0f}"),
    ("output_tok_s_spread_pct", "output tok/s spread over reruns, % of median", "{:.0f}"),
)
ROW_KEYS = ["model", "precision", "workload", "load"]


class CompareError(Exception):
    pass


@dataclass
class Comparison:
    points: pd.DataFrame  # long form, one row per (row key, config)
    wide: pd.DataFrame  # index ROW_KEYS, columns (metric, config)
    baseline: str | None
    notes: list[str] = field(default_factory=list)
    p99_notes: list[str] = field(default_factory=list)  # said where a p99 latency table is shown


def parse_metrics(text: str | None) -> list[str] | None:
    """`--metrics a,b` -> ["a", "b"] (None: all); unknown names raise CompareError."""
    if not text:
        return None
    shown = [m.strip() for m in text.split(",") if m.strip()]
    known = [m for m, _, _ in METRICS]
    bad = [m for m in shown if m not in known]
    if bad:
        raise CompareError(f"--metrics: {', '.join(bad)} unknown (allowed: {', '.join(known)})")
    if not shown:  # `--metrics ,`: no table at all, said by nothing
        raise CompareError(f"--metrics: {text!r} names no metric (allowed: {', '.join(known)})")
    return shown


def choose_baseline(configs: list[str], devices: dict[str, str], baseline: str) -> str:
    """The one configuration named by `baseline`: an exact label, a hardware key, or a label prefix."""
    exact = [c for c in configs if c == baseline]
    if exact:
        return exact[0]
    by_device = [c for c in configs if devices.get(c) == baseline]
    hits = by_device or [c for c in configs if c.startswith(baseline)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise CompareError(
            f"--baseline: {baseline!r} matches no configuration (allowed: {'; '.join(configs)})"
        )
    raise CompareError(f"--baseline: {baseline!r} matches several configurations: {'; '.join(hits)}")


def _load_order(load: str) -> tuple[int, float]:
    return (0 if load.startswith("c") else 1, float(load[1:]))


def _flat(obj: Any, at: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{at}.{key}" if at else key).items()}
    return {at: json.dumps(obj, sort_keys=True)}


def split_settings(points: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Points of one row and configuration label whose settings differ (see runinfo.settings_of) are not
    reruns of each other: each gets the differing values added to its label (`... [engine.cpu_offload_gb=
    40]`) on all its rows, and a note says so. Settings that only differ between rows (a precision, a
    workload) are what the rows are for and change no label."""
    if "settings" not in points.columns or points.empty:
        return points, []
    out = points.copy()
    notes: list[str] = []
    clashing: dict[str, set[str]] = {}
    for (*_, config), cell in points.groupby([*ROW_KEYS, "config"], sort=False, dropna=False):
        kinds = set(cell["settings"].dropna())
        if len(kinds) > 1:
            clashing.setdefault(str(config), set()).update(kinds)
    for config, kinds in clashing.items():
        flat = {s: _flat(json.loads(s)) for s in sorted(kinds)}
        # fields only some runs have were added to the harness between them: not a difference
        keys = sorted(set.intersection(*(set(f) for f in flat.values())))
        differ = [k for k in keys if len({f[k] for f in flat.values()}) > 1]
        if not differ:
            continue
        more = " ..." if len(differ) > 3 else ""
        label = {
            s: f"{config} [" + " ".join(f"{k}={_as_written(f[k])}" for k in differ[:3]) + f"{more}]"
            for s, f in flat.items()
        }
        mask = (out["config"] == config) & out["settings"].isin(list(kinds))
        out.loc[mask, "config"] = out.loc[mask, "settings"].map(label)
        notes.append(f"{config}: runs with other settings ({', '.join(differ[:3])}{more}) are shown apart")
    return out, notes


def _as_written(value_json: str) -> str:
    """A setting's value as a scenario writes it: text bare (`chat`), numbers as they are, and null,
    true and false as YAML spells them (not Python's None, True, False)."""
    value = json.loads(value_json)
    return value if isinstance(value, str) else value_json


def dedupe(points: pd.DataFrame, reruns: str = "newest") -> tuple[pd.DataFrame, list[str]]:
    """One point per row and configuration where several runs measured it with the same settings (runs
    with other settings get labels of their own first: `split_settings`): the newest run's point, or with
    `reruns="median"` the median of every measured number over the reruns (`median_of_reruns`; its notes
    then include the `caveats` of every point the medians were taken over, which the kept rows no longer
    show one by one)."""
    points, notes = split_settings(points)
    ordered = points.sort_values("started_utc", kind="stable")
    if reruns == "median":
        kept, more = median_of_reruns(ordered)
        return kept, notes + more + caveats(ordered)
    # the newest point that measured something: one whose every request failed (no tok/s) does not hide
    # an earlier run's measurement of the cell
    measured = ordered["output_tok_s"].notna()
    ordered = ordered.assign(_measured=measured).sort_values(["_measured", "started_utc"], kind="stable")
    dup = ordered.duplicated(subset=[*ROW_KEYS, "config"], keep="last")
    for _, r in ordered[dup].iterrows():
        if r["_measured"]:
            said = f"superseded by a newer run of {r['config']} at {r['load']}"
        else:
            said = f"measured nothing; another run's point of {r['config']} at {r['load']} is shown"
        notes.append(f"{r['run_id']} {r['point_id']}: {said}")
    if ordered[dup]["_measured"].any():
        notes.append(RERUNS_HINT)
    return ordered[~dup].drop(columns="_measured").sort_values("started_utc", kind="stable"), notes


# said once under the notes of older runs a newer one replaced
RERUNS_HINT = (
    "older runs of a cell are left out: --reruns median shows the median over all and how far apart they were"
)

# columns of a point that say how it went rather than what it measured: the worst run's value is kept
WORST_OF_RERUNS = ("errors", "attempt", "failed_tail_s")


def median_of_reruns(ordered: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per row key and configuration: the newest run's labels, `run_id` naming every run, the
    median of each numeric column over the runs (the highest of WORST_OF_RERUNS), `reruns` = how many
    runs measured output tok/s, `output_tok_s_min`/`_max` over them, and `output_tok_s_spread_pct` =
    (max - min) / median of their output tok/s x 100: how far apart the reruns were. Returns the rows and
    a note per cell of several runs."""
    numeric = [
        c
        for c in ordered.columns
        if pd.api.types.is_numeric_dtype(ordered[c]) and not pd.api.types.is_bool_dtype(ordered[c])
    ]
    rows, notes = [], []
    for _, g in ordered.groupby([*ROW_KEYS, "config"], sort=False, dropna=False):
        row = g.iloc[-1].copy()
        tok = g["output_tok_s"].dropna()
        row["reruns"] = len(tok)
        row["output_tok_s_min"] = tok.min() if len(tok) else math.nan
        row["output_tok_s_max"] = tok.max() if len(tok) else math.nan
        row["output_tok_s_spread_pct"] = (
            (tok.max() - tok.min()) / tok.median() * 100 if len(tok) > 1 and tok.median() > 0 else math.nan
        )
        if len(g) > 1:
            for c in numeric:
                row[c] = g[c].max() if c in WORST_OF_RERUNS else g[c].median()
            row["run_id"] = ", ".join(map(str, g["run_id"]))
            said = f"output tok/s {tok.min():.4g}-{tok.max():.4g}" if len(tok) else "no output tok/s measured"
            notes.append(
                f"{row['config']} at {row['load']}: median of {len(g)} runs ({row['run_id']}), {said}"
            )
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True), notes


def add_speedup(points: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """speedup = output_tok_s / output_tok_s of the baseline configuration on the same row; where a
    configuration runs on another number of devices than the baseline, speedup_per_device = speedup x
    baseline devices / its devices (8 GPUs against 1 is not a GPU against a GPU). Rows at an arrival
    rate get none (`rate_rows_note`): there output tok/s follows the rate offered, not the hardware."""
    out = points.copy()
    out["speedup_per_device"] = math.nan
    if baseline is None:
        out["speedup"] = math.nan
        return out
    rows = out[out["config"] == baseline].set_index(ROW_KEYS)
    base = rows["output_tok_s"]
    keys = list(zip(*(out[k] for k in ROW_KEYS), strict=True))
    out["speedup"] = [
        t / base[k] if k in base.index and base[k] > 0 and not rate else math.nan
        for t, k, rate in zip(out["output_tok_s"], keys, at_rate(out["load"]), strict=True)
    ]
    if "devices" in out.columns:
        base_n = rows["devices"]
        out["speedup_per_device"] = [
            x * base_n[k] / n if k in base_n.index and n and n != base_n[k] else math.nan
            for x, k, n in zip(out["speedup"], keys, out["devices"], strict=True)
        ]
    return out


def rate_rows_note(points: pd.DataFrame, baseline: str | None) -> list[str]:
    """Why rows at an arrival rate have no speedup."""
    if baseline is None or not at_rate(points["load"]).any():
        return []
    return [
        "rows at an arrival rate (r...) have no speedup: while an engine keeps up, its output tok/s is "
        "the rate offered, and what differs is how long the last requests took (a ratio of latencies, not "
        "of capacity); compare their TTFT and TPOT, or capacity at concurrency rows (c...) or with "
        "`harness run --find-max-goodput`"
    ]


def within_spread_note(points: pd.DataFrame, baseline: str | None) -> list[str]:
    """A note naming the speedups whose configuration and baseline were rerun (`median_of_reruns`) and
    whose tok/s ranges over the reruns overlap: the difference is inside what the reruns varied by."""
    need = {"output_tok_s_min", "output_tok_s_max", "reruns", "speedup"}
    if baseline is None or not need <= set(points.columns):
        return []
    base = points[points["config"] == baseline].set_index(ROW_KEYS)
    inside = []
    for _, r in points[(points["config"] != baseline) & points["speedup"].notna()].iterrows():
        b = base.loc[tuple(r[k] for k in ROW_KEYS)]
        if max(r["reruns"], b["reruns"]) < 2:  # one run each: no spread measured
            continue
        if r["output_tok_s_min"] <= b["output_tok_s_max"] and b["output_tok_s_min"] <= r["output_tok_s_max"]:
            inside.append(f"{r['config']} at {r['load']} ({r['speedup']:.2f}x)")
    if not inside:
        return []
    return [
        "speedups inside the reruns' spread (their tok/s range overlaps the baseline's): "
        f"{'; '.join(inside)}: no difference was measured there"
    ]


# up to this many requests, a point's p99 (numpy's linear interpolation at 0.99 x (n - 1), which is
# >= n - 2 for n <= 100) lies between its two slowest requests
P99_BETWEEN_SLOWEST_MAX_REQUESTS = 100


# per-request latency percentiles (one value per request; ITL pools every gap of every request)
P99_LATENCIES = ("ttft_s_p99", "tpot_s_p99", "e2e_s_p99")


def few_requests_for_p99_note(points: pd.DataFrame) -> list[str]:
    """A note where per-request p99s (TTFT, TPOT, E2E) come from so few requests that they are no tail
    estimate: with 100 successful requests or fewer, p99 lies between the two slowest of them."""
    cols = [c for c in P99_LATENCIES if c in points.columns]
    if "ok" not in points.columns or not cols:
        return []
    ok = pd.to_numeric(points["ok"], errors="coerce")
    has_p99 = points[cols].notna().any(axis=1)
    few = ok[has_p99 & (ok > 0) & (ok <= P99_BETWEEN_SLOWEST_MAX_REQUESTS)]
    if few.empty:
        return []
    counts = sorted({int(n) for n in few})
    said = ", ".join(map(str, counts[:5])) + (" ..." if len(counts) > 5 else "")
    return [
        f"p99 latencies of {len(few)} of {len(points)} points come from {said} requests each: with "
        f"{P99_BETWEEN_SLOWEST_MAX_REQUESTS} or fewer a p99 lies between the two slowest requests, a "
        "near-maximum, not a tail estimate (more `load.requests` per point give one)"
    ]


def device_count_note(points: pd.DataFrame, baseline: str | None) -> list[str]:
    """A note naming the configurations whose speedup sets more (or fewer) devices against the baseline."""
    if baseline is None or "devices" not in points.columns or points["speedup_per_device"].isna().all():
        return []
    n_base = points.loc[points["config"] == baseline, "devices"].iloc[0]
    other = points.dropna(subset=["speedup_per_device"]).drop_duplicates("config")
    said = ", ".join(
        f"{c} ({int(n)} devices)" for c, n in zip(other["config"], other["devices"], strict=True)
    )
    return [
        f"speedup sets {said} against the baseline's {int(n_base)} device(s); "
        "see 'speedup per device' for a device against a device"
    ]


def caveats(points: pd.DataFrame) -> list[str]:
    """What the table's cells do not show: runs that did not finish, points measured after a resume, and
    points with failed requests (their numbers cover the successes only)."""
    out = []
    if "run_status" in points.columns:
        for run_id, status in dict(zip(points["run_id"], points["run_status"], strict=True)).items():
            if status != "complete":
                out.append(f"run {run_id} is {status}: only its finished points are shown")
    if "attempt" in points.columns:  # resumed runs: a restarted engine measured these
        later = points[points["attempt"].fillna(0) > 0]
        for run_id, ids in later.groupby("run_id", sort=False)["point_id"]:
            out.append(f"run {run_id}: {', '.join(map(str, ids))} measured after a resume (engine restarted)")
    if {"errors", "requests"} <= set(points.columns):
        for _, r in points[points["errors"].fillna(0) > 0].iterrows():
            bad, n = int(r["errors"]), int(r["requests"])
            said = (
                f"all {n} measured requests failed: it measured nothing"
                if bad >= n
                else f"{bad} of {n} measured requests failed; its numbers cover the others only"
            )
            out.append(f"run {r['run_id']} point {r['point_id']}: {said}")
    return out


def pivot(points: pd.DataFrame) -> pd.DataFrame:
    """Rows ROW_KEYS (loads in numeric order), columns (metric, config) for the metrics present."""
    metrics = [m for m, _, _ in METRICS if m in points.columns]
    configs = list(dict.fromkeys(points["config"]))
    wide = points.pivot_table(index=ROW_KEYS, columns="config", values=metrics, aggfunc="first", dropna=False)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([metrics, configs]))
    present = set(zip(*(points[k] for k in ROW_KEYS), strict=True))
    return wide.reindex(sorted(present, key=_row_order))


def _row_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Rows by ROW_KEYS: text for model and precision, numbers for workload and load."""
    row = dict(zip(ROW_KEYS, key, strict=True))
    return (
        str(row["model"]),
        str(row["precision"]),
        _workload_order(str(row["workload"])),
        _load_order(str(row["load"])),
    )


def _workload_order(workload: str) -> tuple[int, float, float, str]:
    """`64/16` before `512/32` (by the numbers, not the text), datasets after the token lengths."""
    try:
        a, b = workload.split("/")
        return (0, float(a), float(b), "")
    except ValueError:
        return (1, 0.0, 0.0, workload)


def compare_runs(
    runs: list[str | Path],
    baseline: str | None = None,
    prices_usd_per_hour: dict[str, float] | None = None,
    utilization: float = 1.0,
    usd_per_kwh: float | None = None,
    bandwidth_gbs: dict[str, float] | None = None,
    price_origins: dict[str, str] | None = None,
    reruns: str = "newest",
) -> Comparison:
    """`price_origins`: where each device's $/hour came from (a flag, a file, the catalog), for the notes
    that say which price the $/1M tokens rows use. `reruns`: what a cell shows where several runs measured
    it, the newest run's point or the median over them (`dedupe`)."""
    return compare_points(
        points_frame(runs, bandwidth_gbs),
        baseline,
        prices_usd_per_hour,
        utilization,
        usd_per_kwh,
        price_origins,
        reruns,
    )


def compare_points(
    points: pd.DataFrame,
    baseline: str | None = None,
    prices_usd_per_hour: dict[str, float] | None = None,
    utilization: float = 1.0,
    usd_per_kwh: float | None = None,
    price_origins: dict[str, str] | None = None,
    reruns: str = "newest",
) -> Comparison:
    """`compare_runs` over the runs' points (`harness.runinfo.points_frame`)."""
    if points.empty:
        raise CompareError("no finished points in the given runs")
    points, notes = dedupe(points, reruns)
    if reruns == "newest":
        notes += caveats(points)
    usd = prices_usd_per_hour or {}
    for d in sorted(set(points["device"])):
        if d in usd:
            origin = (price_origins or {}).get(d)
            notes.append(f"price {d}: ${usd[d]:g}/device-hour" + (f" ({origin})" if origin else ""))
        else:
            notes.append(f"no price for {d}: no $/1M tokens for its points (give --price {d}=USD_PER_HOUR)")
    notes += unused_override_notes(price_origins or {}, points["device"])
    if utilization != 1 and set(points["device"]) & set(usd):
        notes.append(
            f"$/1M tokens assume the devices busy {utilization:g} of the hours rented (--utilization "
            f"{utilization:g}): x{1 / utilization:.4g} what they would be if always busy"
        )
    points = add_cost_columns(points, usd, utilization, usd_per_kwh)
    base = None
    if baseline:
        devs = dict(zip(points["config"], points["device"], strict=True))
        base = choose_baseline(list(dict.fromkeys(points["config"])), devs, baseline)
    points = add_speedup(points, base)
    notes += rate_rows_note(points, base) + rate_rows_cost_note(points) + device_count_note(points, base)
    notes += within_spread_note(points, base)
    notes += host_cpu_notes(points)
    notes += above_roofline_notes(points)
    if "energy_j_per_output_token" not in points.columns or points["energy_j_per_output_token"].isna().all():
        notes.append("no energy measured in these runs (no GPU or CPU energy telemetry): no J/token")
    elif "energy_scope" in points.columns:
        notes += energy_scope_notes(points)
    return Comparison(
        points.reset_index(drop=True), pivot(points), base, notes, few_requests_for_p99_note(points)
    )


def host_cpu_notes(points: pd.DataFrame) -> list[str]:
    """A note per device whose configurations ran on different host CPUs: CPUs the catalog does not know
    all go by `cpu`, so two engines measured on two machines would read as two engines on one, and their
    ratio as the engines' alone."""
    if "host_cpu" not in points.columns:
        return []
    out = []
    for device, rows in points.dropna(subset=["host_cpu"]).groupby("device", sort=True):
        hosts = rows.groupby("config", sort=True)["host_cpu"].agg(lambda s: " / ".join(sorted(set(s))))
        if rows["host_cpu"].nunique() > 1 and len(hosts) > 1:
            said = "; ".join(f"{cfg}: {h}" for cfg, h in hosts.items())
            out.append(
                f"{device}: the configurations ran on different host CPUs ({said}): ratios between them "
                "measure the machines as well as the engines"
            )
    return out


# % of the decode roofline past which a point is said to be above it: a few % over can be the catalog's
# nominal bandwidth or the bytes counted per step, well over is a ceiling for something else
ABOVE_ROOFLINE_PCT = 110.0


def above_roofline_notes(points: pd.DataFrame) -> list[str]:
    """A note for each point measured above its decode ceiling: no engine decodes faster than its weights
    can be read, so the ceiling was worked out for other hardware, precision or model than ran (a
    `hardware.gpu` that is not the machine's, a quantized file taken for its catalog precision)."""
    if "pct_roofline" not in points.columns:
        return []
    over = points[points["pct_roofline"] > ABOVE_ROOFLINE_PCT]
    return [
        f"run {r['run_id']} point {r['point_id']}: {r['pct_roofline']:.0f}% of its roofline, above the "
        f"ceiling: the hardware ({r['device']}, or a --bandwidth given for it), precision or model it was "
        "worked out for is likely not what ran"
        for _, r in over.iterrows()
    ]


def energy_scope_notes(points: pd.DataFrame) -> list[str]:
    """A note when the J/token of the configurations compared count different things: GPUs alone, the
    CPU packages alone, or both (RAPL is readable on some hosts and not others), or incomplete windows."""
    known = points.dropna(subset=["energy_j_per_output_token"])
    scopes = known.groupby("config")["energy_scope"].agg(lambda s: "/".join(sorted(set(s.dropna()))))
    out = []
    if scopes.nunique() > 1:
        said = "; ".join(f"{cfg}: {sc}" for cfg, sc in scopes.items())
        out.append(f"J/token counts different energy per configuration ({said}): compare with care")
    if (points["energy_scope"] == "incomplete").any():
        out.append("some points have no J/token: a GPU's energy was unknown in their window")
    return out


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
        console.print(f"note: {n}", markup=False, highlight=False)
