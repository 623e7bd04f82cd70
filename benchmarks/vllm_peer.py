"""Our client against `vllm bench serve`, side by side on one real vLLM server (a script, not a test).

    HARNESS_VLLM_PYTHON=.venv-vllm/bin/python python -m benchmarks.vllm_peer [--levels 1,2] [--requests 24]

Starts vLLM through the harness's engine class (tiny-llama, dummy weights; on GPUs pass --model and
--precision), then for each concurrency level runs `vllm bench serve` and `harness run` (external engine) at
the same time, each with that many streams, and prints, over the interval where both were streaming, the
tokens per second each tool saw arrive (ours from its chunk stamps, vllm bench serve's from its per-request
start times, TTFTs and ITLs: the same monotonic clock), plus each tool's own output tok/s. Side by side,
because back-to-back runs on a shared 2-core VM drift with the host. Writes results/evidence/vllm_peer.json
(--out elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.peers import vllm_bench_code
from harness.engines.vllm import VllmServer
from harness.results import iter_records
from harness.runner import run_scenario
from harness.scenario import parse_scenario
from harness.telemetry.prometheus import parse_metrics


def start_bench(python: str, args: list[str]) -> subprocess.Popen[str]:
    """`vllm bench serve`, imported and waiting for a line on stdin (see peers.vllm_bench_code)."""
    proc = subprocess.Popen(
        [python, "-c", vllm_bench_code(wait=True), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "READY":
            return proc
    raise SystemExit(f"vllm bench serve did not start (exit {proc.wait()})")


def finished(base_url: str) -> float:
    """Requests the server has finished (vLLM's success counter, all finish reasons)."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return sum(v for k, (_, v) in parse_metrics(text).items() if k.startswith("vllm_request_success_total"))


def token_times_s(starts: list[float], ttfts: list[float], itls: list[list[float]]) -> list[float]:
    """Arrival time of every streamed chunk: start + TTFT, then + each inter-chunk gap."""
    out: list[float] = []
    for st, first, gaps in zip(starts, ttfts, itls, strict=True):
        t = st + first
        out.append(t)
        for g in gaps:
            t += g
            out.append(t)
    return out


def rate_in(times: list[float], t0: float, t1: float) -> float:
    return sum(1 for t in times if t0 <= t <= t1) / (t1 - t0)


def one_level(server: VllmServer, base_url: str, c: int, n: int, lens: tuple[int, int], work: Path) -> dict:
    python = server.env.python if server.env else sys.executable
    inp, out_tokens = lens
    out = work / f"bench-c{c}.json"
    args = [
        "--backend", "vllm", "--base-url", base_url, "--model", server.model_name,
        "--tokenizer", str(server.model_dir), "--dataset-name", "random",
        "--random-input-len", str(inp - 1), "--random-output-len", str(out_tokens), "--ignore-eos",
        "--num-prompts", str(n), "--max-concurrency", str(c), "--save-result", "--save-detailed",
        "--result-dir", str(work), "--result-filename", out.name, "--seed", "0",
    ]  # fmt: skip
    s = parse_scenario(
        {
            "name": f"vllm-peer-c{c}",
            "engine": {
                "type": "external",
                "base_url": base_url,
                "model": {"source": "served", "name": server.model_name},
                "extra_body": {"ignore_eos": True},  # as the peer's --ignore-eos
            },
            "workload": {
                "input_tokens": inp,
                "output_tokens": out_tokens,
                "tokenizer": str(server.model_dir / "tokenizer.json"),
            },
            "load": {"concurrency": [c], "requests": n, "warmup_requests": 0},
            "telemetry": {"cpu": False, "nvml": False},
        }
    )
    bench = start_bench(python, args)
    assert bench.stdin is not None
    done0 = finished(base_url)
    bench.stdin.write("go\n")
    bench.stdin.flush()
    t_go = time.monotonic()
    while finished(base_url) < done0 + 1:  # its one test prompt; the measured ones follow
        if time.monotonic() - t_go > 120 or bench.poll() is not None:
            raise SystemExit("vllm bench serve sent nothing")
        time.sleep(0.02)
    res = run_scenario(s, work / "runs", show_progress=False)
    if bench.wait(timeout=1800) != 0:
        raise SystemExit("vllm bench serve failed")
    peer = json.loads(out.read_text())
    recs = [r for r in iter_records(res.run_dir) if not r.warmup]
    ours_t = [t / 1e9 for r in recs for t in r.chunk_ns]
    peer_t = token_times_s(peer["start_times"], peer["ttfts"], peer["itls"])
    t0 = max(min(r.sent_ns for r in recs) / 1e9, min(peer["start_times"]))
    t1 = min(max(ours_t), max(peer_t))
    a, b = rate_in(ours_t, t0, t1), rate_in(peer_t, t0, t1)
    return {
        "concurrency": c,
        "overlap_s": round(t1 - t0, 2),
        "ours_side_by_side_tok_s": round(a, 1),
        "peer_side_by_side_tok_s": round(b, 1),
        "ratio": round(a / b, 3),
        "ours_output_tok_s": round(res.rows[0]["output_tok_s"], 1),
        "peer_output_tok_s": round(peer["output_throughput"], 1),
        "ours_errors": res.rows[0]["errors"],
        "peer_completed": peer["completed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-llama", help="catalog model (dummy weights)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--levels", default="1,2")
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--input-tokens", type=int, default=64)
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--out", default="results/evidence/vllm_peer.json")
    a = ap.parse_args()
    engine: dict[str, Any] = {
        "type": "vllm",
        "model": {"source": "catalog", "name": a.model, "weights": "dummy"},
        "precision": a.precision,
        "device": a.device,
        "max_model_len": 1024,
        "max_num_seqs": 8,
        "enforce_eager": a.device == "cpu",
        "env": {"VLLM_CPU_KVCACHE_SPACE": "1"} if a.device == "cpu" else {},
    }
    hw = {"gpus": 0} if a.device == "cpu" else {"gpus": 1}
    cfg = parse_scenario({"name": "peer", "engine": engine, "hardware": hw}).engine
    rows = []
    with tempfile.TemporaryDirectory(prefix="vllm-peer-") as tmp:
        work = Path(tmp)
        server = VllmServer(cfg, work / "engine.log")
        try:
            base_url = server.start()
            for c in (int(x) for x in a.levels.split(",")):
                row = one_level(server, base_url, c, a.requests, (a.input_tokens, a.output_tokens), work)
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            server.stop()
        version = server.version()
    report = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "vllm": version,
        "model": a.model,
        "requests": a.requests,
        "lengths": [a.input_tokens, a.output_tokens],
        "host_cpus": os.cpu_count(),
        "levels": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
