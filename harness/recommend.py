"""`harness recommend`: rank hardware by $/1M output tokens among the options that meet the SLOs.

For each GPU with a price, each precision and each tensor-parallel size whose weights fit
(weights / TP <= memory x 0.9) — the two smallest such sizes, and any larger one a run measured —
at the expected concurrency B:

* measured, when a run has the same model, device, precision, device count and concurrency, and
  (where the points record it) the same mean input and output lengths: output tok/s, TTFT p99 and
  TPOT p99 from the run; a measured point with failed requests does not meet the SLOs (its
  percentiles cover only the requests that succeeded);
* else a roofline estimate (labelled so): tok/s = B / t_step(B) and TPOT = t_step(B) from
  harness.roofline.decode_bound at context = input + output / 2, TTFT = prefill of one prompt +
  one decode step. These are best cases (upper bound on tok/s, lower bound on latency and cost),
  scaled by `efficiency` (achievable share of peak bandwidth and FLOP/s).

$/1M tokens = price x TP / (tok/s x 3600) x 1e6 (harness.cost). Options whose KV cache cannot hold
B sequences at input + output tokens are marked and do not meet the SLOs: for an estimate, the KV cache
the engine allocated in a run of the same model, device, precision and device count (at any load, as
vLLM logs it) where there is one, else the roofline's room beside the weights.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import pandas as pd

from harness.catalog import ModelArch
from harness.catalog.hardware import Device, devices, gpus
from harness.cost import usd_per_million_tokens
from harness.roofline import Shape, decode_bound, prefill_bound
from harness.rundevice import offloaded

MEMORY_UTILIZATION = 0.9


@dataclass(frozen=True)
class Need:
    model: ModelArch
    concurrency: int
    input_tokens: int
    output_tokens: int
    ttft_s: float | None
    tpot_s: float | None


def article_rule(need: Need) -> str:
    """The article's qualitative framework, for reference beside the numbers."""
    big = need.model.params_b > 13
    fast = need.ttft_s is not None and need.ttft_s < 1.0
    many = need.concurrency > 10
    if big or fast or many:
        why = [
            w
            for w, on in (("> 13B parameters", big), ("sub-second latency", fast), ("> 10 users", many))
            if on
        ]
        return f"article's rule of thumb: H100 ({', '.join(why)})"
    return "article's rule of thumb: A100 (< 13B parameters, moderate concurrency, budget)"


def _same_config(points: pd.DataFrame, need: Need, dev: str, precision: str, tp: int) -> pd.Series:
    """Rows of this model on `tp` devices `dev` at `precision`."""
    return (
        (points["model"] == need.model.name)
        & (points["device"] == dev)
        & (points["precision"] == precision)
        & (points["devices"] == tp)
    )


def _measured(points: pd.DataFrame, need: Need, dev: str, precision: str, tp: int) -> pd.Series | None:
    if points.empty:
        return None
    m = _same_config(points, need, dev, precision, tp) & (points["concurrency"] == need.concurrency)
    # the lengths of the asked workload exactly (a dataset run's measured means rarely are: it is then
    # not taken for this workload)
    for col, want in (
        ("workload_input_tokens", need.input_tokens),
        ("workload_output_tokens", need.output_tokens),
    ):
        if col in points.columns:
            m &= points[col] == want
    m &= ~offloaded(points)  # weights read over the host link: another configuration
    sub = points[m]
    if sub.empty:
        return None
    # the newest run that measured something: one whose every request failed does not hide an earlier
    # run's measurement (as in compare)
    measured = sub[sub["output_tok_s"].notna()]
    if measured.empty:
        return sub.sort_values("started_utc").iloc[-1]
    newest = measured[measured["run_id"] == measured.sort_values("started_utc").iloc[-1]["run_id"]]
    return _best_of(newest, need)


def _best_of(rows: pd.DataFrame, need: Need) -> pd.Series:
    """Of one run's points for one option (its variants: another batch size, KV cache dtype, flag), the
    one the option is best served by: no failed requests, then within the SLOs, then the most tok/s.
    `_of` says how many there were."""
    every = pd.Series(True, index=rows.index)

    def within(col: str, limit: float | None) -> pd.Series:
        return rows[col] <= limit if limit is not None and col in rows.columns else every

    rank = rows.assign(
        _ok=rows["errors"].fillna(0) == 0 if "errors" in rows.columns else every,
        _slo=within("ttft_s_p99", need.ttft_s) & within("tpot_s_p99", need.tpot_s),
    )
    best = rank.sort_values(["_ok", "_slo", "output_tok_s"], kind="stable").iloc[-1].drop(["_ok", "_slo"])
    best["_of"] = len(rows)
    return best


def _measured_kv_tokens(
    points: pd.DataFrame, need: Need, dev: str, precision: str, tp: int
) -> tuple[int, str] | None:
    """The KV cache (tokens) the engine allocated in the latest run of this model, device, precision
    and device count, at any load (vLLM logs it at start-up), and that run's id."""
    if points.empty or "kv_cache_tokens" not in points.columns:
        return None
    m = _same_config(points, need, dev, precision, tp) & points["kv_cache_tokens"].notna()
    sub = points[m]
    if sub.empty:
        return None
    last = sub.sort_values("started_utc").iloc[-1]
    return int(last["kv_cache_tokens"]), str(last["run_id"])


def weights_fit(need: Need, dev: Device, precision: str, devices: int) -> bool:
    """The model's weights at `precision`, split over `devices`, fit in each device's usable memory
    (recommend ranks only such device counts)."""
    weight = Shape.of(need.model).weight_bytes(precision)
    mem = dev.memory_bytes
    return mem is not None and mem > 0 and weight / devices <= mem * MEMORY_UTILIZATION


def unused_run_notes(
    points: pd.DataFrame,
    need: Need,
    used: set[str],
    precisions: tuple[str, ...],
    only: tuple[str, ...] = (),
    priced: frozenset[str] | None = None,
    tps: tuple[int, ...] = (1, 2, 4, 8),
) -> list[str]:
    """Why each run given was not taken as a measurement of the asked workload (else it would go
    unsaid, and its numbers look considered): the first filter of `recommend` its points all fail, or,
    where some point passes them all, that a newer run of that configuration was taken."""
    if points.empty or "run_id" not in points.columns:
        return []
    catalog = gpus()
    ranked = [k for k in catalog if not only or k in only]

    asked = (float(need.input_tokens), float(need.output_tokens))

    def lengths(r: pd.Series) -> tuple[float, float] | None:
        v = (r.get("workload_input_tokens"), r.get("workload_output_tokens"))
        return (float(v[0]), float(v[1])) if all(isinstance(x, numbers.Real) for x in v) else None

    def said(v: tuple[float, float] | None) -> str:
        return "?/?" if v is None else f"{v[0]:g}/{v[1]:g}"

    out = []
    for run_id, sub in points.groupby("run_id", sort=True):
        if str(run_id) in used:
            continue
        steps: list[tuple[pd.DataFrame, str]] = []
        sub = sub[sub["model"] == need.model.name]
        steps.append((sub, f"measures another model than {need.model.name}"))
        dev = sub[sub["device"].isin(ranked)]
        steps.append(
            (
                dev,
                "ran on a device that is not ranked (GPUs of the catalog" + (", --gpu" if only else "") + ")",
            )
        )
        unpriced = sorted(set(map(str, dev["device"])))
        dev = dev[dev["device"].isin(priced)] if priced is not None else dev
        steps.append((dev, f"no price for {', '.join(unpriced)} (give --price DEVICE=USD_PER_HOUR)"))
        have_prec = ", ".join(sorted(set(map(str, dev["precision"]))))
        prec = dev[dev["precision"].isin(precisions)]
        if have_prec == "auto":  # an external endpoint, a vLLM log that did not say: no precision to rank
            steps.append((prec, "its precision is not recorded (auto), so recommend cannot rank it"))
        steps.append((prec, f"precision {have_prec} not asked (--precision)"))
        have_n = ", ".join(str(int(n)) for n in sorted(set(prec["devices"].dropna())))
        tp = prec[prec["devices"].isin(tps)]
        steps.append(
            (tp, f"{have_n} device(s): not among the device counts ranked ({', '.join(map(str, tps))})")
        )
        fit = [
            weights_fit(need, catalog[str(r["device"])], str(r["precision"]), int(r["devices"]))
            for _, r in tp.iterrows()
        ]
        held = tp[fit] if not tp.empty else tp
        steps.append(
            (held, "its weights do not fit on its device count, which recommend does not rank (offloaded?)")
        )
        tp = held
        have_c = ", ".join(str(int(c)) for c in sorted(set(tp["concurrency"].dropna())))
        conc = tp[tp["concurrency"] == need.concurrency]
        steps.append((conc, f"no point at concurrency {need.concurrency} (has {have_c or 'none'})"))
        got = {said(lengths(r)) for _, r in conc.iterrows()}
        work = conc[[lengths(r) == asked for _, r in conc.iterrows()]] if not conc.empty else conc
        steps.append((work, f"workload {', '.join(sorted(got))} tokens, not the {said(asked)} asked"))
        work = work[~offloaded(work)]
        steps.append(
            (work, "it offloads weights to host memory (recommend ranks GPU-resident configurations)")
        )
        steps.append(
            (work[work["output_tok_s"].notna()], "it measured nothing (every measured request failed)")
        )
        why = next((reason for frame, reason in steps if frame.empty), None)
        if why is None:
            why = "a newer run of this option (model, device, precision, device count, load) was taken"
        out.append(f"run {run_id} not used: {why}")
    return out


@dataclass(frozen=True)
class Estimate:
    output_tok_s: float
    ttft_s: float
    tpot_s: float
    kv_fits: bool
    basis: str


MIN_EFFICIENCY = 0.01  # the lowest --efficiency the CLI takes


def efficiency_note(reached: list[float], efficiency: float, estimated: bool) -> list[str]:
    """Where measured options sit beside ideal roofline estimates: what share of their own ceiling the
    measured ones reached, and the --efficiency that puts the estimates on that footing."""
    if not reached or not estimated or efficiency != 1.0:
        return []
    lo, hi = min(reached), max(reached)
    if lo >= 1.0:  # at or above their ceilings: nothing to scale the estimates down by
        return []
    span = f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"{lo:.0%}-{hi:.0%}"
    suggest = max(MIN_EFFICIENCY, lo)  # what --efficiency takes
    return [
        f"measured options reached {span} of their roofline estimate; the estimates assume 100 %: "
        f"--efficiency {suggest:.2g} ranks them on the measured footing"
    ]


def _estimate(need: Need, dev: Device, precision: str, tp: int, efficiency: float) -> Estimate:
    shape = Shape.of(need.model)
    weight, step = shape.weight_bytes(precision), shape.step_bytes(precision)
    ctx = need.input_tokens + need.output_tokens / 2
    b = decode_bound(
        shape, dev, weight, tp, need.concurrency, ctx, 2.0, efficiency, precision, step_bytes=step
    )
    full = decode_bound(
        shape,
        dev,
        weight,
        tp,
        need.concurrency,
        need.input_tokens + need.output_tokens,
        2.0,
        efficiency,
        precision,
        step_bytes=step,
    )
    pre = prefill_bound(shape, dev, step, need.input_tokens, tp, efficiency, precision)
    return Estimate(
        b.tok_s,
        pre["t_prefill_s"] + b.t_step_s,
        b.t_step_s,
        bool(full.fits),
        f"roofline estimate (efficiency {efficiency:g})",
    )


def _measured_estimate(
    got: pd.Series, need: Need, dev: Device, p: str, tp: int, used: set[str], reached: list[float]
) -> tuple[Estimate, int, int]:
    """An option a run measured: its tok/s and p99 latencies, and (failed, total) requests. Notes the run
    as used, and what share of the option's roofline it reached."""
    used.add(str(got["run_id"]))
    failed, total = _count(got.get("errors")), _count(got.get("ok"))
    total += failed
    est = Estimate(
        float(got["output_tok_s"]),
        float(got.get("ttft_s_p99", math.nan)),
        float(got.get("tpot_s_p99", math.nan)),
        True,
        f"measured ({got['run_id']}{_variant_said(got)}, {_p99_said(_count(got.get('ok')))})",
    )
    ceiling = _estimate(need, dev, p, tp, 1.0).output_tok_s
    if ceiling > 0 and est.output_tok_s == est.output_tok_s:
        reached.append(est.output_tok_s / ceiling)
    return est, failed, total


def _p99_said(n: int) -> str:
    """What a measured option's latencies are: p99s, and over how many requests (up to 100 a p99 lies
    between the two slowest, harness.compare_notes.P99_BETWEEN_SLOWEST_MAX_REQUESTS)."""
    return f"p99 of {n} requests" if n else "p99 latencies"


def _count(v: object) -> int:
    """A request count from a points row; 0 where the row has none (absent, empty, NaN)."""
    return int(float(v)) if isinstance(v, numbers.Real) and v == v else 0


def _variant_said(got: pd.Series) -> str:
    """Which of a run's configurations of one option was taken, where it had several."""
    of = int(got.get("_of", 1))
    label = str(got.get("variant_label") or "").strip()
    return f" {label}, the best of {of} configurations" if of > 1 and label else ""


def _catalog_estimate(
    points: pd.DataFrame,
    need: Need,
    key: str,
    dev: Device,
    p: str,
    tp: int,
    efficiency: float,
    used: set[str],
) -> Estimate:
    """An option no run measured: the roofline estimate, with the KV cache room a run of it measured where
    one did (the engine's own allocation, over the estimate's)."""
    est = _estimate(need, dev, p, tp, efficiency)
    if kv := _measured_kv_tokens(points, need, key, p, tp):
        used.add(kv[1])
        held = need.concurrency * (need.input_tokens + need.output_tokens)
        est = replace(
            est,
            kv_fits=kv[0] >= held,
            basis=f"{est.basis}; KV cache measured ({kv[0]:,} tokens, {kv[1]})",
        )
    return est


def _why_not(need: Need, est: Estimate, failed: int, total: int) -> list[str]:
    """Why an option does not meet the need (none: it does)."""
    why = []
    if failed:
        why.append(f"{failed} of {total} measured requests failed")
    if not est.kv_fits:
        ctx = need.input_tokens + need.output_tokens
        why.append(f"KV cache for {need.concurrency} x {ctx} tokens does not fit")
    if need.ttft_s is not None and not est.ttft_s <= need.ttft_s:
        why.append(f"TTFT {est.ttft_s * 1000:.0f} ms > {need.ttft_s * 1000:.0f} ms")
    if need.tpot_s is not None and not est.tpot_s <= need.tpot_s:
        why.append(f"TPOT {est.tpot_s * 1000:.1f} ms > {need.tpot_s * 1000:.1f} ms")
    return why


# the columns of `recommend`'s ranking (also when no option is ranked)
RANKED_COLUMNS = (
    "device",
    "devices",
    "precision",
    "output_tok_s",
    "ttft_s",
    "tpot_s",
    "usd_per_device_hour",
    "usd_per_1m_tokens",
    "meets_slo",
    "why_not",
    "basis",
)


def recommend(
    need: Need,
    prices_usd_per_hour: dict[str, float],
    points: pd.DataFrame | None = None,
    precisions: tuple[str, ...] = ("bf16", "fp8"),
    tps: tuple[int, ...] = (1, 2, 4, 8),
    efficiency: float = 1.0,
    only: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Ranked options (meeting the SLOs first, cheapest first) and notes on what was left out."""
    points = points if points is not None else pd.DataFrame()
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    used: set[str] = set()  # runs whose points a row took
    reached: list[float] = []  # measured tok/s over the roofline estimate of the same option
    weights_gb = {p: Shape.of(need.model).weight_bytes(p) / 1e9 for p in precisions}
    unpriced: list[str] = []  # catalog GPUs without a price: not ranked
    for key, dev in gpus().items():
        if only and key not in only:
            continue
        price = prices_usd_per_hour.get(key)
        if price is None:
            unpriced.append(key)
            continue
        for p in precisions:
            fitting = [tp for tp in tps if weights_fit(need, dev, p, tp)]
            # estimates for the two smallest TP sizes that fit (with ideal scaling larger ones tie on
            # $/token and only crowd the table), measurements for every TP size that has one
            found = {tp: _measured(points, need, key, p, tp) for tp in fitting}
            for tp in [t for i, t in enumerate(fitting) if i < 2 or found[t] is not None]:
                got = found[tp]
                if got is not None:
                    est, failed, total = _measured_estimate(got, need, dev, p, tp, used, reached)
                else:
                    est, failed, total = (
                        _catalog_estimate(points, need, key, dev, p, tp, efficiency, used),
                        0,
                        0,
                    )
                why = _why_not(need, est, failed, total)
                rows.append(
                    {
                        "device": key,
                        "devices": tp,
                        "precision": p,
                        "output_tok_s": est.output_tok_s,
                        "ttft_s": est.ttft_s,
                        "tpot_s": est.tpot_s,
                        "usd_per_device_hour": price,
                        "usd_per_1m_tokens": usd_per_million_tokens(price, est.output_tok_s, tp),
                        "meets_slo": not why,
                        "why_not": "; ".join(why),
                        "basis": est.basis,
                    }
                )
            if not fitting:
                notes.append(f"{key} {p}: {weights_gb[p]:.0f} GB of weights do not fit on {max(tps)} devices")
    if unpriced:  # one line: the catalog's GPUs without a price, the same on every call
        notes.append(f"not ranked, no price: {', '.join(unpriced)} (give --price {unpriced[0]}=USD_PER_HOUR)")
    notes += unused_run_notes(points, need, used, precisions, only, frozenset(prices_usd_per_hour), tps)
    notes += efficiency_note(
        reached, efficiency, any(not str(r["basis"]).startswith("measured") for r in rows)
    )
    df = pd.DataFrame(rows, columns=list(RANKED_COLUMNS))
    if not df.empty:
        # TP 1 and TP 2 tie in the ideal roofline but for the last bits; nine significant digits (not
        # decimals, which overflow to a tie of infinities on huge prices) make them equal
        df["_cost"] = df["usd_per_1m_tokens"].map(lambda usd: float(f"{usd:.9g}"))
        df = df.sort_values(["meets_slo", "_cost", "devices"], ascending=[False, True, True])
        df = df.drop(columns="_cost").reset_index(drop=True)
    return df, notes


def vendor_notes(shown: pd.DataFrame) -> list[str]:
    """A note for each GPU of another vendor than NVIDIA among the rows shown: what running it takes."""
    if shown.empty:
        return []
    catalog = devices()
    keys = [
        k
        for k in dict.fromkeys(shown["device"])
        if k in catalog and catalog[k].kind == "gpu" and catalog[k].vendor != "nvidia"
    ]
    return [
        f"{k} is an {catalog[k].vendor.upper()} GPU: `harness cloud launch` needs --image with an engine "
        "built for it, and its runs have no GPU power or energy (the telemetry is NVIDIA's NVML)"
        for k in keys
    ]
