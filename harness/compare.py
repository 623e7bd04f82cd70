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

from harness.catalog.prices import unused_override_notes
from harness.compare_notes import (
    above_roofline_notes,
    caveats,
    device_count_note,
    energy_scope_notes,
    few_requests_for_p99_note,
    host_cpu_notes,
    rate_rows_note,
)
from harness.cost import add_cost_columns, rate_rows_cost_note
from harness.runinfo import at_rate, points_frame

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


_UNRECORDED = object()  # a field a run's settings lack: its harness did not write it


def differing(objs: list[Any], at: str = "") -> dict[str, list[str | None]]:
    """Dotted paths where the settings `objs` differ, with each one's value there as JSON (None where it
    lacks the field). A field added to the harness between runs is no difference by itself: it differs
    where two runs that have it differ (the runs without it are then shown apart too, their value not
    known). A field that is a mapping in one and a value in another (a length drawn from a distribution
    against a fixed one) differs as a whole."""
    present = [o for o in objs if o is not _UNRECORDED]
    if present and all(isinstance(o, dict) for o in present):
        out: dict[str, list[str | None]] = {}
        for k in sorted(set().union(*present)):
            sub = [_UNRECORDED if o is _UNRECORDED else o.get(k, _UNRECORDED) for o in objs]
            if sum(x is not _UNRECORDED for x in sub) > 1:
                out.update(differing(sub, f"{at}.{k}" if at else k))
        return out
    values = [None if o is _UNRECORDED else json.dumps(o, sort_keys=True) for o in objs]
    return {at: values} if len({v for v in values if v is not None}) > 1 else {}


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
        ordered = sorted(kinds)
        paths = differing([json.loads(s) for s in ordered])
        if not paths:
            continue
        differ = list(paths)
        more = " ..." if len(differ) > 3 else ""
        label = {
            s: f"{config} [" + " ".join(f"{k}={_as_written(paths[k][i])}" for k in differ[:3]) + f"{more}]"
            for i, s in enumerate(ordered)
        }
        mask = (out["config"] == config) & out["settings"].isin(list(kinds))
        out.loc[mask, "config"] = out.loc[mask, "settings"].map(label)
        notes.append(f"{config}: runs with other settings ({', '.join(differ[:3])}{more}) are shown apart")
    return out, notes


def _as_written(value_json: str | None) -> str:
    """A setting's value as a scenario writes it: text bare (`chat`), numbers as they are, and null,
    true and false as YAML spells them (not Python's None, True, False); `unrecorded` for a run whose
    harness did not write the field."""
    if value_json is None:
        return "unrecorded"
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


def missing_baseline_note(points: pd.DataFrame, baseline: str | None) -> list[str]:
    """The rows other configurations have and the baseline has not: their speedups are blank (rows are
    split by model, precision, workload and load: an H100 at fp8 has no bf16 A100 row to divide by)."""
    if baseline is None:
        return []
    have = set(zip(*(points.loc[points["config"] == baseline, k] for k in ROW_KEYS), strict=True))
    others = points[(points["config"] != baseline) & ~at_rate(points["load"])]
    lacking = list(
        dict.fromkeys(k for k in zip(*(others[k] for k in ROW_KEYS), strict=True) if k not in have)
    )
    if not lacking:
        return []
    rows = "; ".join(" | ".join(str(v) for v in k) for k in lacking)
    return [
        f"baseline {baseline} has no point at {rows}: no speedup there (rows are split by model, precision, "
        "workload and load; a run of the baseline there, or another --baseline, gives one)"
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
    notes += missing_baseline_note(points, base) + within_spread_note(points, base)
    notes += host_cpu_notes(points)
    notes += above_roofline_notes(points)
    if "energy_j_per_output_token" not in points.columns or points["energy_j_per_output_token"].isna().all():
        notes.append("no energy measured in these runs (no GPU or CPU energy telemetry): no J/token")
    elif "energy_scope" in points.columns:
        notes += energy_scope_notes(points)
    return Comparison(
        points.reset_index(drop=True), pivot(points), base, notes, few_requests_for_p99_note(points)
    )
