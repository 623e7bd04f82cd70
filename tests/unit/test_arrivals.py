"""Arrival processes: seeded, with the asked mean and the coefficient of variation of each kind."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.load.arrivals import intervals_s, offsets_s


def test_constant_gaps_are_exact() -> None:
    assert np.allclose(intervals_s(5, 4.0, "constant"), 0.25)
    assert offsets_s(4, 4.0, "constant").tolist() == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize(
    ("arrival", "burstiness", "cv"),
    [("poisson", 1.0, 1.0), ("gamma", 0.25, 2.0), ("gamma", 4.0, 0.5)],
)
def test_mean_and_cv(arrival: str, burstiness: float, cv: float) -> None:
    # exponential gaps have CV 1; gamma with shape k has CV 1/sqrt(k)
    gaps = intervals_s(200_000, 50.0, arrival, burstiness, seed=3)
    assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.02)


def test_seeded_and_seed_sensitive() -> None:
    a = intervals_s(100, 10.0, "poisson", seed=7)
    assert np.array_equal(a, intervals_s(100, 10.0, "poisson", seed=7))
    assert not np.array_equal(a, intervals_s(100, 10.0, "poisson", seed=8))


def test_offsets_start_at_zero_and_accumulate() -> None:
    gaps = intervals_s(6, 10.0, "poisson", seed=1)
    offs = offsets_s(6, 10.0, "poisson", seed=1)
    assert offs[0] == 0.0
    assert np.allclose(np.diff(offs), gaps[:-1])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="rate_rps"):
        intervals_s(3, 0.0)
    with pytest.raises(ValueError, match="allowed: constant, poisson, gamma"):
        intervals_s(3, 1.0, "uniform")


def test_the_measured_schedule_does_not_depend_on_the_warmup_before_it() -> None:
    """With `warmup_scope: engine` a variant's first point has warmup and the others not (and a resume
    moves which point is first): the measured requests' gaps must be the same draw either way."""
    from harness.client.openai_stream import RequestSpec, StreamClient
    from harness.load.driver import PointLoad, plan_jobs

    client = StreamClient("http://127.0.0.1:9", "m")
    load = PointLoad("p", rate_rps=20.0, arrival="poisson", seed=11)
    spec = RequestSpec("hello", 4)

    def measured_gaps(n_warm: int) -> list[int]:
        jobs = plan_jobs(client, load, [spec] * n_warm, [spec] * 8, [spec] * 2, 0)
        t = [j.offset_ns for j in jobs if j.role != "warmup"]
        assert [j.role for j in jobs[:n_warm]] == ["warmup"] * n_warm
        if n_warm:  # the measured requests come after the warmup, one gap on
            assert t[0] > max(j.offset_ns for j in jobs[:n_warm])
        return [b - a for a, b in itertools.pairwise(t)]

    base = measured_gaps(0)  # the same to the nanosecond (each offset is rounded on its own)
    assert measured_gaps(3) == pytest.approx(base, abs=2) and measured_gaps(1) == pytest.approx(base, abs=2)
    assert plan_jobs(client, load, [], [spec] * 3, [], 0)[0].offset_ns == 0
