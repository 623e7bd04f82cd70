"""Measure what the telemetry samplers cost: CPU time of each sampler's thread as % of one core.

    python -m benchmarks.telemetry_overhead [--seconds 20] [--interval-s 0.1]   (from the repo root)

Runs the CPU sampler (watching this process; at the interval asked and at the one `harness run` uses,
at most 2 Hz) and, where NVML sees a GPU, the NVML sampler, for the given time each, and prints each
sampler thread's CPU seconds over wall seconds. Target: < 1 % of one core at 100 ms.

It also times one mid-run rewrite of an NVML trace of `--trace-hours` of 8 GPUs at the interval (the
sample values are made up; only the writing is timed) and the least time between such rewrites that
`CHECKPOINT_SHARE` then allows.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from harness.hostinfo import cpu_model
from harness.telemetry import nvml
from harness.telemetry.base import CHECKPOINT_SHARE
from harness.telemetry.cpu import MIN_INTERVAL_S, CpuSampler
from harness.telemetry.trace import GpuSeries, write_trace


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


def trace_rewrite_s(hours: float, interval_s: float, gpus: int = 8) -> tuple[float, int]:
    """Seconds to write `hours` of `gpus` GPUs sampled every `interval_s` as a trace; its size in bytes."""
    n = int(hours * 3600 / interval_s)
    sample = {
        "power_w": 700.0, "util_gpu_pct": 98, "mem_used_bytes": 7 * 10**10, "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619, "temp_c": 61, "clocks_event_reasons": 0,
    }  # fmt: skip
    series = []
    for g in range(gpus):
        s = GpuSeries(g)
        for i in range(n):
            counters = {"energy_mj": 10**9 + 70 * i, "pcie_tx_bytes": 1000 * i, "pcie_rx_bytes": 1000 * i}
            s.append(int(i * interval_s * 1e9), {**sample, **counters})
        series.append(s)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = write_trace(Path(d) / "t.jsonl.gz", {"interval_s": interval_s}, [s.copy() for s in series], {})
        return time.perf_counter() - t0, path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval-s", type=float, default=0.1)
    ap.add_argument("--trace-hours", type=float, default=1.0)
    a = ap.parse_args()
    print(f"host: {platform.node()} · {cpu_model()} · {os.cpu_count()} CPUs · interval {a.interval_s} s")
    took_s, size = trace_rewrite_s(a.trace_hours, a.interval_s)
    print(
        f"nvml trace rewrite, {a.trace_hours:g} h x 8 GPUs: {took_s:.2f} s ({size / 1e6:.1f} MB); "
        f"rewritten at most every {took_s / CHECKPOINT_SHARE:.0f} s mid-run"
    )
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
