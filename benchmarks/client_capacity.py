"""How much streamed load can a client generate, and how exactly does it time it?

Starts `harness serve-fake` (scripted TTFT and ITL) on loopback and drives it with our client
and with the peers - GuideLLM, AIPerf, `vllm bench serve` - each from its own virtual
environment (see benchmarks/install_peers.sh; a missing one is skipped and the reason printed).
Every tool runs the same closed-loop concurrency ladder. For each tool:

* capacity: the highest output tok/s and req/s it reached at a level where its measured TPOT
  ((E2E - TTFT) / (tokens - 1); GuideLLM and AIPerf call it ITL) stayed within 1 % of the
  scripted ITL. Past that the client (or the host) no longer keeps up with the stream.
* timing error: its reported TTFT and per-chunk gap percentiles (p50, p99) minus the scripted
  values, at the lowest level.

The server's own write lateness (`/stats`) is printed per run: when the server itself falls
behind, no client can be right, and the row says so. The table goes to stdout and to
results/evidence/client_capacity.md (+ .json). Usage:

    python benchmarks/client_capacity.py [--levels 8,32,128] [--seconds 5] [--tools ours,guidellm,...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peers import PEERS, Level, PeerSkipped  # noqa: E402
from harness import metrics  # noqa: E402
from harness.client.aio import loop_name, run_loop  # noqa: E402
from harness.client.openai_stream import RequestSpec, StreamClient  # noqa: E402
from harness.engines.process import free_port  # noqa: E402
from harness.load.driver import PointLoad, run_point  # noqa: E402
from harness.testing.quiet import wakeup_lag_s  # noqa: E402


def start_server(port: int, ttft_ms: float, itl_ms: float, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "harness", "serve-fake", "--port", str(port)]
    cmd += ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--spin-streams", "4"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"fake server did not start, see {log}")


def make_tokenizer(d: Path) -> Path:
    """A local word-level tokenizer directory (tokenizer.json + config) every tool can load offline."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from harness.load.workload import _WORDS

    vocab = {"[UNK]": 0, "<s>": 1, "</s>": 2}
    for w in [*_WORDS, *(f"t{i}" for i in range(8192)), *"0123456789.,:;!?", "a", "the", "I"]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "bos_token": "<s>"}
    (d / "tokenizer_config.json").write_text(
        json.dumps({**cfg, "eos_token": "</s>", "model_max_length": 1 << 20})
    )
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return d


def run_ours_tool(tool: str, url: str, lv: Level) -> dict[str, Any]:
    if tool == "ours":
        return run_ours(url, lv)
    if tool == "ours-workers2":
        return run_ours(url, lv, workers=2)
    if tool == "httpx-baseline":
        from benchmarks.httpx_client import HttpxStreamClient

        return run_ours(url, lv, client_cls=HttpxStreamClient)
    raise SystemExit(
        f"unknown tool {tool!r} (allowed: ours, ours-workers2, httpx-baseline, {', '.join(PEERS)})"
    )


def run_ours(
    url: str, lv: Level, workers: int = 1, client_cls: type[StreamClient] = StreamClient
) -> dict[str, Any]:
    """Our driver, closed loop at lv.concurrency for lv.seconds."""
    prompt = " ".join(["hello"] * lv.input_tokens)
    n = lv.concurrency * (int(3 * lv.seconds / lv.e2e_s) + 4)  # the duration ends the level first
    specs = [RequestSpec(prompt, lv.output_tokens)] * n
    warm = [RequestSpec(prompt, lv.output_tokens)] * lv.concurrency
    client = client_cls(url, "fake", extra_body={"ignore_eos": True})
    load = PointLoad("bench", concurrency=lv.concurrency, duration_s=lv.seconds, workers=workers)

    async def go() -> Any:
        async with client:
            return await run_point(client, load, warm, specs, 0, lambda r: None)

    out = run_loop(go())
    rec = [r for r in out.records if not r.warmup and r.ok]
    row = metrics.summarize(rec)
    gaps = sorted(x for r in rec for x in metrics.itl_s(r))
    return {
        "req_s": row["req_s"],
        "out_tok_s": row["output_tok_s"],
        "tpot_ms": row["tpot_s_p50"] * 1e3,
        "ttft_ms_p50": row["ttft_s_p50"] * 1e3,
        "ttft_ms_p99": row["ttft_s_p99"] * 1e3,
        "itl_ms_p50": statistics.median(gaps) * 1e3 if gaps else None,
        "itl_ms_p99": gaps[int(0.99 * (len(gaps) - 1))] * 1e3 if gaps else None,
        "requests": len(rec),
        "client_cpu_util": out.client.get("client_cpu_util_max"),
        # CPU the client spent per streamed token: what bounds it once the server is fast enough
        "client_cpu_us_per_tok": out.client["client_cpu_s"] / max(1, row["output_tokens"]) * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="8,32,128", help="closed-loop concurrencies")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each level")
    ap.add_argument("--ttft-ms", type=float, default=20.0)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--input-tokens", type=int, default=32)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--tools", default="ours,ours-workers2,httpx-baseline,guidellm,aiperf,vllm")
    ap.add_argument("--venvs", default="/tmp", help="directory holding venv-lg-<peer> environments")
    ap.add_argument("--out", default=str(ROOT / "results" / "evidence" / "client_capacity"))
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    tools = args.tools.split(",")
    work = Path(tempfile.mkdtemp(prefix="client-capacity-"))
    tok_dir = make_tokenizer(work / "tokenizer")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(port, args.ttft_ms, args.itl_ms, work / "server.log")
    t_start = time.monotonic()
    host = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
        **{k.replace("_lag_s_", "_lag_ms_"): round(v * 1e3, 3) for k, v in wakeup_lag_s().items()},
    }
    print(f"host: {host}  (wakeup_lag in ms)", flush=True)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    e2e_s = (args.ttft_ms + (args.output_tokens - 1) * args.itl_ms) / 1e3
    lvs = [Level(c, args.seconds, args.input_tokens, args.output_tokens, e2e_s) for c in levels]
    try:
        for tool in tools:
            httpx.post(url + "/stats/reset", timeout=10)
            t0 = time.monotonic()
            try:
                if tool in PEERS:
                    results = PEERS[tool](Path(args.venvs), url, tok_dir, lvs, work / tool)
                else:
                    results = []
                    for lv in lvs:  # ours: per level, so the server's lateness is per level too
                        httpx.post(url + "/stats/reset", timeout=10)
                        results.append(run_ours_tool(tool, url, lv))
                        results[-1]["server"] = httpx.get(url + "/stats", timeout=10).json()
            except PeerSkipped as e:
                skipped[tool] = str(e)
                print(f"{tool}: skipped: {e}", flush=True)
                continue
            srv = httpx.get(url + "/stats", timeout=10).json()
            for lv, res in zip(lvs, results, strict=False):
                s = res.pop("server", srv)
                row = {"tool": tool, "concurrency": lv.concurrency, **res}
                row["server_write_late_ms_p99"] = (s["write_late_s_p99"] or 0) * 1e3
                # a peer tool runs every level in one go: the server's figure is over all of them
                row["server_stats_over"] = "level" if s is not srv else "all levels"
                rows.append(row)
                print(json.dumps(row), flush=True)
            print(f"{tool}: {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    table = summarize(rows, skipped, args, host, time.monotonic() - t_start)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "skipped": skipped, "host": host}, indent=1)
    )
    shutil.rmtree(work, ignore_errors=True)


def summarize(
    rows: list[dict[str, Any]], skipped: dict[str, str], args: Any, host: dict[str, Any], wall_s: float
) -> str:
    itl, ttft = args.itl_ms, args.ttft_ms
    lines = [
        f"# Client capacity against `harness serve-fake` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Scripted TTFT {ttft:g} ms, ITL {itl:g} ms, {args.output_tokens} output tokens, closed loop at "
        f"concurrency {args.levels}, {args.seconds:g} s per level. Host: {host['cpus']} CPUs, load average "
        f"at start {host['loadavg_start'][0]:.1f}, 1 ms sleeps woke p50 {host['wakeup_lag_ms_p50']} ms / "
        f"p90 {host['wakeup_lag_ms_p90']} ms late; client event loop: {loop_name()}. Benchmark wall time "
        f"{wall_s:.0f} s.",
        "",
        "Capacity = highest level whose TPOT p50 is within 1 % of the scripted ITL. Errors are "
        "reported p50/p99 minus scripted, at the lowest level (ms).",
        "",
        "| tool | capacity out tok/s | req/s | ratio to best peer | TPOT p50 ms at levels | "
        "TTFT err p50 / p99 | ITL err p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    best: dict[str, dict[str, Any] | None] = {}
    for tool in dict.fromkeys(r["tool"] for r in rows):
        ok = [r for r in rows if r["tool"] == tool and r["tpot_ms"] and abs(r["tpot_ms"] - itl) <= 0.01 * itl]
        best[tool] = max(ok, key=lambda r: r["out_tok_s"]) if ok else None
    peers = [b["out_tok_s"] for t, b in best.items() if b and t in PEERS]
    best_peer = max(peers) if peers else None
    for tool in best:
        rs = [r for r in rows if r["tool"] == tool]
        b, low = best[tool], rs[0]
        cap = f"{b['out_tok_s']:.0f}" if b else "none within 1 %"
        reqs = f"{b['req_s']:.1f}" if b else "-"
        ratio = f"{b['out_tok_s'] / best_peer:.2f}" if b and best_peer else "-"
        tpots = ", ".join(f"c{r['concurrency']}: {r['tpot_ms']:.3f}" for r in rs if r["tpot_ms"])

        def err(key: str, ref: float, r: dict[str, Any] = low) -> str:
            p50, p99 = r.get(f"{key}_p50"), r.get(f"{key}_p99")
            if p50 is None or p99 is None:
                return "n/a"
            return f"{p50 - ref:+.2f} / {p99 - ref:+.2f}"

        lines.append(
            f"| {tool} | {cap} | {reqs} | {ratio} | {tpots} | {err('ttft_ms', ttft)} | {err('itl_ms', itl)} |"
        )
    for tool, why in skipped.items():
        lines.append(f"| {tool} | skipped: {why} | | | | | |")
    late = []
    for r in rows:
        if r.get("server_stats_over") == "all levels":  # one figure per tool: said once
            said = f"{r['tool']}@all levels {r['server_write_late_ms_p99']:.2f}"
            if said not in late:
                late.append(said)
        else:
            late.append(f"{r['tool']}@c{r['concurrency']} {r['server_write_late_ms_p99']:.2f}")
    lines += ["", "Server write lateness p99 per run of a tool (ms): " + ", ".join(late), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
