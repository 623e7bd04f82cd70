"""`harness claims`: each published claim beside a measurement when one matches, else its roofline.

A run matches a claim when its points have the claim's model, device, device count, engine,
precision and concurrency (fields the claim leaves null match anything), are within its latency limits,
and split their weights with host memory for an offload claim only (an external endpoint's engine is
the one its scenario declares, `engine.served_by`, and is doubted as such); the measured value is the
highest output tok/s among the matching points without `doubts` (among all where each has some, and
then said), reruns of a point counting as one, at their median (`reruns_as_one`: the luckiest of several
runs is not a measurement). Points at an arrival rate are not taken: their tok/s is the rate offered
while the engine keeps up, not what the hardware can do. The roofline check (harness.roofline) asks
whether the claimed tok/s is reachable at batch 1, from which batch it could be, and whether that
batch's KV cache fits beside the weights (memory_utilization 0.9). Where the claim does not state the
precision, bf16 and fp8 are both tried (the matched point's where one matched); where it does not state
the device count, the matched point's is taken, else one is assumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from harness.catalog import models
from harness.catalog.claims import Claim, Side
from harness.catalog.hardware import Device, devices
from harness.claim_points import (
    best_point,
    claim_want,
    doubted_verdict,
    fmt_tok,
    lower_precision,
    match_points,
    no_match_reason,
    reruns_as_one,
    unmatched_cell,
)
from harness.compare import differing
from harness.cost import usd_per_million_tokens
from harness.roofline import BYTES_PER_PARAM, Shape, decode_bound, min_batch_for

DEFAULT_CONTEXT_TOKENS = 1024.0
BOTH = ["bf16", "fp8"]  # the precisions tried where a claim states none
MEMORY_UTILIZATION = 0.9


@dataclass
class ClaimCheck:
    claim: Claim
    measured: str  # "-" when no run matches
    roofline: str
    verdict: str


def stated_to(value: float, got: float) -> bool:
    """Whether `got` rounds to `value` as the claim states it: within half a unit of its last decimal
    ($1.9 is 1.85 to 1.95, $5.56 is 5.555 to 5.565, $1e-05 is 0.5e-05 to 1.5e-05). A float keeps no
    trailing zeros, so "$4.00" reads as 4.0, held to 5 cents."""
    exponent = Decimal(repr(float(value))).as_tuple().exponent
    places = -exponent if isinstance(exponent, int) else 2
    return abs(got - value) <= 0.5 * 10.0**-places + 1e-12


def throughput_check(
    shape: Shape, dev: Device, n: int, precision: str, target: float, context: float
) -> dict[str, Any]:
    """Batch-1 ceiling, smallest batch reaching `target` and whether it fits, for one precision."""
    weight, step = shape.weight_bytes(precision), shape.step_bytes(precision)
    b1 = decode_bound(shape, dev, weight, n, 1, context, 2.0, 1.0, precision, step_bytes=step)
    mb = min_batch_for(target, shape, dev, weight, n, context, 2.0, 1.0, precision, step_bytes=step)
    fits_weights = dev.memory_bytes is None or weight / n <= dev.memory_bytes * MEMORY_UTILIZATION
    out = {"precision": precision, "batch1": b1.tok_s, "fits_weights": fits_weights, **mb}
    if not fits_weights:
        out["ok"], out["text"] = False, f"{precision}: weights {weight / n / 1e9:.0f} GB/device do not fit"
    elif target <= b1.tok_s:
        out["ok"], out["text"] = (
            True,
            f"{precision}: reachable at batch 1 (ceiling {fmt_tok(b1.tok_s)} tok/s)",
        )
    elif mb["min_batch"] is None:
        cap = min(mb["compute_cap_tok_s"], mb["memory_cap_tok_s"])
        out["ok"], out["text"] = (
            False,
            f"{precision}: above the ceiling at any batch (max {fmt_tok(cap)} tok/s)",
        )
    elif mb["max_batch"] is not None and mb["min_batch"] > mb["max_batch"]:
        out["ok"] = False
        out["text"] = (
            f"{precision}: batch-1 ceiling {fmt_tok(b1.tok_s)} tok/s; needs batch >= {mb['min_batch']} "
            f"but only {mb['max_batch']} fit at {context:g} tokens"
        )
    else:
        out["ok"] = True
        out["text"] = (
            f"{precision}: batch-1 ceiling {fmt_tok(b1.tok_s)} tok/s; reachable from batch "
            f">= {mb['min_batch']}" + (f" (up to {mb['max_batch']} fit)" if mb["max_batch"] else "")
        )
    return out


def _shape_dev(model: str, device: str | None) -> tuple[Shape | None, Device | None, str]:
    m = models().get(model)
    d = devices().get(device or "")
    if m is None:
        return None, None, f"no roofline: model {model!r} is not in models.yaml"
    if d is None:
        return None, None, f"no roofline: device {device!r} is not in hardware.yaml"
    return Shape.of(m), d, ""


def _throughput(c: Claim, target: float, precision: str | None, points: pd.DataFrame) -> tuple[str, str, str]:
    shape, dev, why = _shape_dev(c.model, c.device)
    want = claim_want(c)
    best = best_point(match_points(points, want, c))
    measured = (
        unmatched_cell(no_match_reason(points, want, c))
        if best is None
        else f"{fmt_tok(best['tok_s'])} tok/s at {best['where']}"
    )
    on = "" if best is None or c.devices or best["devices"] == 1 else f" on {best['devices']} devices"
    high = c.high if target == c.value else target
    got = "" if best is None else tok_s_vs_claimed(best["tok_s"], target, high) + on
    if shape is None or dev is None:
        return measured, why, doubted_verdict(got or "unchecked", best)
    # the roofline of what was measured where a point matches: its device count and precision
    n = c.devices or (best["devices"] if best else 1)
    tried = precision or (best["precision"] if best and best["precision"] in BYTES_PER_PARAM else None)
    ctx = c.context_tokens if c.context_tokens is not None else DEFAULT_CONTEXT_TOKENS
    checks = [throughput_check(shape, dev, n, p, target, ctx) for p in ([tried] if tried else BOTH)]
    assumed = "" if c.devices else ("1 device assumed; " if best is None else f"{n} device(s) as measured; ")
    text = f"context {ctx:g} tokens; " + assumed + "; ".join(ch["text"] for ch in checks)
    more = None
    if not c.devices and best is None and not any(ch["ok"] for ch in checks):
        more = _fewest_devices(shape, dev, checks, target, ctx)
        if more is not None:
            text += f"; with {more[0]} devices (TP {more[0]}): {more[1]}"
    if got:
        verdict = got
    elif any(ch["ok"] for ch in checks):
        verdict = "plausible"
    elif more is not None:  # the claim does not say on how many
        verdict = f"plausible on {more[0]} or more devices (the claim names no count)"
    else:
        verdict = "not possible as stated"
    return measured, text, doubted_verdict(verdict, best)


def _fewest_devices(
    shape: Shape, dev: Device, checks: list[dict[str, Any]], target: float, ctx: float
) -> tuple[int, str] | None:
    """(devices, how) for the fewest of 2, 4 or 8 devices on which a check's precision reaches `target`."""
    for more in (2, 4, 8):
        alt = [throughput_check(shape, dev, more, ch["precision"], target, ctx) for ch in checks]
        ok = [a for a in alt if a["ok"]]
        if ok:
            return more, str(ok[0]["text"])
    return None


def _side_ceiling(c: Claim, s: Side) -> tuple[float, float | None] | None:
    shape, dev, _ = _shape_dev(c.model, s.device)
    if shape is None or dev is None:
        return None
    p = lower_precision(s.precision) or "bf16"
    n = s.devices or 1
    b1 = decode_bound(
        shape, dev, shape.weight_bytes(p), n, 1, 0.0, 2.0, 1.0, p, step_bytes=shape.step_bytes(p)
    )
    peak = dev.peak_flops(p)
    return b1.tok_s, n * peak if peak else None


# what the two sides of a measured ratio must share, so that it compares the hardware (or precision) it
# names and not two workloads, loads or engines
RATIO_KEY = ("workload", "load", "engine_label")


def _ratio_pairs(c: Claim, points: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(numerator, denominator) best points per configuration both sides were measured in: the same
    workload, load and engine, the same device count unless a side fixes its own, and the same
    precision unless a side fixes its own (so 8 GPUs are never set against 1, nor FP8 against BF16
    when the claim is about GPUs). Sorted by the numerator's tok/s, highest first."""
    assert c.numerator is not None and c.denominator is not None
    sides = [match_points(points, claim_want(c, s), c) for s in (c.numerator, c.denominator)]
    if any(x.empty for x in sides):
        return []
    key = list(RATIO_KEY)
    if c.numerator.devices is None and c.denominator.devices is None:
        key.append("devices")
    if c.numerator.precision is None and c.denominator.precision is None:
        key.append("precision")
    key = [k for k in key if k in sides[0].columns and k in sides[1].columns]
    groups = [{k: g for k, g in x.groupby(key, dropna=False, sort=False)} for x in sides]
    pairs = []
    for k, num in groups[0].items():
        den = groups[1].get(k)
        a, b = best_point(num), best_point(den) if den is not None else None
        if a is not None and b is not None:
            pairs.append((a, b))
    return sorted(pairs, key=lambda ab: -ab[0]["tok_s"])


def _ratio_unmatched(c: Claim, points: pd.DataFrame) -> str:
    """Why no pair of points measures a ratio claim: a side without a matching point, else no
    configuration both sides were measured in."""
    assert c.numerator is not None and c.denominator is not None
    if points.empty:
        return ""
    for s in (c.numerator, c.denominator):
        if why := no_match_reason(points, claim_want(c, s), c):
            return why
    return (
        "no configuration measured on both sides: same workload, load and engine, device count and precision"
    )


def _ratio(c: Claim, points: pd.DataFrame) -> tuple[str, str, str]:
    assert c.numerator is not None and c.denominator is not None
    num, den = _side_ceiling(c, c.numerator), _side_ceiling(c, c.denominator)
    pairs = _ratio_pairs(c, points)
    if c.up_to:  # "up to 3.3x": the best case the runs measured
        pairs.sort(key=lambda ab: -ab[0]["tok_s"] / ab[1]["tok_s"])
    pairs.sort(key=lambda ab: bool(_pair_doubts(*ab)))  # stable: clean pairs first, in that order
    measured = unmatched_cell(_ratio_unmatched(c, points))
    if pairs:
        a, b = pairs[0]
        measured = f"{a['tok_s'] / b['tok_s']:.2f}x ({a['where']} / {b['where']})"
        if len(pairs) > 1:
            ratios = [x["tok_s"] / y["tok_s"] for x, y in pairs]
            measured += f"; {len(pairs)} matched configurations: {min(ratios):.2f}-{max(ratios):.2f}x"
    if num is None or den is None:
        return measured, "no roofline: device or model not in the catalogs", "unchecked"
    mem_ratio = num[0] / den[0]
    text = f"memory-bound (small batch) ceiling ratio {mem_ratio:.2f}x, compute-bound (large batch) "
    if num[1] is None or den[1] is None:  # a side without a FLOP/s peak in the catalog (a CPU)
        lo = hi = mem_ratio
        text += "unknown (no FLOP/s peak in the catalog)"
    else:
        cmp_ratio = num[1] / den[1]
        lo, hi = min(mem_ratio, cmp_ratio), max(mem_ratio, cmp_ratio)
        text += f"{cmp_ratio:.2f}x"
    inside = c.value <= hi + 1e-9 and c.high >= lo - 1e-9
    verdict = "within the roofline range" if inside else f"outside the roofline range {lo:.2f}-{hi:.2f}x"
    if pairs:
        a, b = pairs[0]
        ratio = a["tok_s"] / b["tok_s"]
        verdict = f"{measured_vs_claimed(ratio, c.value, c.high)}; the claim is {verdict}"
        odd = _pair_doubts(a, b)
        if not lo * (1 - RATIO_SLACK) <= ratio <= hi * (1 + RATIO_SLACK):
            odd.append(f"the measured ratio is outside the hardware's {lo:.2f}-{hi:.2f}x")
        verdict = doubted_verdict(verdict, {"doubts": odd})
    return measured, text, verdict


# how far a measured ratio may stray outside the roofline ratios (the catalog's nominal bandwidths and
# peaks, engines' kernels that suit one GPU better) before it is doubted
RATIO_SLACK = 0.1
# settings the two sides of a ratio differ in by design: what the claim compares
RATIO_SIDES_DIFFER_IN = frozenset({"precision", "tensor_parallel_size", "pipeline_parallel_size", "model"})


def _pair_doubts(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Why a pair of points may not measure a ratio claim: either side's `doubts`, and settings they
    differ in beyond what the claim compares (engine fields but the precision, device count and model; the
    engine's build; the load's shape), as `compare` tells configurations apart."""
    sides = [json.loads(x["settings"]) if isinstance(x.get("settings"), str) else {} for x in (a, b)]
    differ = [k for k in differing(sides) if k.split(".")[-1] not in RATIO_SIDES_DIFFER_IN]
    return [*a["doubts"], *b["doubts"], *([f"the sides differ in {', '.join(differ)}"] if differ else [])]


def tok_s_vs_claimed(tok_s: float, low: float, high: float) -> str:
    """A measured tok/s against a claimed range (`measured 3.7 tok/s, inside the claimed 1-5`) or value."""
    if high > low and low <= tok_s <= high:
        return f"measured {fmt_tok(tok_s)} tok/s, inside the claimed {low:g}-{high:g}"
    if high > low and tok_s > high:
        return f"measured {fmt_tok(tok_s)} tok/s, above the claimed {low:g}-{high:g}"
    return f"measured {tok_s / low * 100:.0f}% of the claim" + ("'s low end" if high > low else "")


def measured_vs_claimed(ratio: float, low: float, high: float) -> str:
    """A measured ratio against a claimed one (or range): `measured 1.05x = 32% of the claimed 3.3x`."""
    if high > low:
        if low - 1e-9 <= ratio <= high + 1e-9:
            return f"measured {ratio:.2f}x, inside the claimed {low:g}-{high:g}x"
        return f"measured {ratio:.2f}x = {ratio / low * 100:.0f}% of the claim's low end {low:g}x"
    return f"measured {ratio:.2f}x = {ratio / low * 100:.0f}% of the claimed {low:g}x"


def _cost(c: Claim, points: pd.DataFrame) -> tuple[str, str, str]:
    assert c.usd_per_hour is not None and c.tok_s is not None
    n = c.devices or 1
    usd = usd_per_million_tokens(c.usd_per_hour, c.tok_s, n)
    arithmetic = f"${c.usd_per_hour:g}/h / ({c.tok_s:g} tok/s x 3600) = ${usd:.2f}/1M"
    arith_ok = stated_to(c.value, usd)
    want = claim_want(c)
    best = best_point(match_points(points, want, c))
    measured = unmatched_cell(no_match_reason(points, want, c))
    if best is not None:  # the measured point's devices, all paid for
        measured = _priced(c.usd_per_hour, best)
        # a claim that names no concurrency may be of one stream (the article's 112 tok/s is below the
        # single-stream ceiling): the one-stream price beside the fastest point's
        single = best_point(match_points(points, (*want[:5], 1), c)) if c.concurrency is None else None
        if single is not None and single["where"] != best["where"]:
            measured += f"; one stream: {_priced(c.usd_per_hour, single)}"
    _, tput, _ = _throughput(c, c.tok_s, lower_precision(c.precision), points.iloc[0:0])
    agrees = "matches" if arith_ok else "does NOT match"
    text = f"{arithmetic} ({agrees} ${c.value:g}); {c.tok_s:g} tok/s: {tput}"
    verdict = "arithmetic checks" if arith_ok else "arithmetic wrong"
    verdict += "" if best is None else "; measured"
    return measured, text, doubted_verdict(verdict, best)


def _priced(usd_per_hour: float, point: dict[str, Any]) -> str:
    """A matched point at a claim's $/h, on all of its devices: `$0.07/1M at 3,000 tok/s (where)`."""
    usd = usd_per_million_tokens(usd_per_hour, point["tok_s"], point["devices"])
    return f"${usd:.2f}/1M at {fmt_tok(point['tok_s'])} tok/s ({point['where']})"


def _offload(c: Claim, points: pd.DataFrame) -> tuple[str, str, str]:
    shape, dev, why = _shape_dev(c.model, c.device)
    want = claim_want(c)
    best = best_point(match_points(points, want, c))
    measured = (
        unmatched_cell(no_match_reason(points, want, c))
        if best is None
        else f"{fmt_tok(best['tok_s'])} tok/s at {best['where']}"
    )
    if shape is None or dev is None or dev.memory_bytes is None or not dev.host_link_gbs:
        return measured, why or "no roofline: device memory or host link unknown", "unchecked"
    p = lower_precision(c.precision) or "bf16"
    n = c.devices or 1
    weight, step = shape.weight_bytes(p), shape.step_bytes(p)
    off = weight / n - dev.memory_bytes * MEMORY_UTILIZATION
    if off <= 0:
        return measured, f"{p} weights fit in device memory: no offload needed", "no offload needed"
    link = dev.host_link_gbs * 1e9
    b = decode_bound(shape, dev, weight, n, 1, 0.0, 2.0, 1.0, p, off, link, step_bytes=step)
    text = (
        f"{off / 1e9:.0f} GB/device streamed over {dev.host_link} ({dev.host_link_gbs:g} GB/s) each step: "
        f"ceiling {b.tok_s:.2f} tok/s ({b.t_step_s:.2f} s/token) at batch 1"
    )
    ceiling = b.tok_s
    split = _host_split_ceiling(step, n * off, dev)
    if c.engine in (None, "llamacpp") and split is not None:
        tok_s, host = split
        text += (
            f"; or computed by the CPU from host RAM, as llama.cpp does with layers it keeps there (the "
            f"fastest host in the catalog, {host.name} at {host.bandwidth_gbs:g} GB/s, then the GPU its "
            f"share): ceiling {tok_s:.2f} tok/s ({1 / tok_s:.2f} s/token)"
        )
        ceiling = max(ceiling, tok_s)
    if best is not None:
        verdict = doubted_verdict(tok_s_vs_claimed(best["tok_s"], c.value, c.high), best)
    elif c.high <= ceiling:
        verdict = "plausible (below the ceiling)"
    elif c.value <= ceiling:
        verdict = "low end plausible, high end above the ceiling"
    else:
        verdict = "not possible as stated"
    return measured, text, verdict


def _host_split_ceiling(weight: float, host_bytes: float, gpu: Device) -> tuple[float, Device] | None:
    """Batch-1 tok/s when the CPU reads `host_bytes` of the `weight` bytes a step reads from host RAM (the
    catalog CPU of the highest memory bandwidth) and the GPUs the rest, one after the other
    (harness.offload's model: llama.cpp gives each GPU its own layers, which run in turn, so they add no
    bandwidth)."""
    hosts = [d for d in devices().values() if d.kind == "cpu" and d.bandwidth_gbs]
    if not hosts:
        return None
    host = max(hosts, key=lambda d: d.bandwidth_gbs)
    t = host_bytes / host.bandwidth_bytes_s + (weight - host_bytes) / gpu.bandwidth_bytes_s
    return 1 / t, host


def check(c: Claim, points: pd.DataFrame) -> ClaimCheck:
    if c.kind == "throughput":
        r = _throughput(c, c.value, lower_precision(c.precision), points)
    elif c.kind == "ratio":
        r = _ratio(c, points)
    elif c.kind == "cost":
        r = _cost(c, points)
    else:
        r = _offload(c, points)
    return ClaimCheck(c, *r)


def check_all(claims: list[Claim], points: pd.DataFrame) -> list[ClaimCheck]:
    one = reruns_as_one(points)
    return [check(c, one) for c in claims]
