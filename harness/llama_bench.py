"""llama.cpp's `llama-bench` beside its server: the engine alone, the server's own timings and the client.

People compare `llama-bench` numbers with what a `llama-server` delivers and find they disagree. Both
run the same llama.cpp code; what differs is what each times and with which settings. A scenario's
`engine.llama_bench` (launcher llama-server) runs the llama-bench built beside that server on the
variant's GGUF with the server's settings (GPU layers, threads, batch sizes, flash attention, and the KV
cache, split, placement and thread options of `extra_args`) and the workload's lengths P and N, before the
variant's server starts (so neither takes CPU or memory from the other). Its tests do the work of one
request of the workload:

* `ppP`               prefill: a P-token prompt in one batch; tok/s = P / time
* `tgN @ dP`          decode: N tokens one at a time after P tokens of context, as the server decodes;
                      tok/s = N / time
* `ppP+tg(N-1)`       one whole request: the prompt, then N - 1 decode steps (the first output token
                      comes from the prefill, as in the server); tok/s = (P + N - 1) / time

The report sets beside them, from the variant's concurrency-1 closed-loop point (one request at a time,
as llama-bench runs): llama.cpp's own `timings` in the streams (prompt and predicted tokens per second:
the engine inside the server, its slot loop and sampling included) and the client's view (P / TTFT,
1 / TPOT, and the same P + N - 1 over E2E), which adds HTTP, streaming and detokenization. The ratios say
where the gap comes from.
"""

from __future__ import annotations

import json
import math
import numbers
import shutil
import time
from pathlib import Path
from typing import Any

from harness.engines.llamacpp import native_ngl
from harness.engines.process import EngineError, ManagedProcess, abort_reason
from harness.fileio import user_path
from harness.scenario import LlamaCppEngine, Workload

# llama-server options llama-bench also takes, with the separator llama-bench wants between the items of
# a list value ("": no list; a comma there would make llama-bench run one test configuration per item)
CARRIED: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("-ngl", "--n-gpu-layers", "--gpu-layers"), ("-ngl", "")),
    **dict.fromkeys(("-t", "--threads"), ("-t", "")),
    **dict.fromkeys(("-b", "--batch-size"), ("-b", "")),
    **dict.fromkeys(("-ub", "--ubatch-size"), ("-ub", "")),
    **dict.fromkeys(("-fa", "--flash-attn"), ("-fa", "")),
    **dict.fromkeys(("-ctk", "--cache-type-k"), ("-ctk", "")),
    **dict.fromkeys(("-ctv", "--cache-type-v"), ("-ctv", "")),
    **dict.fromkeys(("-sm", "--split-mode"), ("-sm", "")),
    **dict.fromkeys(("-mg", "--main-gpu"), ("-mg", "")),
    **dict.fromkeys(("-ncmoe", "--n-cpu-moe"), ("-ncmoe", "")),
    **dict.fromkeys(("-lm", "--load-mode"), ("-lm", "")),
    **dict.fromkeys(("-C", "--cpu-mask"), ("-C", "")),
    "--cpu-strict": ("--cpu-strict", ""),
    "--poll": ("--poll", ""),
    **dict.fromkeys(("-ts", "--tensor-split"), ("-ts", "/")),
    **dict.fromkeys(("-dev", "--device"), ("-dev", "/")),
    **dict.fromkeys(("-ot", "--override-tensor"), ("-ot", ";")),
}
# llama-server switches llama-bench takes as a 0/1 option
SWITCHES = {"-nkvo": ("-nkvo", "1"), "--no-kv-offload": ("-nkvo", "1")}


def binary(cfg: LlamaCppEngine) -> str | None:
    """The llama-bench executable: `llama_bench.binary`, else `llama-bench` beside the llama-server binary
    (one build makes both), else on PATH; None when there is none."""
    lb = cfg.llama_bench
    if lb is not None and lb.binary:
        return str(user_path(lb.binary))
    server = user_path(cfg.binary) if cfg.binary else None
    if server is None and (found := shutil.which("llama-server")):
        server = Path(found)
    if server is not None and (beside := server.resolve().parent / "llama-bench").is_file():
        return str(beside)
    return shutil.which("llama-bench")


def _pairs(args: list[str], takes_value: set[str]) -> list[tuple[str, str | None]]:
    """Command-line items as (option, value) for the options in `takes_value` (`-x V` and `-x=V`), and
    (item, None) for everything else."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in takes_value and (eq or i + 1 < len(args)):
            out.append((name, value if eq else args[i + 1]))
            i += 1 if eq else 2
        else:
            out.append((args[i], None))
            i += 1
    return out


def options(cfg: LlamaCppEngine) -> tuple[dict[str, str], list[str], list[str]]:
    """What llama-bench gets of the server's settings: {llama-bench option: value} from the scenario's
    fields and then `extra_args` (the last one given counts, as for the server), the server options left
    out (llama-bench has no equivalent, or the value would split into several test configurations), and
    `llama_bench.extra_args` (whose options of the table replace the server's)."""
    opts = {"-ngl": native_ngl(cfg.n_gpu_layers)}
    if cfg.threads:
        opts["-t"] = str(cfg.threads)
    if cfg.batch_size:
        opts["-b"] = str(cfg.batch_size)
    if cfg.flash_attn is not None:
        # 0/1, as every llama-bench reads it: builds before mid-2026 parse `-fa` as a C++ bool (`on` is
        # read as off there), later ones take 0/1 as well as on/off/auto
        opts["-fa"] = "1" if cfg.flash_attn else "0"
    left: list[str] = []
    for name, value in _pairs(list(cfg.extra_args), set(CARRIED)):
        if value is None:
            if name in SWITCHES:
                opts.update([SWITCHES[name]])
            else:
                left.append(name)
            continue
        bench, sep = CARRIED[name]
        if sep:
            value = value.replace(",", sep)
            if bench == "-ot" and bench in opts:  # the server adds up repeated overrides
                value = opts[bench] + sep + value
        elif "," in value:
            left += [name, value]
            continue
        opts[bench] = value
    extra: list[str] = []
    lb = cfg.llama_bench
    for name, value in _pairs(list(lb.extra_args if lb else ()), {b for b, _ in CARRIED.values()}):
        if value is not None:
            opts[name] = value
        else:
            extra.append(name)
    return opts, left, extra


def lengths(workload: Workload) -> tuple[int, int]:
    """(prompt, generated) tokens for llama-bench: the workload's lengths, their means where drawn from a
    distribution."""
    p, n = workload.input_tokens, workload.output_tokens
    return (p if isinstance(p, int) else p.mean), (n if isinstance(n, int) else n.mean)


def argvs(exe: str, cfg: LlamaCppEngine, model_path: str, n_prompt: int, n_gen: int) -> list[list[str]]:
    """llama-bench's two command lines: prefill and the whole request from an empty context, then decode
    after the prompt's context (a depth applies to every test of one invocation); JSON lines on stdout,
    with the server's settings (`options`)."""
    opts, _, extra = options(cfg)
    reps = cfg.llama_bench.repetitions if cfg.llama_bench is not None else 3
    tail = ["-r", str(reps), "-o", "jsonl", *(x for kv in opts.items() for x in kv), *extra]
    return [
        [exe, "-m", model_path, "-p", str(n_prompt), "-n", "0", "-pg", f"{n_prompt},{n_gen - 1}", *tail],
        [exe, "-m", model_path, "-p", "0", "-n", str(n_gen), "-d", str(n_prompt), *tail],
    ]


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
    "no_kv_offload",
    "tensor_split",
    "backends",
)


def _records(text: str) -> list[Any]:
    """llama-bench's `-o json` (one array) or `-o jsonl` (one test a line) output as a list; a last line
    cut short (llama-bench stopped while writing it) is left out, any other broken line raises
    ValueError."""
    stripped = text.strip()
    if stripped.startswith("["):
        data = json.loads(stripped)
        return data if isinstance(data, list) else [data]
    lines = stripped.splitlines()
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise
    return out


def parse(text: str) -> list[dict[str, Any]]:
    """llama-bench's output (`_records`) -> one dict per test: its name, the KEPT fields and the tok/s of
    every repetition (`samples_ts`). Output that is not a list of tests raises ValueError."""
    data = _records(text)
    if not all(isinstance(t, dict) for t in data):
        raise ValueError("llama-bench output is not a list of tests")
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
    """`build_commit (build_number)` of the llama-bench that wrote the output, where it knows them (a
    build from a source tree without git history says `unknown`)."""
    try:
        first = _records(text)[0]
        commit, number = first["build_commit"], first["build_number"]
    except (ValueError, LookupError, TypeError):
        return None
    return None if commit == "unknown" else f"{commit} ({number})"


def run(cfg: LlamaCppEngine, model_path: str, workload: Workload, run_dir: Path, tag: str) -> dict[str, Any]:
    """Run llama-bench for one engine config; its JSON lines go to `llama-bench-<tag>.jsonl` and its log
    to `llama-bench-<tag>.log` in the run directory. Returns the manifest entry: the commands, the tests
    that finished, and `error` where it could not run, failed or ran out of time (the run goes on without
    it). Re-raises EngineError when the run is being stopped (Ctrl-C)."""
    n_prompt, n_gen = lengths(workload)
    _, left, _ = options(cfg)
    exe = binary(cfg)
    entry: dict[str, Any] = {
        "n_gpu_layers": cfg.n_gpu_layers,
        "file": f"llama-bench-{tag}.jsonl",
        "log": f"llama-bench-{tag}.log",
    }
    if left:
        entry["server_args_not_carried"] = left
    if exe is None:
        entry["error"] = (
            "no llama-bench executable: name it in llama_bench.binary, or put it on PATH "
            "(scripts/gpu_bench.sh build makes it beside llama-server)"
        )
        return entry
    cmds = argvs(exe, cfg, model_path, n_prompt, n_gen)
    entry["commands"] = cmds
    out = run_dir / entry["file"]
    timeout = cfg.llama_bench.timeout_s if cfg.llama_bench is not None else 900.0
    deadline = time.monotonic() + timeout
    for cmd in cmds:
        proc = ManagedProcess(cmd, run_dir / entry["log"], stdout_path=out)
        try:
            proc.start()
            code = proc.wait_exit(max(0.0, deadline - time.monotonic()), "llama-bench")
        except EngineError as e:
            if abort_reason():
                raise
            entry["error"] = f"stopped after {timeout:g} s" if time.monotonic() >= deadline else str(e)
            break
        if code != 0:
            entry["error"] = f"llama-bench exited with code {code} (see {entry['log']})"
            break
    text = out.read_text(errors="replace") if out.exists() else ""
    try:
        entry["tests"] = parse(text) if text.strip() else []
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

    * prefill `ppP`:            llama-bench P / t;  server `timings.prompt_per_second` (mean over
                                requests);  client P / TTFT (mean prompt tokens per request / mean TTFT)
    * decode `tgN @ dP`:        llama-bench N / t;  server `timings.predicted_per_second`;
                                client 1 / TPOT; each a mean over repetitions or requests (the
                                client's 1 / mean TPOT in points tables from before its mean rate)
    * request `ppP+tg(N-1)`:    llama-bench (P + N - 1) / t;  client (P + N - 1) / mean E2E, the same
                                work (P and N - 1 from the test) over the time a request took

    `client_vs_bench` = client / llama-bench, `server_vs_bench` = server / llama-bench (NaN where either
    is unknown). `point_prompt_tokens` / `point_output_tokens` are the point's measured means (input and
    output tokens / successful requests), to hold against the test's lengths."""
    ok = _num(row.get("ok"))
    p = _num(row.get("input_tokens")) / ok if ok > 0 else math.nan
    n = _num(row.get("output_tokens")) / ok if ok > 0 else math.nan
    tpot = _num(row.get("tpot_s_mean"))
    # a mean of per-request rates, as the server's and llama-bench's are (1 / mean TPOT is another mean:
    # requests at 10 and 30 ms per token give 50 tok/s one way and 66.7 the other)
    decode = _num(row.get("decode_tok_s_mean"))
    if math.isnan(decode):
        decode = 1.0 / tpot if ok > 0 and tpot > 0 else math.nan
    server = {
        "prefill": _num(row.get("server_prefill_tok_s_mean")),
        "decode": _num(row.get("server_decode_tok_s_mean")),
        "request": math.nan,
    }
    out = []
    for t in tests:
        kind = "request" if t["n_prompt"] and t["n_gen"] else "prefill" if t["n_prompt"] else "decode"
        client = {
            "prefill": _rate(p, row.get("ttft_s_mean")),
            "decode": decode if ok > 0 else math.nan,
            "request": _rate(t["n_prompt"] + t["n_gen"], row.get("e2e_s_mean")) if ok > 0 else math.nan,
        }[kind]
        bench = _num(t.get("avg_ts"))
        out.append(
            {
                "test": t["test"],
                "kind": kind,
                "bench_tok_s": bench,
                "bench_stddev_tok_s": _num(t.get("stddev_ts")),
                "server_tok_s": server[kind],
                "client_tok_s": client,
                "server_vs_bench": server[kind] / bench if bench > 0 else math.nan,
                "client_vs_bench": client / bench if bench > 0 else math.nan,
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


def _attempt(point: dict[str, Any]) -> float:
    """The engine start a point was measured after (0 where the table has no `attempt`)."""
    a = _num(point.get("attempt", 0))
    return 0.0 if math.isnan(a) else a


def sections(manifest: dict[str, Any], points: list[dict[str, Any]]) -> list[Section]:
    """For each llama-bench run of the run directory (the manifest's `llama_bench`, one per engine start):
    a title, its `compare` rows against the concurrency-1 closed-loop point of that variant measured after
    the same engine start (the last one, not cut short), and notes (`noisy`); a title alone where
    llama-bench measured nothing or there is no such point."""
    out: list[Section] = []
    for b in manifest.get("llama_bench") or []:
        if not isinstance(b, dict):
            continue
        vi, attempt = b.get("variant", 0), b.get("attempt", 0)
        resumed = f", resume {attempt}" if attempt else ""
        ngl = b.get("n_gpu_layers", "?")
        head = f"llama-bench beside the server, variant {vi} (n_gpu_layers {ngl}{resumed})"
        tests = b.get("tests") or []
        notes = noisy(tests)
        if b.get("error"):
            notes.insert(
                0, f"llama-bench: {b['error']}" + (f" ({len(tests)} test(s) finished)" if tests else "")
            )
        if not tests:
            out.append((f"{head}: llama-bench measured nothing", [], notes))
            continue
        c1 = [
            p
            for p in points
            if p.get("variant", 0) == vi
            and _attempt(p) == attempt
            and p.get("mode", "closed") == "closed"
            and _num(p.get("concurrency")) == 1
            and not (isinstance(p.get("aborted"), str) and p["aborted"])  # NaN where read from a table
            and _num(p.get("ok")) > 0
        ]
        if not c1:
            out.append((f"{head}: no concurrency-1 closed-loop point to compare with", [], notes))
            continue
        build = f"; llama-bench {b['build']}" if b.get("build") else ""
        title = f"{head}, point {c1[-1].get('point_id')}{build}"
        out.append((title, compare(tests, c1[-1]), notes))
    return out
