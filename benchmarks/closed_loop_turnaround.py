"""How long does a closed-loop sender take from one request's end to its next send?

Closed loop keeps `concurrency` requests in flight; every moment a sender spends between a request's
last byte and writing the next one is time the server is short of a request, and req/s reads low by
turnaround / E2E. Runs `harness run` against `harness serve-fake` (scripted TTFT and ITL, loopback) at
concurrency 1, where the records alone tell it: turnaround = next `sent_ns` - previous `done_ns`.
Prints its p50/p90/p99 and max, and the share of the point's window it takes. Usage:

    python benchmarks/closed_loop_turnaround.py [--requests 400] [--output-tokens 8] [--itl-ms 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.engines.process import ManagedProcess, free_port  # noqa: E402
from harness.results import iter_records  # noqa: E402

HARNESS = [sys.executable, "-m", "harness"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--output-tokens", type=int, default=8)
    ap.add_argument("--ttft-ms", type=float, default=1.0)
    ap.add_argument("--itl-ms", type=float, default=1.0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        timing = ["--port", str(port), "--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms)]
        server = ManagedProcess([*HARNESS, "serve-fake", *timing], Path(tmp) / "fake.log")
        server.start()
        try:
            server.wait_healthy(f"http://127.0.0.1:{port}/health", 30)
            scen = Path(tmp) / "turnaround.yaml"
            scen.write_text(
                json.dumps(
                    {
                        "name": "turnaround",
                        "engine": {"type": "external", "base_url": f"http://127.0.0.1:{port}/v1"},
                        "workload": {"input_tokens": 16, "output_tokens": a.output_tokens},
                        "load": {"concurrency": [1], "requests": a.requests, "warmup_requests": 4},
                    }
                )
            )
            res = subprocess.run(
                [*HARNESS, "run", str(scen), "--results", str(Path(tmp) / "r"), "--no-progress"],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            server.stop()
        if res.returncode != 0:
            sys.exit(f"harness run failed:\n{res.stderr[-3000:]}")
        (run,) = [p for p in (Path(tmp) / "r").iterdir() if p.is_dir()]
        recs = sorted((r for r in iter_records(run) if not r.warmup and r.ok), key=lambda r: r.sent_ns)
    gaps_ms = np.array([(b.sent_ns - a_.done_ns) / 1e6 for a_, b in itertools.pairwise(recs)])
    e2e_ms = np.array([(r.done_ns - r.sent_ns) / 1e6 for r in recs if r.done_ns])
    window_ms = (recs[-1].done_ns - recs[0].sent_ns) / 1e6  # type: ignore[operator]
    p50, p90, p99 = np.percentile(gaps_ms, [50, 90, 99])
    print(f"{len(recs)} requests at concurrency 1, E2E p50 {np.median(e2e_ms):.3f} ms")
    print(f"turnaround ms: p50 {p50:.3f}  p90 {p90:.3f}  p99 {p99:.3f}  max {gaps_ms.max():.3f}")
    print(f"share of the window spent between requests: {gaps_ms.sum() / window_ms:.2%}")


if __name__ == "__main__":
    main()
