"""Measure what reading a GGUF's header costs before a run: the harness's header reader against gguf-py's
GGUFReader, on the Gemma-3-270M GGUF (262,144-token vocabulary) or a file given.

    python -m benchmarks.gguf_header [PATH] [--repeat 3]   (from the repo root)

Both read the same fields and tensor table (tests/unit/test_gguf_header.py checks that they agree);
GGUFReader also builds a numpy view of every vocabulary entry.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from harness.gguf_header import read_header
from harness.hostinfo import cpu_model


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", type=Path, help="a GGUF file (default: the Gemma-3-270M GGUF)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import gguf

    if args.path is None:
        from harness.models import gemma_path

        args.path = gemma_path()
    head = read_header(args.path)
    lean = _seconds(lambda: read_header(args.path), args.repeat)
    full = _seconds(lambda: gguf.GGUFReader(str(args.path)), args.repeat)
    print(f"{args.path.name}: {len(head.fields)} fields, {len(head.tensors)} tensors; CPU {cpu_model()}")
    print(
        f"header reader {lean * 1000:.0f} ms, gguf.GGUFReader {full * 1000:.0f} ms (median of {args.repeat})"
    )
    print(f"ratio: {full / lean:.1f}x")


if __name__ == "__main__":
    main()
