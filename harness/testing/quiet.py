"""Is this host quiet enough for millisecond timing? Measure how late 1 ms sleeps wake up.

On a shared machine whose CPUs are busy with other work, the scheduler wakes a sleeping process
several milliseconds late now and then; neither a server nor a client can then keep 2 ms
timing. Timing tests check this first and skip with the measured numbers instead of failing on
the neighbours' load; benchmarks print it beside their results.
"""

from __future__ import annotations

import time


def wakeup_lag_s(samples: int = 200, sleep_s: float = 0.001) -> dict[str, float]:
    """p50/p90/max of (actual - asked) duration of `samples` sleeps of `sleep_s`, in seconds."""
    lags = []
    for _ in range(samples):
        t = time.perf_counter()
        time.sleep(sleep_s)
        lags.append(time.perf_counter() - t - sleep_s)
    lags.sort()
    return {
        "wakeup_lag_s_p50": lags[len(lags) // 2],
        "wakeup_lag_s_p90": lags[int(len(lags) * 0.9)],
        "wakeup_lag_s_max": lags[-1],
    }


def too_busy_for(tolerance_s: float) -> str | None:
    """A reason string if 10 % of wake-ups are later than half the tolerance, else None."""
    lag = wakeup_lag_s()
    if lag["wakeup_lag_s_p90"] > tolerance_s / 2:
        return (
            f"host too busy for a {tolerance_s * 1e3:g} ms timing check: 1 ms sleeps wake up "
            f"p50 {lag['wakeup_lag_s_p50'] * 1e3:.2f} ms / p90 {lag['wakeup_lag_s_p90'] * 1e3:.2f} ms late"
        )
    return None
