"""Window math for sampled telemetry: pure functions of (time, value) series, no I/O.

A series is two equal-length sequences: `t_ns` (`time.perf_counter_ns()` stamps, increasing) and
values (None where a sample could not be read). A window is `[t0_ns, t1_ns]` on the same clock as
the request records. Values between samples are linear (counters, power) or held (step functions
such as throttle-reason bit masks), as each function's docstring says.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

Num = int | float
NS = 1_000_000_000


def _clean(t_ns: Sequence[int], v: Sequence[Num | None]) -> tuple[list[int], list[float]]:
    pts = [(t, float(x)) for t, x in zip(t_ns, v, strict=True) if x is not None and math.isfinite(x)]
    return [p[0] for p in pts], [p[1] for p in pts]


def interp_at(t_ns: Sequence[int], v: Sequence[float], t: int) -> float | None:
    """Linear interpolation of the series at `t`; None outside [first, last] sample time.

    v(t) = v[i] + (v[i+1] − v[i]) · (t − t[i]) / (t[i+1] − t[i]) for t[i] ≤ t ≤ t[i+1].
    """
    if not t_ns or t < t_ns[0] or t > t_ns[-1]:
        return None
    lo, hi = 0, len(t_ns) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t_ns[mid] <= t:
            lo = mid
        else:
            hi = mid
    if t_ns[hi] == t_ns[lo] or t <= t_ns[lo]:
        return v[lo]
    if t >= t_ns[hi]:
        return v[hi]
    return v[lo] + (v[hi] - v[lo]) * (t - t_ns[lo]) / (t_ns[hi] - t_ns[lo])


def clip_series(t_ns: Sequence[int], v: Sequence[float], t0: int, t1: int) -> tuple[list[int], list[float]]:
    """Samples inside (t0, t1) plus interpolated end points at t0 and t1 where the series covers them."""
    ts: list[int] = []
    vs: list[float] = []
    a = interp_at(t_ns, v, t0)
    if a is not None:
        ts.append(t0)
        vs.append(a)
    for t, x in zip(t_ns, v, strict=True):
        if t0 < t < t1:
            ts.append(t)
            vs.append(x)
    b = interp_at(t_ns, v, t1)
    if b is not None and t1 > t0:
        ts.append(t1)
        vs.append(b)
    return ts, vs


# a counter step back this small, relative to the counter, is float rounding, not a reset or a wrap
FLOAT_NOISE = 1e-9


def within_rounding(before: float, after: float) -> bool:
    """Whether a counter went from `before` to `after` without a decrease beyond float rounding."""
    return before - after <= FLOAT_NOISE * max(1.0, abs(before))


def counter_delta(first: Num, last: Num, wrap_at: Num | None = None) -> float | None:
    """Increase of a cumulative counter from `first` to `last`.

    last ≥ first: last − first. last < first: the counter wrapped (RAPL `energy_uj` wraps at
    `max_energy_range_uj`) → last + wrap_at − first; with no `wrap_at` (NVML's 64-bit energy counter
    never wraps in practice) a decrease means a reset (driver reload) and the delta is unknown: None.
    A decrease within float rounding (CPU seconds summed as floats: 4368.860000000002 then
    4368.860000000001) is no decrease: 0.
    """
    if last >= first:
        return float(last - first)
    if within_rounding(float(first), float(last)):
        return 0.0
    if wrap_at is None or wrap_at <= 0:
        return None
    return float(last + wrap_at - first)


def counter_increase(
    t_ns: Sequence[int], counter: Sequence[Num | None], t0: int, t1: int, wrap_at: Num | None = None
) -> float | None:
    """Increase of a sampled counter over [t0, t1]: Σ of consecutive `counter_delta`s of the samples
    clipped to the window (window edges linearly interpolated between the samples around them).

    Summing pairwise deltas survives several wraps, if samples are closer than one wrap period.
    None if the series does not cover both edges, or a step went backwards with no `wrap_at`.
    For t1 ≤ t0 the increase is 0, if the series has any reading at all (a device with no counter has
    no increase to report, not a zero one).
    """
    ts, vs = _clean(t_ns, counter)
    if not ts:
        return None
    if t1 <= t0:
        return 0.0
    if wrap_at is not None:
        vs = _unwrap(vs, float(wrap_at))
    if not ts or ts[0] > t0 or ts[-1] < t1:
        return None
    _, cvs = clip_series(ts, vs, t0, t1)
    total = 0.0
    for a, b in itertools.pairwise(cvs):
        d = counter_delta(a, b)
        if d is None:
            return None
        total += d
    return total


def _unwrap(vs: list[float], wrap_at: float) -> list[float]:
    """Make a wrapping counter monotone: add `wrap_at` for every decrease seen so far."""
    out: list[float] = []
    offset = 0.0
    for i, x in enumerate(vs):
        if i and not within_rounding(vs[i - 1], x):
            offset += wrap_at
        out.append(x + offset)
    return out


def unwrap_reading(state: tuple[int, int] | None, raw: int, bits: int) -> tuple[tuple[int, int], int]:
    """One reading of a `bits`-wide counter made monotone as it is read.

    `state` is (last raw reading, wraps so far), None before the first. A reading below the last one
    is one more wrap: value = raw + wraps · 2**bits. Returns the new state and the value.
    """
    last, wraps = state if state is not None else (raw, 0)
    if raw < last:
        wraps += 1
    return (raw, wraps), raw + wraps * (1 << bits)


# PCIe bytes per second per lane and direction, after line coding (Gen1-2 8b/10b, Gen3-5 128b/130b, Gen6
# FLIT mode), by link generation
PCIE_LANE_BYTES_S = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}


def counter_wrap_s(bits: int, gen: Any, width: Any) -> float | None:
    """Seconds a `bits`-wide PCIe byte counter takes to wrap at the link's full rate (gen x width lanes,
    one direction): 2**bits / (width · PCIE_LANE_BYTES_S[gen]); None where the link is not known.
    Gen5 x16, 32 bits: 4294967296 / 63.0e9 = 0.068 s."""
    if not isinstance(gen, int) or not isinstance(width, int) or gen not in PCIE_LANE_BYTES_S or width <= 0:
        return None
    return (1 << bits) / (width * PCIE_LANE_BYTES_S[gen])


# a sampler thread's gaps run longer than its interval on a busy host: the margin asked of it here
PCIE_GAP_MARGIN = 1.25


def pcie_wrap_note(interval_s: float, wrap_s: dict[int, float | None]) -> str | None:
    """What to say when a GPU's 32-bit PCIe byte counter can pass its previous reading between two samples
    (2**32 bytes or more in one gap): a reading shows the increase modulo 2**32, so where the sample gap,
    the interval with PCIE_GAP_MARGIN, can reach the wrap period at full link rate the rates can be lower
    bounds."""
    short = {i: w for i, w in wrap_s.items() if w is not None and interval_s * PCIE_GAP_MARGIN >= w}
    if not short:
        return None
    fastest = min(short.values())
    gpus = ", ".join(str(i) for i in sorted(short))
    return (
        f"PCIe byte counters of GPU {gpus} wrap every {fastest * 1000:.0f} ms at the link's full rate, and "
        f"are read every {interval_s * 1000:.0f} ms: gpu_pcie_*_bytes_s are lower bounds where the link ran "
        f"above {(1 << 32) / interval_s / 1e9:.0f} GB/s (telemetry.interval_s under "
        f"{fastest / PCIE_GAP_MARGIN:.3f} avoids it)"
    )


def integrate(t_ns: Sequence[int], v: Sequence[Num | None], t0: int, t1: int) -> float | None:
    """∫ v dt over [t0, t1] in value·seconds by the trapezoid rule (power in W → energy in J).

    Samples are clipped to the window with interpolated edges: Σ (v[i] + v[i+1]) / 2 · (t[i+1] − t[i]) / 1e9.
    None if the series does not cover both edges, or has no values at all (even for t1 ≤ t0, where the
    integral of a series with values is 0).
    """
    ts, vs = _clean(t_ns, v)
    if not ts:
        return None
    if t1 <= t0:
        return 0.0
    if ts[0] > t0 or ts[-1] < t1:
        return None
    cts, cvs = clip_series(ts, vs, t0, t1)
    return sum((cvs[i] + cvs[i + 1]) / 2 * (cts[i + 1] - cts[i]) for i in range(len(cts) - 1)) / NS


def time_weighted_mean(t_ns: Sequence[int], v: Sequence[Num | None], t0: int, t1: int) -> float | None:
    """Mean of v over [t0, t1] weighted by time: integrate(v) / (t1 − t0). None if not covered."""
    area = integrate(t_ns, v, t0, t1)
    if area is None or t1 <= t0:
        return None
    return area / ((t1 - t0) / NS)


def window_values(t_ns: Sequence[int], v: Sequence[Num | None], t0: int, t1: int) -> list[float]:
    """Sample values with t0 ≤ t ≤ t1 (no interpolation), for max/min/mean of gauges."""
    return [float(x) for t, x in zip(t_ns, v, strict=True) if t0 <= t <= t1 and x is not None]


def edge_values(t_ns: Sequence[int], v: Sequence[Num | None], t0: int, t1: int) -> list[float]:
    """Sample values inside (t0, t1) plus the values interpolated at t0 and t1 where the samples cover
    them: for max/min of gauges over the same span their time-weighted means see (a window shorter than
    the sampling interval has no sample inside it, yet a mean)."""
    ts, vs = _clean(t_ns, v)
    return clip_series(ts, vs, t0, t1)[1]


def held_seconds(t_ns: Sequence[int], flags: Sequence[bool | None], t0: int, t1: int) -> float | None:
    """Seconds within [t0, t1] during which a flag was set, the flag held from each sample to the next.

    None where the samples do not cover the window (none at or before t0, or none at or after t1): the
    state there is not known, as a mean is not (`integrate`)."""
    if not t_ns or t_ns[0] > t0 or t_ns[-1] < t1:
        return None
    total = 0
    for i, (t, f) in enumerate(zip(t_ns, flags, strict=True)):
        if not f:
            continue
        end = t_ns[i + 1] if i + 1 < len(t_ns) else t1
        a, b = max(t, t0), min(end, t1)
        if b > a:
            total += b - a
    return total / NS


def j_per_token(energy_j: float | None, output_tokens: float | None) -> float | None:
    """Energy per output token: energy_j / output_tokens of the window (None when either is missing or 0)."""
    if energy_j is None or not output_tokens or output_tokens <= 0:
        return None
    if isinstance(energy_j, float) and math.isnan(energy_j):
        return None
    return float(energy_j) / float(output_tokens)
