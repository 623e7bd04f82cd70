"""Measure this host's memory bandwidth the way docs/compare.md uses it for a CPU roofline: numpy copies
of large arrays, read + write counted, best of N.

    python -m benchmarks.host_bandwidth [--mib 256] [--repeat 5]   (from the repo root)

Prints GB/s to pass as `--bandwidth cpu=GBS` to `harness compare`, `report` or `roofline`: a CPU host's
bandwidth is not in the hardware catalog. One thread; llama.cpp's threads together may read faster.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from harness.hostinfo import cpu_model


def copy_gb_s(mib: int, repeat: int) -> float:
    """Best of `repeat` copies of a `mib` MiB array: 2 x bytes (one read, one write) / seconds, in GB/s."""
    src = np.ones(mib * 2**20, dtype=np.uint8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    print(f"host: {cpu_model()} · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.2f}")
    gbs = copy_gb_s(a.mib, a.repeat)
    print(f"numpy copy of {a.mib} MiB, read + write counted, best of {a.repeat}: {gbs:.1f} GB/s")


if __name__ == "__main__":
    main()
