"""Arrival schedules for open-loop load: seeded, so a run can be repeated exactly."""

from __future__ import annotations

import zlib

import numpy as np


def point_seed(seed: int, rate_rps: float | None) -> int:
    """The arrival seed of the point at `rate_rps`: the same for every engine variant at that rate (and a
    rerun), so their requests arrive on one schedule; another rate, another draw. `rate_rps` None: `seed`
    itself, the one draw that a rate search's probes scale to their rates."""
    return seed + (zlib.crc32(f"{rate_rps:g}".encode()) if rate_rps is not None else 0)


def intervals_s(
    n: int, rate_rps: float, arrival: str = "poisson", burstiness: float = 1.0, seed: int | list[int] = 0
) -> np.ndarray:
    """`n` gaps between consecutive sends, in seconds, with mean 1/rate_rps.

    constant: every gap is 1/rate. poisson: exponential gaps. gamma: gamma gaps with shape
    `burstiness` and scale 1/(rate*burstiness) (shape < 1 is burstier than Poisson, > 1 smoother).
    """
    if rate_rps <= 0:
        raise ValueError("rate_rps must be > 0")
    rng = np.random.default_rng(seed)
    if arrival == "constant":
        return np.full(n, 1.0 / rate_rps)
    if arrival == "poisson":
        return rng.exponential(1.0 / rate_rps, n)
    if arrival == "gamma":
        return rng.gamma(burstiness, 1.0 / (rate_rps * burstiness), n)
    raise ValueError(f"unknown arrival {arrival!r} (allowed: constant, poisson, gamma)")


def offsets_s(
    n: int, rate_rps: float, arrival: str = "poisson", burstiness: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Send times relative to the start of the point: the first request goes at 0."""
    gaps = intervals_s(n, rate_rps, arrival, burstiness, seed)
    out = np.concatenate([[0.0], np.cumsum(gaps[:-1])]) if n else np.zeros(0)
    return out
