"""How long a scenario's points hold the engine under load, as far as the file alone can tell."""

from __future__ import annotations

from dataclasses import dataclass

from harness.scenario.models import Scenario, expand_points


@dataclass(frozen=True)
class LoadTime:
    """Bounds on the seconds a scenario's points spend under load; engine start-ups, warm-up requests and
    llama-bench runs are not counted.

    `at_least_s`: open loop, the measured and cooldown requests of a point arrive over
    (requests + cooldown_requests) / rate seconds, or duration_s where that is shorter; closed loop, 0 (the
    engine's speed sets it). `at_most_s`: duration_s per point, None without it (requests still in flight
    when a point's duration ends are not counted)."""

    points: int
    engines: int
    at_least_s: float
    at_most_s: float | None


def load_time(s: Scenario) -> LoadTime:
    points = expand_points(s)
    load = s.load
    cap = load.duration_s if load.duration_s is not None else float("inf")
    sent = load.requests + load.cooldown_requests
    least = sum(min(sent / p.rate_rps, cap) for p in points if p.rate_rps is not None)
    most = None if load.duration_s is None else load.duration_s * len(points)
    return LoadTime(len(points), len({p.variant_index for p in points}), least, most)
