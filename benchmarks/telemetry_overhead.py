"""Measure what the telemetry samplers cost: CPU time of each sampler's thread as % of one core.

    python -m benchmarks.telemetry_overhead [--seconds 20] [--interval-s 0.1]   (from the repo root)

Runs the CPU sampler (watching this process; at the interval asked and at the one `harness run` uses,
at most 2 Hz) and, where NVML sees a GPU, the NVML sampler, for the given time each, and prints each
sampler thread's CPU seconds over wall seconds. Target: < 1 % of one core at 100 ms.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from harness.hostinfo import cpu_model
from harness.telemetry import nvml
from harness.telemetry.cpu import MIN_INTERVAL_S, CpuSampler


def measure(sampler: object, seconds: float) -> tuple[float, int]:
    s: object = sampler
    t0 = time.perf_counter()
    s.start()  # type: ignore[attr-defined]
    time.sleep(seconds)
    s.stop()  # type: ignore[attr-defined]
    wall = time.perf_counter() - t0
    cpu = s.thread_cpu_s or 0.0  # type: ignore[attr-defined]
    n = len(s.t_ns) if hasattr(s, "t_ns") else len(s.series[0])  # type: ignore[attr-defined]
    return 100.0 * cpu / wall, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval-s", type=float, default=0.1)
    a = ap.parse_args()
    print(f"host: {platform.node()} · {cpu_model()} · {os.cpu_count()} CPUs · interval {a.interval_s} s")
    for iv in sorted({a.interval_s, max(a.interval_s, MIN_INTERVAL_S)}):
        pct, n = measure(CpuSampler(os.getpid(), iv), a.seconds)
        print(f"cpu sampler at {iv:g} s:  {pct:.3f} % of one core ({n} samples in {a.seconds:g} s)")
    try:
        gpus = nvml.probe()
    except nvml.NvmlError as e:
        print(f"nvml sampler: not measured ({e})")
        return
    pct, n = measure(nvml.NvmlSampler(a.interval_s), a.seconds)
    print(f"nvml sampler: {pct:.3f} % of one core ({gpus} GPU(s), {n} samples per GPU in {a.seconds:g} s)")


if __name__ == "__main__":
    main()
