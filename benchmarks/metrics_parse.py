"""Measure what parsing one engine /metrics scrape costs: the recorded vLLM payload through the harness's
parser (prometheus_client's text parser), median of many parses.

    python -m benchmarks.metrics_parse [--repeat 50]   (from the repo root)

The harness parses scrapes after a point ends, not during its load: a parse holds the interpreter that
times the streams (docs/vllm.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from harness.hostinfo import cpu_model
from harness.telemetry.prometheus import parse_metrics

PAYLOAD = Path(__file__).resolve().parent.parent / "tests" / "contract" / "payloads" / "vllm_metrics.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    a = ap.parse_args()
    text = PAYLOAD.read_text()
    took_s = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        parse_metrics(text)
        took_s.append(time.perf_counter() - t0)
    print(f"host: {cpu_model()} · {os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.2f}")
    size_kb = len(text.encode()) / 1000
    print(
        f"parse {PAYLOAD.name} ({size_kb:.0f} kB): median {statistics.median(took_s) * 1e3:.1f} ms, "
        f"min {min(took_s) * 1e3:.1f} ms, max {max(took_s) * 1e3:.1f} ms over {a.repeat} parses"
    )


if __name__ == "__main__":
    main()
