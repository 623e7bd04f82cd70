"""What a comparison's cells do not show, said as notes under its tables: rows without a speedup, p99s
from few requests, other device counts, unfinished runs and failed requests, other host CPUs, points
above their roofline, and J/token of different scope."""

from __future__ import annotations

import pandas as pd

from harness.runinfo import at_rate


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
    """What the table's cells do not show: runs that did not finish, points measured after a resume,
    points with failed requests (their numbers cover the successes only), energy over another number of
    GPUs than priced, and outputs shorter than asked."""
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
    out += gpu_count_notes(points)
    if {"short_outputs", "ok"} <= set(points.columns):
        # rows are keyed by the lengths asked: a point whose outputs came shorter sits among full-length
        # ones, its tok/s and speedup over fewer tokens a request
        for _, r in points[points["short_outputs"].fillna(0) > 0].iterrows():
            short, n = int(r["short_outputs"]), int(r["ok"] or 0)
            at_limit = int(r.get("short_at_limit") or 0) if pd.notna(r.get("short_at_limit")) else 0
            why = "a length limit (the context?)" if at_limit >= short else "an end of sequence not ignored?"
            out.append(
                f"run {r['run_id']} point {r['point_id']}: {short} of {n} requests returned fewer tokens "
                f"than asked ({why}): its row is the lengths asked, its numbers are over shorter outputs"
            )
    return out


def gpu_count_notes(points: pd.DataFrame) -> list[str]:
    """A note per GPU configuration whose energy covers another number of GPUs than its label and price:
    an external endpoint on this machine is sampled on every GPU NVML sees here, and priced for its
    scenario's `hardware.gpus`; a GPU whose NVML reader failed is not summed."""
    if not {"gpu_count", "devices", "energy_j_per_output_token"} <= set(points.columns):
        return []
    measured = points["energy_j_per_output_token"].notna() & points["gpu_count"].notna()
    if "host_cpu" in points.columns:  # a CPU engine on a GPU machine: its energy says so (energy_scope)
        measured &= points["host_cpu"].isna()
    odd = points[measured & (points["gpu_count"] != points["devices"])]
    return [
        f"{cfg}: J/token covers the {int(n)} GPUs sampled (NVML), $/1M prices the label's {int(d)} (the "
        "manifest's telemetry.nvml.gpu_selection says which were sampled)"
        for (cfg, n, d), _ in odd.groupby(["config", "gpu_count", "devices"], sort=True)
    ]


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
    # beside configurations that have it, one that measured no energy at all reads as a blank, not a zero
    # (one whose J/token is blank for incomplete windows or failed requests has a scope: not this)
    scoped = set(points.loc[points["energy_scope"].notna(), "config"])
    unmeasured = [c for c in dict.fromkeys(points["config"]) if c not in set(known["config"]) | scoped]
    if unmeasured:
        out.append(
            f"no energy measured for {', '.join(unmeasured)} (no GPU or CPU energy telemetry there): no "
            "J/token nor energy cost for it"
        )
    return out
