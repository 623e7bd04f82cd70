"""Bounds on the time a scenario's points hold an engine under load, read from the file alone."""

from __future__ import annotations

from typing import Any

from harness.scenario import parse_scenario
from harness.scenario.timing import LoadTime, counts, describe, load_time

ENGINE = {"type": "external", "base_url": "http://127.0.0.1:8000", "model": {"source": "served", "name": "m"}}


def scenario(load: dict[str, Any], variants: int = 0) -> Any:
    data: dict[str, Any] = {"name": "t", "engine": ENGINE, "load": load}
    if variants:
        data["variants"] = [{"base_url": f"http://127.0.0.1:{8000 + i}"} for i in range(variants)]
    return parse_scenario(data, "t.yaml")


def test_open_loop_arrivals_are_a_lower_bound_cut_at_duration() -> None:
    # 16 measured requests: at 0.5 req/s they arrive over 32 s, cut to 30 s by duration_s; at 2 req/s over
    # 8 s. Cooldown requests end with the last measured one: they add nothing. Two engines: 2 × (30 + 8) =
    # 76 s at least, 4 points × 30 s = 120 s at most
    load = {"mode": "open", "rates_rps": [0.5, 2], "requests": 16, "cooldown_requests": 40, "duration_s": 30}
    assert load_time(scenario(load, variants=2)) == LoadTime(4, 2, 76.0, 120.0)
    # no duration_s: no upper bound, and the arrivals are not cut
    del load["duration_s"]
    assert load_time(scenario(load)) == LoadTime(2, 1, 40.0, None)


def test_a_closed_loop_has_no_lower_bound_the_file_can_tell() -> None:
    assert load_time(scenario({"concurrency": [1, 4, 16], "requests": 64, "duration_s": 120})) == LoadTime(
        3, 1, 0.0, 360.0
    )
    assert load_time(scenario({"concurrency": [1], "requests": 8})) == LoadTime(1, 1, 0.0, None)


def test_the_plan_line_says_what_the_file_can_tell() -> None:
    assert describe(LoadTime(10, 2, 0.0, 1800.0)) == (
        "10 points on 2 engines: up to 30 min of load (load.duration_s), before engine start-ups"
    )
    assert describe(LoadTime(4, 2, 80.0 * 60, 120.0 * 60)) == (
        "4 points on 2 engines: 80 min to 120 min of load, before engine start-ups"
    )
    # spans under two minutes in seconds (a short sweep had read "up to 0 min"); bounds that read alike once
    assert describe(LoadTime(2, 1, 0.0, 20.0)) == (
        "2 points on 1 engine: up to 20 s of load (load.duration_s), before engine start-ups"
    )
    assert (
        describe(LoadTime(2, 1, 239.0, 240.0))
        == "2 points on 1 engine: 4 min of load, before engine start-ups"
    )
    assert describe(LoadTime(1, 1, 600.0, None)) == (
        "1 point on 1 engine: at least 10 min of load (open-loop arrivals), before engine start-ups"
    )
    assert describe(LoadTime(3, 1, 0.0, None)) == (
        "3 points on 1 engine: a time the engine's speed sets (no load.duration_s), before engine start-ups"
    )


def test_validate_counts_points_engines_and_the_bound() -> None:
    assert counts(LoadTime(10, 2, 0.0, 1800.0)) == "10 points, 2 engines, up to 30 min of load"
    assert counts(LoadTime(1, 1, 600.0, None)) == "1 point, 1 engine, at least 10 min of load"
    assert counts(LoadTime(3, 1, 0.0, None)) == "3 points, 1 engine"
    assert counts(LoadTime(1, 1, 1.0, None)) == "1 point, 1 engine, at least 1 s of load"
