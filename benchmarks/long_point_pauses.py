"""Pauses in a long point: does the client keep sending on time when a point holds many requests?

Each finished request's record stays in memory until the point is summed up, so a point of 300k
requests holds 300k records. A full garbage collection walks all of them while the event loop waits:
no request is sent and no chunk is stamped meanwhile. The harness runs a point's loop without full
collections (`harness.client.aio.no_full_collections`); this script measures what that changes.

It starts `harness serve-fake` (no scripted delay) and runs one closed-loop point of `--requests`
requests twice in this process, through `run_scenario`: once as the harness does, once with full
collections left on. For each it prints the longest gap between consecutive sends (at concurrency C a
send follows each finished request, so a gap much longer than a request is a stall of the loop), how
many gaps were over 100 ms, and E2E p50 / max. Usage:

    python benchmarks/long_point_pauses.py [--requests 300000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import harness.point  # noqa: E402
from benchmarks.client_capacity import start_server  # noqa: E402
from harness.engines.process import free_port  # noqa: E402
from harness.results import iter_records  # noqa: E402
from harness.runner import run_scenario  # noqa: E402
from harness.scenario import parse_scenario  # noqa: E402


def measure(url: str, requests: int, concurrency: int, out: Path, full_collections: bool) -> dict[str, Any]:
    s = parse_scenario(
        {
            "name": "long-point",
            "engine": {
                "type": "external",
                "base_url": f"{url}/v1",
                "health_path": "/health",
                "model": {"source": "served", "name": "fake"},
            },
            "workload": {"input_tokens": 16, "output_tokens": 8},
            "load": {"concurrency": [concurrency], "requests": requests, "warmup_requests": 0},
        }
    )
    held = harness.point.no_full_collections
    if full_collections:
        harness.point.no_full_collections = contextlib.nullcontext  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        res = run_scenario(s, out, show_progress=False)
        wall_s = time.perf_counter() - t0
    finally:
        harness.point.no_full_collections = held
    recs = [r for r in iter_records(res.run_dir) if not r.warmup and r.ok]
    sent = sorted(r.sent_ns for r in recs)
    gaps_s = [(b - a) / 1e9 for a, b in itertools.pairwise(sent)]
    e2e_s = [(r.done_ns - r.sent_ns) / 1e9 for r in recs if r.done_ns]
    return {
        "wall_s": wall_s,
        "ok": len(recs),
        "max_gap_ms": max(gaps_s) * 1e3,
        "gaps_over_100ms": sum(1 for g in gaps_s if g > 0.1),
        "e2e_p50_ms": statistics.median(e2e_s) * 1e3,
        "e2e_max_ms": max(e2e_s) * 1e3,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = start_server(port, 0, 0, Path(tmp) / "fake.log")  # no scripted delay
        try:
            url = f"http://127.0.0.1:{port}"
            rows = {
                "without full collections (the harness)": measure(
                    url, args.requests, args.concurrency, Path(tmp) / "a", False
                ),
                "with full collections": measure(url, args.requests, args.concurrency, Path(tmp) / "b", True),
            }
        finally:
            server.terminate()
            server.wait()
    print(f"one point of {args.requests:,} requests at concurrency {args.concurrency} (serve-fake, no delay)")
    heads = ("wall s", "max send gap ms", "gaps > 100 ms", "E2E p50 ms", "E2E max ms")
    print(f"{'':42} " + " ".join(f"{h:>{w}}" for h, w in zip(heads, (7, 16, 14, 11, 11), strict=True)))
    for name, r in rows.items():
        print(
            f"{name:42} {r['wall_s']:7.1f} {r['max_gap_ms']:16.1f} {r['gaps_over_100ms']:14d} "
            f"{r['e2e_p50_ms']:11.2f} {r['e2e_max_ms']:11.1f}"
        )
    a, b = rows.values()
    print(f"longest stall, with full collections / without: {b['max_gap_ms'] / a['max_gap_ms']:.1f}x")


if __name__ == "__main__":
    main()
