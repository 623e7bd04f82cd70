"""Wait until a Ray cluster has N live nodes (run on the head node of a multi-node launch).

`python -m harness.cloud.ray_wait --nodes 2 --timeout-s 600`; exit 0 when all are up, 1 on timeout.
Needs the `ray` package (the vLLM image ships it); imported here only.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.cloud.ray_wait")
    ap.add_argument("--nodes", type=int, required=True, help="live nodes to wait for (head included)")
    ap.add_argument("--timeout-s", type=float, default=600.0)
    ap.add_argument("--address", default="auto", help="Ray address (auto: the cluster on this host)")
    ap.add_argument("--interval-s", type=float, default=5.0)
    args = ap.parse_args(argv)

    import ray

    ray.init(address=args.address, logging_level=logging.ERROR)
    try:
        deadline = time.monotonic() + args.timeout_s
        while True:
            alive = sum(1 for n in ray.nodes() if n.get("Alive"))
            gpus = ray.cluster_resources().get("GPU", 0)
            print(f"ray: {alive}/{args.nodes} nodes alive, {gpus:g} GPUs", flush=True)
            if alive >= args.nodes:
                return 0
            if time.monotonic() >= deadline:
                msg = f"ray: only {alive} of {args.nodes} nodes joined in {args.timeout_s:g} s"
                print(msg, file=sys.stderr)
                return 1
            time.sleep(args.interval_s)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
