"""Run llama.cpp's native C++ server in-process via the `xllamacpp` package.

The llamacpp engine starts this module as a subprocess (`python -m harness.engines.xllamacpp_server
--model F --port P ...`); it serves until SIGTERM. Extra `--set attr=value` options assign any other
`xllamacpp.CommonParams` field (values parsed as YAML scalars).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import yaml


def build_params(ns: argparse.Namespace) -> Any:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = ns.model
    p.n_ctx = ns.ctx_size
    p.n_parallel = ns.parallel
    p.n_gpu_layers = ns.n_gpu_layers
    p.endpoint_metrics = True
    # llama.cpp logs where the weights went (load_tensors buffer sizes) at level 4 only (`--set verbosity=N`
    # overrides it); some 40 lines a request, none a token
    p.verbosity = 4
    p.port = ns.port
    p.hostnames = [ns.host]
    if ns.threads:
        p.cpuparams.n_threads = ns.threads
        p.cpuparams_batch.n_threads = ns.threads
    if ns.batch_size:
        p.n_batch = ns.batch_size
    if ns.flash_attn is not None:
        p.flash_attn_type = 1 if ns.flash_attn == "on" else 0
    for item in ns.set or []:
        if problem := set_field(p, item):
            raise SystemExit(f"{problem} (from --set {item})")
    return p


# what CommonParams raises for a value it does not take (AssertionError: its check of a list's length)
_REFUSED = (
    TypeError,
    ValueError,
    OverflowError,
    AttributeError,
    AssertionError,
    RecursionError,
    yaml.YAMLError,
)


def set_field(params: Any, item: str) -> str | None:
    """Set `FIELD=VALUE` (the value read as a YAML scalar) on xllamacpp's CommonParams `params`; what is
    wrong with it instead, if anything (`validate` asks the same of a fresh CommonParams)."""
    key, _, raw = item.partition("=")
    if not hasattr(params, key):
        return f"xllamacpp's CommonParams has no such field ({key})"
    try:
        setattr(params, key, yaml.safe_load(raw))
    except _REFUSED as e:
        return f"xllamacpp's CommonParams.{key} does not take {raw!r} ({e})"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.engines.xllamacpp_server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx-size", type=int, default=4096)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--n-gpu-layers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--flash-attn", choices=["on", "off"], default=None)
    ap.add_argument("--set", action="append", metavar="ATTR=VALUE")
    ns = ap.parse_args(argv)

    import xllamacpp

    print(
        f"xllamacpp {getattr(xllamacpp, '__version__', '?')} serving {ns.model} on {ns.host}:{ns.port}",
        flush=True,
    )
    try:
        server = xllamacpp.Server(build_params(ns))
    except RuntimeError as e:  # llama.cpp refused the settings; its own log lines above say which
        print(f"xllamacpp did not start the server: {e}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        pass
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
