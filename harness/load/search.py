"""The highest request rate that still meets the SLOs (`harness run --find-max-goodput`).

A rate *meets the SLOs* when at least `slo.attainment` of its requests succeed within every limit (TTFT,
TPOT, E2E). Starting from the scenario's first rate, the search doubles the rate while points pass and
halves it while they fail, then bisects between the highest passing and the lowest failing rate until
they are within `rel_tol` of each other or `max_probes` points have run. Halving stops early where a
halved rate brought neither more requests within the SLOs nor a shorter TTFT: the SLOs are missed at any
load. Each probe is a full open-loop point, recorded like any other. Every probe's arrivals are one draw
scaled to its rate (common random numbers): two probes differ in rate, not in their bursts, so a probe
that passes and a faster one that fails were not told apart by a burst that only one of them got. The
draw's own luck (its offered rate against the nominal one) is shared by every probe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.scenario import Point


@dataclass
class RateSearch:
    start_rps: float
    rel_tol: float = 0.05
    max_probes: int = 8
    probes: list[tuple[float, bool]] = field(default_factory=list)
    stop_reason: str | None = None  # the search ended before its bracket closed, and why

    @property
    def best_rps(self) -> float | None:
        """Highest rate that met the SLOs (None if none did)."""
        return max((r for r, ok in self.probes if ok), default=None)

    def bracket(self) -> tuple[float | None, float | None]:
        """(highest passing rate, lowest failing rate above it)."""
        lo = self.best_rps
        hi = min((r for r, ok in self.probes if not ok and (lo is None or r > lo)), default=None)
        return lo, hi

    def next_rate(self) -> float | None:
        """The next rate to try, or None when done."""
        if not self.probes:
            return self.start_rps
        if len(self.probes) >= self.max_probes or self.stop_reason is not None:
            return None
        lo, hi = self.bracket()
        if hi is None:
            assert lo is not None
            return lo * 2
        if lo is None:
            return hi / 2
        if (hi - lo) / lo <= self.rel_tol:
            return None
        return (lo + hi) / 2

    def record(self, rate_rps: float, met: bool) -> None:
        self.probes.append((rate_rps, met))

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def summary(self) -> dict[str, Any]:
        lo, hi = self.bracket()
        why = self.stop_reason
        if (
            why is None
            and len(self.probes) >= self.max_probes
            and lo
            and hi
            and (hi - lo) / lo > self.rel_tol
        ):
            # the probes ran out before the bracket closed: the rate found is that far from the limit
            why = (
                f"{self.max_probes} probes ran out with {lo:g}-{hi:g} req/s still {(hi - lo) / lo:.0%} apart"
            )
        return {
            "max_rate_rps": self.best_rps,
            "lowest_failing_rps": hi,
            "probes": [{"rate_rps": r, "slo_met": ok} for r, ok in self.probes],
            **({"stop_reason": why} if why else {}),
        }


def attainment_resolution_note(requests: int, attainment: float) -> str | None:
    """Why `requests` a probe are too few for `attainment` (None where they are not): with fewer than
    1 / (1 - attainment) requests, meeting it means every request met the SLOs, and a rate that passes so
    may still miss them for up to 1 - 0.05^(1/n) of its requests (the 95 % upper bound with no miss in n
    tries; about 3/n), more than the 1 - attainment asked."""
    if attainment >= 1 or requests * (1 - attainment) >= 1 - 1e-9:
        return None
    bound = 1 - 0.05 ** (1 / requests)
    return (
        f"load.requests: {requests} requests a probe meet slo.attainment {attainment:g} only when every one "
        f"meets the SLOs, and a rate that passes so may still miss them for up to {bound * 100:.2g} % of "
        f"its requests (95 % bound), not {(1 - attainment) * 100:.2g} %; with "
        f"{math.ceil(1 / (1 - attainment) - 1e-9)} or more a probe may allow a miss"
    )


def slo_met(row: dict[str, Any], attainment: float) -> bool:
    """A point meets the SLOs when slo_attainment (requests meeting all SLOs / requests) >= attainment."""
    v = row.get("slo_attainment")
    return v is not None and v == v and v >= attainment


# the least rise in the share of requests within the SLOs that a halved rate must bring for halving to go
# on, unless its TTFT p50 fell below this fraction of the faster probe's (a queue draining)
HALVING_GAIN = 0.01
TTFT_DRAINING = 0.9


class PointPlan:
    """The points of one engine variant: the scenario's sweep, or the probes of a rate search."""

    def __init__(self, points: Sequence[Point], search: RateSearch | None = None) -> None:
        self.points = list(points)
        self.search = search
        self._attained: dict[float, float] = {}  # probe rate -> its slo_attainment
        self._ttft_s: dict[float, float] = {}  # probe rate -> its TTFT p50

    def __iter__(self) -> Iterator[Point]:
        if self.search is None:
            yield from self.points
            return
        base = self.points[0]
        i = 0
        while (rate := self.search.next_rate()) is not None:
            rate = float(f"{rate:.4g}")  # 4 significant figures: readable point ids at any scale
            if any(r == rate for r, _ in self.search.probes):
                self.search.stop(f"the next rate, {rate:g} req/s, was probed already (4 significant figures)")
                return
            yield Point(base.index + i, base.variant_index, base.engine, None, rate, probe=True)
            i += 1

    def observe(self, point: Point, met: bool | None, row: dict[str, Any] | None = None) -> None:
        """`met`: whether the probe met the SLOs (None: not judged). A probe whose every measured request
        failed ends the search: failures are an error to look at, not an SLO miss that a lower rate cures."""
        if self.search is None or point.rate_rps is None or met is None:
            return
        self.search.record(point.rate_rps, met)
        if row is not None and row.get("requests") and not row.get("ok"):
            self.search.stop(
                f"every measured request failed at {point.rate_rps:g} req/s ({row.get('error_kinds')})"
            )
        share = row.get("slo_attainment") if row is not None else None
        ttft = row.get("ttft_s_p50") if row is not None else None
        if not isinstance(share, float) or share != share:
            return
        # halving while nothing passed: a halved rate that brought no more requests within the SLOs and
        # no shorter TTFT (no queue that drains: the SLOs are missed at any load, or requests fail) will
        # not be cured by the next (each halving doubles a probe's length). A server far past its
        # capacity at both rates misses the SLOs at both too, but its queue, and so its TTFT, shrinks
        above = [r for r in self._attained if r > point.rate_rps]
        self._attained[point.rate_rps] = share
        if isinstance(ttft, float) and ttft == ttft:
            self._ttft_s[point.rate_rps] = ttft
        if not met and self.search.best_rps is None and above:
            prev = min(above)
            before, now = self._ttft_s.get(prev), self._ttft_s.get(point.rate_rps)
            draining = before is None or now is None or now < before * TTFT_DRAINING
            if share <= self._attained[prev] + HALVING_GAIN and not draining:
                self.search.stop(
                    f"halving the rate brought no more requests within the SLOs ({self._attained[prev]:.1%} "
                    f"at {prev:g} req/s, {share:.1%} at {point.rate_rps:g}) nor a shorter TTFT: they are "
                    "missed at low load too (see the points' latencies and errors)"
                )
