"""llama.cpp's `llama-bench` beside its server: the engine alone, the server's own timings and the client.

People compare `llama-bench` numbers with what a `llama-server` delivers and find they disagree. Both
run the same llama.cpp code; what differs is what each times and with which settings. A scenario's
`engine.llama_bench` runs llama-bench on the variant's GGUF with the server's settings (GPU layers,
threads, batch size, flash attention, the KV cache and split options of `extra_args`) and the
workload's lengths, before that variant's server starts (so neither takes CPU or memory from the other):

* `ppP`      prompt processing: P prompt tokens in one batch, tok/s = P / time
* `tgN`      text generation: N tokens one at a time from an empty context, tok/s = N / time
* `ppP+tgN`  one whole request: P prompt tokens, then N generated, tok/s = (P + N) / time

The report sets beside them, from the variant's concurrency-1 closed-loop point (one request at a time,
as llama-bench runs): llama.cpp's own `timings` in the streams (prompt and predicted tokens per second,
the engine inside the server) and the client's view (P / TTFT, 1 / TPOT, (P + N) / E2E), which adds HTTP,
streaming, sampling, detokenization and the first generated token to the prefill. The ratios say where
the gap comes from.
"""

from __future__ import annotations

import json
import math
import numbers
import shutil
from pathlib import Path
from typing import Any

from harness.engines.process import EngineError, ManagedProcess, abort_reason
from harness.scenario import LlamaCppEngine, Workload

# server options llama-bench takes in the same form (flag, one value): carried over from extra_args
SAME_FLAGS = frozenset(
    {
        "-ctk",
        "--cache-type-k",
        "-ctv",
        "--cache-type-v",
        "-ub",
        "--ubatch-size",
        "-sm",
        "--split-mode",
        "-mg",
        "--main-gpu",
        "-ts",
        "--tensor-split",
        "-ot",
        "--override-tensor",
        "-ncmoe",
        "--n-cpu-moe",
    }
)
# server switches llama-bench takes as a 0/1 option
SWITCHES = {"-nkvo": ("-nkvo", "1"), "--no-kv-offload": ("-nkvo", "1"), "--no-mmap": ("-mmp", "0")}


def binary(cfg: LlamaCppEngine) -> str | None:
    """The llama-bench executable: `llama_bench.binary`, else `llama-bench` beside the llama-server
    binary the scenario names (one build makes both), else on PATH; None when there is none."""
    lb = cfg.llama_bench
    if lb is not None and lb.binary:
        return str(Path(lb.binary).expanduser())
    if cfg.launcher == "llama-server":
        server = Path(cfg.binary).expanduser() if cfg.binary else None
        if server is None and (found := shutil.which("llama-server")):
            server = Path(found)
        if server is not None and (beside := server.resolve().parent / "llama-bench").is_file():
            return str(beside)
    return shutil.which("llama-bench")


def carried_args(cfg: LlamaCppEngine) -> tuple[list[str], list[str]]:
    """The server's `extra_args` as llama-bench options, and those llama-bench has no equivalent for
    (xllamacpp's KEY=VALUE settings are not carried)."""
    if cfg.launcher == "xllamacpp":
        return [], list(cfg.extra_args)
    carried: list[str] = []
    left: list[str] = []
    args = list(cfg.extra_args)
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in SAME_FLAGS:
            if eq:
                carried += [name, value]
            elif i + 1 < len(args):
                carried += [name, args[i + 1]]
                i += 1
            else:
                left.append(args[i])
        elif args[i] in SWITCHES:
            carried += list(SWITCHES[args[i]])
        else:
            left.append(args[i])
        i += 1
    return carried, left


def lengths(workload: Workload) -> tuple[int, int]:
    """(prompt, generated) tokens for llama-bench: the workload's lengths, their means where drawn from a
    distribution."""
    p, n = workload.input_tokens, workload.output_tokens
    return (p if isinstance(p, int) else p.mean), (n if isinstance(n, int) else n.mean)


def argv(exe: str, cfg: LlamaCppEngine, model_path: str, n_prompt: int, n_gen: int) -> list[str]:
    """llama-bench's command line: the three tests at the workload's lengths, JSON on stdout, and the
    settings the server gets (batch size, threads, flash attention as the server is started with them;
    llama-bench's defaults equal llama-server's for the rest)."""
    from harness.engines.llamacpp import native_ngl

    lb = cfg.llama_bench
    reps = lb.repetitions if lb is not None else 3
    out = [exe, "-m", model_path, "-p", str(n_prompt), "-n", str(n_gen), "-pg", f"{n_prompt},{n_gen}"]
    out += ["-r", str(reps), "-o", "json", "-ngl", native_ngl(cfg.n_gpu_layers)]
    if cfg.threads:
        out += ["-t", str(cfg.threads)]
    if cfg.batch_size:
        out += ["-b", str(cfg.batch_size)]
    if cfg.flash_attn is not None:
        out += ["-fa", "on" if cfg.flash_attn else "off"]
    return out + carried_args(cfg)[0] + list(lb.extra_args if lb is not None else ())


def test_name(n_prompt: int, n_gen: int, n_depth: int = 0) -> str:
    """llama-bench's name for a test: pp512, tg128, pp512+tg128, with `@ dD` for a context depth."""
    name = "+".join(x for x in (f"pp{n_prompt}" if n_prompt else "", f"tg{n_gen}" if n_gen else "") if x)
    return name + (f" @ d{n_depth}" if n_depth else "")


# llama-bench JSON fields kept per test (settings as llama-bench resolved them, and its timings)
KEPT = (
    "n_prompt",
    "n_gen",
    "n_depth",
    "avg_ts",
    "stddev_ts",
    "avg_ns",
    "n_threads",
    "n_gpu_layers",
    "n_batch",
    "n_ubatch",
    "flash_attn",
    "type_k",
    "type_v",
    "backends",
)


def parse(text: str) -> list[dict[str, Any]]:
    """llama-bench's `-o json` output -> one dict per test: its name, the KEPT fields and the tok/s of
    every repetition (`samples_ts`). Raises ValueError when the text is not such output."""
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(t, dict) for t in data):
        raise ValueError("llama-bench output is not a JSON list of tests")
    tests = []
    for t in data:
        if not all(isinstance(t.get(k), int) for k in ("n_prompt", "n_gen")) or "avg_ts" not in t:
            raise ValueError(f"llama-bench test without n_prompt, n_gen and avg_ts: {sorted(t)}")
        row: dict[str, Any] = {"test": test_name(t["n_prompt"], t["n_gen"], t.get("n_depth") or 0)}
        row.update({k: t[k] for k in KEPT if k in t})
        row["samples_ts"] = list(t.get("samples_ts") or [])
        tests.append(row)
    return tests


def build_of(text: str) -> str | None:
    """`build_commit (build_number)` of the llama-bench that wrote the JSON, where it knows them (a build
    from a source tree without git history says `unknown`)."""
    try:
        first = json.loads(text)[0]
        commit, number = first["build_commit"], first["build_number"]
    except (ValueError, LookupError, TypeError):
        return None
    return None if commit == "unknown" else f"{commit} ({number})"


def run(cfg: LlamaCppEngine, model_path: str, workload: Workload, run_dir: Path, tag: str) -> dict[str, Any]:
    """Run llama-bench for one engine config; its JSON goes to `llama-bench-<tag>.json` and its log to
    `llama-bench-<tag>.log` in the run directory. Returns the manifest entry: the command, the tests, and
    `error` where it could not run or its output could not be read (the run goes on without it).
    Re-raises EngineError when the run is being stopped (Ctrl-C)."""
    n_prompt, n_gen = lengths(workload)
    _, left = carried_args(cfg)
    exe = binary(cfg)
    entry: dict[str, Any] = {"file": f"llama-bench-{tag}.json", "log": f"llama-bench-{tag}.log"}
    if left:
        entry["server_args_not_carried"] = left
    if exe is None:
        entry["error"] = (
            "no llama-bench executable: name it in llama_bench.binary, or put it on PATH "
            "(scripts/gpu_bench.sh build makes it beside llama-server)"
        )
        return entry
    cmd = argv(exe, cfg, model_path, n_prompt, n_gen)
    entry["command"] = cmd
    out = run_dir / entry["file"]
    proc = ManagedProcess(cmd, run_dir / entry["log"], stdout_path=out)
    timeout = cfg.llama_bench.timeout_s if cfg.llama_bench is not None else 900.0
    try:
        proc.start()
        code = proc.wait_exit(timeout, "llama-bench")
    except EngineError as e:
        if abort_reason():
            raise
        entry["error"] = str(e)
        return entry
    text = out.read_text(errors="replace") if out.exists() else ""
    if code != 0:
        entry["error"] = f"llama-bench exited with code {code} (see {entry['log']})"
        return entry
    try:
        entry["tests"] = parse(text)
    except ValueError as e:
        entry["error"] = f"llama-bench's output could not be read: {e}"
        return entry
    entry["build"] = build_of(text)
    return entry


def _num(x: Any) -> float:
    """A table value as a float (numpy's too); NaN for anything else."""
    return float(x) if isinstance(x, numbers.Real) else math.nan


def _rate(tokens: float, seconds: Any) -> float:
    s = _num(seconds)
    return tokens / s if s > 0 else math.nan


def compare(tests: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """llama-bench's tests beside a concurrency-1 point of the same engine config, one dict per test:

    * prefill `ppP`:      llama-bench P / t;  server `timings.prompt_per_second` (mean over requests);
                          client P / TTFT (mean prompt tokens per request / mean TTFT)
    * decode `tgN`:       llama-bench N / t;  server `timings.predicted_per_second`; client 1 / mean TPOT
    * request `ppP+tgN`:  llama-bench (P + N) / t;  client (P + N) / mean E2E

    `client_vs_bench` = client / llama-bench, `server_vs_bench` = server / llama-bench (NaN where either
    is unknown). P and N are the point's measured means (input and output tokens / successful requests)."""
    ok = _num(row.get("ok"))
    p = _num(row.get("input_tokens")) / ok if ok > 0 else math.nan
    n = _num(row.get("output_tokens")) / ok if ok > 0 else math.nan
    tpot = _num(row.get("tpot_s_mean"))
    client = {
        "prefill": _rate(p, row.get("ttft_s_mean")),
        "decode": 1.0 / tpot if ok > 0 and tpot > 0 else math.nan,
        "request": _rate(p + n, row.get("e2e_s_mean")),
    }
    server = {
        "prefill": _num(row.get("server_prefill_tok_s_mean")),
        "decode": _num(row.get("server_decode_tok_s_mean")),
        "request": math.nan,
    }
    out = []
    for t in tests:
        kind = "request" if t["n_prompt"] and t["n_gen"] else "prefill" if t["n_prompt"] else "decode"
        bench = _num(t.get("avg_ts"))
        out.append(
            {
                "test": t["test"],
                "kind": kind,
                "bench_tok_s": bench,
                "bench_stddev_tok_s": _num(t.get("stddev_ts")),
                "server_tok_s": server[kind],
                "client_tok_s": client[kind],
                "server_vs_bench": server[kind] / bench if bench > 0 else math.nan,
                "client_vs_bench": client[kind] / bench if bench > 0 else math.nan,
                "point_prompt_tokens": p,
                "point_output_tokens": n,
            }
        )
    return out


# repetitions of a llama-bench test further apart than this (stddev / mean) are noted: a busy host
NOISY_CV = 0.2


def noisy(tests: list[dict[str, Any]]) -> list[str]:
    """A line per llama-bench test whose repetitions disagree by more than NOISY_CV (stddev / mean): its
    mean says little, and the host was likely busy (llama.cpp's threads wait for each other, so one core
    taken by something else can stall every step)."""
    out = []
    for t in tests:
        avg, sd = _num(t.get("avg_ts")), _num(t.get("stddev_ts"))
        if avg > 0 and sd / avg > NOISY_CV:
            out.append(
                f"llama-bench {t['test']}: its repetitions vary by {sd / avg:.0%} of their mean "
                f"({', '.join(f'{x:.1f}' for x in t.get('samples_ts') or [])} tok/s): a busy host?"
            )
    return out


Section = tuple[str, list[dict[str, Any]], list[str]]


def sections(manifest: dict[str, Any], points: list[dict[str, Any]]) -> list[Section]:
    """For each engine of the run that ran llama-bench: a title, its `compare` rows against that variant's
    concurrency-1 closed-loop point (the last measured, not cut short) and notes (`noisy`); a title alone
    where llama-bench failed or there is no such point."""
    out: list[Section] = []
    for e in manifest.get("engines") or []:
        b = e.get("llama_bench") if isinstance(e, dict) else None
        if not isinstance(b, dict):
            continue
        vi = e.get("variant", 0)
        head = f"llama-bench beside the server, variant {vi} ({e.get('offload') or 'n_gpu_layers ?'})"
        if b.get("error") or not b.get("tests"):
            out.append((f"{head}: llama-bench did not measure: {b.get('error') or 'no tests'}", [], []))
            continue
        c1 = [
            p
            for p in points
            if p.get("variant", 0) == vi
            and p.get("mode", "closed") == "closed"
            and _num(p.get("concurrency")) == 1
            and not (isinstance(p.get("aborted"), str) and p["aborted"])  # NaN where read from a table
            and _num(p.get("ok")) > 0
        ]
        if not c1:
            out.append((f"{head}: no concurrency-1 closed-loop point to compare with", [], noisy(b["tests"])))
            continue
        build = f"; llama-bench {b['build']}" if b.get("build") else ""
        title = f"{head}, point {c1[-1].get('point_id')}{build}"
        out.append((title, compare(b["tests"], c1[-1]), noisy(b["tests"])))
    return out
