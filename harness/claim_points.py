"""Which measured points meet a claim (`match_points`), why none does (`no_match_reason`), and the
one set beside it (`best_point`): reruns as one, doubted points passed over for clean ones."""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from harness.catalog.claims import Claim, Side
from harness.compare import ROW_KEYS, median_of_reruns, split_settings
from harness.compare_notes import ABOVE_ROOFLINE_PCT
from harness.flags import client_saturated
from harness.formatting import fmt
from harness.rundevice import offloaded
from harness.runinfo import at_rate
from harness.served import EXTERNAL, declared_doubt, launched_engine, served_engine, undeclared_hint

# what a claim (or one side of a ratio) is about: model, device, devices, engine, precision, concurrency
# (None: any)
Want = tuple[str, str | None, int | None, str | None, str | None, int | None]


def claim_want(c: Claim, side: Side | None = None) -> Want:
    """What the claim is about, or one side of a ratio claim (its own device, count and precision)."""
    if side is None:
        return c.model, c.device, c.devices, c.engine, lower_precision(c.precision), c.concurrency
    return c.model, side.device, side.devices, c.engine, lower_precision(side.precision), c.concurrency


def lower_precision(precision: str | None) -> str | None:
    """A claim's precision as points tables write it (`FP8` is `fp8`)."""
    return precision.lower() if precision else precision


def claim_conditions(
    points: pd.DataFrame, want: Want, c: Claim | None = None
) -> list[tuple[str, str | None, pd.Series]]:
    """(how it reads, the column, which points meet it) for each condition `want` sets beyond the model,
    then those of the claim `c`: weights offloaded to the host for an offload claim, none for the others
    (a GPU streaming its weights over PCIe measures the link), and its latency limits (p99 TTFT, TPOT)."""
    out = want_conditions(points, want)
    if c is None:
        return out
    off = offloaded(points)
    if c.kind == "offload":
        out.append(("with weights offloaded to the host", None, off))
    else:
        out.append(("without weights offloaded to the host", None, ~off))
    for limit, col, said in ((c.ttft_p99_s, "ttft_s_p99", "TTFT"), (c.tpot_p99_s, "tpot_s_p99", "TPOT")):
        if limit is not None:
            values = points[col] if col in points.columns else pd.Series(math.nan, index=points.index)
            out.append((f"with p99 {said} <= {limit:g} s", col, values <= limit))
    return out


def want_conditions(points: pd.DataFrame, want: Want) -> list[tuple[str, str | None, pd.Series]]:
    _, device, n, engine, precision, concurrency = want
    engines = launched_engine(points) if engine == EXTERNAL else served_engine(points)
    asked = (
        (device, f"on {device}", "device", points["device"]),
        (n, f"on {n} device(s)", "devices", points["devices"]),
        (engine, f"on engine {engine}", "engine_label", engines),
        (precision, f"at {precision}", "precision", points["precision"]),
        (concurrency, f"at concurrency {concurrency}", "concurrency", points["concurrency"]),
    )
    return [(said, col, values == value) for value, said, col, values in asked if value is not None]


def at_rate_points(points: pd.DataFrame) -> pd.Series:
    """Which points ran at an arrival rate (their tok/s is the rate offered, not a capacity)."""
    if "load" not in points.columns:
        return pd.Series(False, index=points.index)
    return at_rate(points["load"])


def match_points(points: pd.DataFrame, want: Want, c: Claim | None = None) -> pd.DataFrame:
    """The points of the model at a concurrency that meet every condition of `want` (and of the claim
    `c`: `claim_conditions`) and measured a tok/s."""
    if points.empty:
        return points
    m = points["model"] == want[0]
    for _, _, meets in claim_conditions(points, want, c):
        m &= meets
    out = points[m & points["output_tok_s"].notna() & ~at_rate_points(points)]
    if want[3] not in (None, EXTERNAL) and not out.empty:  # an engine asked: one only declared is doubted
        out = out.assign(engine_declared=[declared_doubt(r) for _, r in out.iterrows()])
    return out


def no_match_reason(points: pd.DataFrame, want: Want, c: Claim | None = None) -> str:
    """Why `match_points` finds nothing: the first of its conditions no point meets, with what the points have
    instead ('' when some point matches, or there are no points at all: nothing to explain)."""
    if points.empty:
        return ""

    def has(df: pd.DataFrame, col: str) -> str:
        if col not in df.columns:  # a run from before the harness wrote it
            return "none"
        return ", ".join(sorted({fmt(v, "num") for v in df[col].dropna()})) or "none"

    model = want[0]
    m = points["model"] == model
    if not m.any():
        return f"no run of {model}; runs of: {has(points, 'model')}"
    for said, col, meets in claim_conditions(points, want, c):
        if not (m & meets).any():
            hint = undeclared_hint(points[m], str(want[3])) if col == "engine_label" else ""
            return f"no {model} point {said}" + (f"; measured: {has(points[m], col)}" if col else "") + hint
        m &= meets
    measured = m & points["output_tok_s"].notna()
    if not measured.any():
        return f"no {model} point with a measured tok/s"
    if at_rate_points(points)[measured].all():
        return f"{model} measured at arrival rates only: their tok/s is the rate offered, not a capacity"
    return ""


def unmatched_cell(reason: str) -> str:
    """The measured cell of a claim no point matches: `-`, and why."""
    return f"- ({reason})" if reason else "-"


def reruns_as_one(points: pd.DataFrame) -> pd.DataFrame:
    """One row per point that several runs measured under the same configuration and settings: the
    median of their numbers, with how many runs and their tok/s range (compare's `--reruns median`).
    Points that measured nothing (every request failed) are no part of a median: their failures are not
    the measured runs'. They stay beside the medians, for `no_match_reason` to tell a point that failed
    from one never run (`match_points` passes them over)."""
    if points.empty or "output_tok_s" not in points.columns:
        return points
    measured = points["output_tok_s"].notna()
    missing = [k for k in [*ROW_KEYS, "config", "started_utc"] if k not in points.columns]
    split, _ = split_settings(points[measured].reindex(columns=[*points.columns, *missing]))
    one, _ = median_of_reruns(split.sort_values("started_utc", kind="stable"))
    return pd.concat([one.drop(columns=missing), points[~measured]], ignore_index=True)


# share of a point's requests that may fail before its tok/s stops measuring the claim (the others' tok/s)
FAILED_SHARE = 0.05


def doubts(r: pd.Series) -> list[str]:
    """Why a matching point's tok/s may not measure what a claim states, as `compare` notes it: failed
    requests beyond `FAILED_SHARE`, a tok/s above its decode roofline (the hardware, precision or model
    is likely not what ran), a client near saturation, outputs shorter than asked, a GPU the run took
    from its scenario without seeing it, an engine a scenario declared behind an external endpoint (for a
    claim naming an engine, `match_points` notes it as `engine_declared`)."""
    out = []
    errors, requests = table_count(r.get("errors")), table_count(r.get("requests"))
    if errors and requests and errors > FAILED_SHARE * requests:
        out.append(f"{errors} of {requests} requests failed")
    pct = r.get("pct_roofline")
    if isinstance(pct, numbers.Real) and float(pct) > ABOVE_ROOFLINE_PCT:  # NaN compares False
        out.append(f"{pct:.0f}% of its roofline: likely not the hardware, precision or model named")
    if client_saturated(r):
        out.append("the client near saturation")
    if short := table_count(r.get("short_outputs")):
        out.append(f"{short} outputs shorter than asked")
    if r.get("device_declared") in (True, 1):
        out.append(f"{r['device']} as the scenario declared it: the GPU it ran on was not recorded")
    if isinstance(declared := r.get("engine_declared"), str):
        out.append(declared)
    return out


def best_point(df: pd.DataFrame) -> dict[str, Any] | None:
    """The matching point of highest output tok/s among those without `doubts` (of all of them where
    every one has some): its tok/s, device count, doubts, and where it was measured (workload and load,
    with how many of its requests failed, where some did: its tok/s counts the others only; and, for a
    median of reruns, how many and their range)."""
    if df.empty:
        return None
    doubted = {i: doubts(r) for i, r in df.iterrows()}
    clean = df[[not doubted[i] for i in df.index]]
    pick = clean if not clean.empty else df
    r = pick.sort_values("output_tok_s", kind="stable").iloc[-1]
    said = doubted[r.name]
    prec = f" {r['precision']}" if "precision" in r and isinstance(r["precision"], str) else ""
    work = f" {r['workload']}" if isinstance(r.get("workload"), str) else ""
    errors, requests, devices, runs = (
        table_count(r.get(k)) for k in ("errors", "requests", "devices", "reruns")
    )
    failed = f"; {errors}{'' if requests is None else f' of {requests}'} requests failed" if errors else ""
    median = ""
    if runs and runs > 1:
        low, high = fmt_tok(float(r["output_tok_s_min"])), fmt_tok(float(r["output_tok_s_max"]))
        median = f"median of {runs} runs, {low}-{high} tok/s: "
    return {
        "tok_s": float(r["output_tok_s"]),
        "devices": devices or 1,
        "precision": r.get("precision") if isinstance(r.get("precision"), str) else None,
        "doubts": said,
        "settings": r.get("settings"),
        "where": f"{r['config']}{prec}{work} {r['load']} ({median}{r['run_id']}{failed})",
    }


def doubted_verdict(verdict: str, best: dict[str, Any] | None) -> str:
    """A verdict on a measured point, with why that point may not measure the claim where it has doubts."""
    if best is None or not best["doubts"]:
        return verdict
    return f"{verdict}; doubtful: {'; '.join(best['doubts'])}"


def table_count(x: Any) -> int | None:
    """A table count as an int (numpy's too); None where absent or NaN."""
    return int(float(x)) if isinstance(x, numbers.Real) and not isinstance(x, bool) and x == x else None


def fmt_tok(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"
