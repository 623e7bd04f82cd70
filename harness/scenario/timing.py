"""How long a scenario's points hold the engine under load, as far as the file alone can tell."""

from __future__ import annotations

from dataclasses import dataclass

from harness.scenario.models import Scenario, expand_points


@dataclass(frozen=True)
class LoadTime:
    """Bounds on the seconds a scenario's points spend under load; engine start-ups, warm-up requests and
    llama-bench runs are not counted.

    `at_least_s`: open loop, a point's measured requests arrive over requests / rate seconds, or duration_s
    where that is shorter (cooldown requests end with the last measured one, so they add nothing); closed
    loop, 0 (the engine's speed sets it). `at_most_s`: duration_s per point, None without it (requests
    still in flight when a point's duration ends are not counted)."""

    points: int
    engines: int
    at_least_s: float
    at_most_s: float | None


def load_time(s: Scenario) -> LoadTime:
    points = expand_points(s)
    load = s.load
    cap = load.duration_s if load.duration_s is not None else float("inf")
    least = sum(min(load.requests / p.rate_rps, cap) for p in points if p.rate_rps is not None)
    most = None if load.duration_s is None else load.duration_s * len(points)
    return LoadTime(len(points), len({p.variant_index for p in points}), least, most)


def counted(n: int, noun: str) -> str:
    """`1 point`, `2 points`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def span(seconds: float) -> str:
    """`45 s` under two minutes, else `12 min`."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def describe(t: LoadTime) -> str:
    """One line for a launch's plan: `10 points on 2 engines: up to 30 min of load (load.duration_s),
    before engine start-ups`."""
    if t.at_most_s is not None and t.at_least_s > 0:
        lo, hi = span(t.at_least_s), span(t.at_most_s)
        load = f"{hi} of load" if lo == hi else f"{lo} to {hi} of load"
    elif t.at_most_s is not None:
        load = f"up to {span(t.at_most_s)} of load (load.duration_s)"
    elif t.at_least_s > 0:
        load = f"at least {span(t.at_least_s)} of load (open-loop arrivals)"
    else:
        load = "a time the engine's speed sets (no load.duration_s)"
    return f"{counted(t.points, 'point')} on {counted(t.engines, 'engine')}: {load}, before engine start-ups"


def counts(t: LoadTime) -> str:
    """`10 points, 2 engines, up to 30 min of load`: what `validate` says of a scenario that is ok."""
    parts = [counted(t.points, "point"), counted(t.engines, "engine")]
    if t.at_most_s is not None:
        parts.append(f"up to {span(t.at_most_s)} of load")
    elif t.at_least_s > 0:
        parts.append(f"at least {span(t.at_least_s)} of load")
    return ", ".join(parts)
