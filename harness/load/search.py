"""The highest request rate that still meets the SLOs (`harness run --find-max-goodput`).

A rate *meets the SLOs* when at least `slo.attainment` of its requests succeed within every
limit (TTFT, TPOT, E2E). Starting from the scenario's first rate, the search doubles the rate
while points pass and halves it while they fail, then bisects between the highest passing and
the lowest failing rate until they are within `rel_tol` of each other or `max_probes` points
have run. Each probe is a full open-loop point, recorded like any other.
"""

from __future__ import annotations

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
        if len(self.probes) >= self.max_probes:
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

    def summary(self) -> dict[str, Any]:
        _, hi = self.bracket()
        return {
            "max_rate_rps": self.best_rps,
            "lowest_failing_rps": hi,
            "probes": [{"rate_rps": r, "slo_met": ok} for r, ok in self.probes],
        }


def slo_met(row: dict[str, Any], attainment: float) -> bool:
    """A point meets the SLOs when slo_attainment (requests meeting all SLOs / requests) >= attainment."""
    v = row.get("slo_attainment")
    return v is not None and v == v and v >= attainment


class PointPlan:
    """The points of one engine variant: the scenario's sweep, or the probes of a rate search."""

    def __init__(self, points: Sequence[Point], search: RateSearch | None = None) -> None:
        self.points = list(points)
        self.search = search

    def __iter__(self) -> Iterator[Point]:
        if self.search is None:
            yield from self.points
            return
        base = self.points[0]
        i = 0
        while (rate := self.search.next_rate()) is not None:
            yield Point(base.index + i, base.variant_index, base.engine, None, round(rate, 4))
            i += 1

    def observe(self, point: Point, met: bool | None) -> None:
        if self.search is not None and point.rate_rps is not None and met is not None:
            self.search.record(point.rate_rps, met)
