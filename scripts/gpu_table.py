"""Tables for results/gpu/README.md from llama.cpp offload-sweep run directories.

    python scripts/gpu_table.py results/gpu [--readme results/gpu/README.md]

For each run directory below the given folder whose engine is llama.cpp, one row per load point:
offload level x concurrency -> output tok/s, TTFT and TPOT p50, J per output token, GPU power and
memory, and the weight bytes each decode step reads from GPU memory and from host RAM (from the GGUF
tensor sizes in the manifest). Then:

- calibration: effective GPU and host bandwidth = bytes per step / TPOT p50 at concurrency 1, from
  the all-on-GPU and all-on-CPU variants of each weight type (and, where those variants ran
  llama-bench, bytes per step x its decode tok/s beside it);
- a check of that model (harness.offload) against the partially offloaded variants;
- an extrapolation to Llama-3.1-70B (catalog shape) on one GPU, labelled as such, next to the
  article's CPU-offload claim;
- llama-bench beside the server, for the variants that ran it (`engine.llama_bench`).

With --readme, the text between `<!-- gpu_table:begin -->` and `<!-- gpu_table:end -->` is replaced
(the file is created when missing); without, the markdown is printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.catalog import get_model  # noqa: E402
from harness.catalog.hardware import get_device, match_nvml  # noqa: E402
from harness.offload import (  # noqa: E402
    Split,
    decode_weight_bytes,
    effective_bandwidth,
    llama_weight_bytes,
    no_weights_on_gpu,
    split,
    step_time_s,
)
from harness.report import bench_frames, markdown_frame  # noqa: E402
from harness.roofline import BYTES_PER_PARAM  # noqa: E402

BEGIN, END = "<!-- gpu_table:begin -->", "<!-- gpu_table:end -->"
GB = 1e9
GIB = 2**30
MIB = 2**20


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _fmt(v: Any, spec: str = ".1f", scale: float = 1.0) -> str:
    f = _num(v)
    return "–" if f is None else format(f * scale, spec)


Manifests = list[tuple[Path, dict[str, Any]]]


def read_manifests(folder: Path) -> Manifests:
    """(run directory, its manifest) for every run under `folder`, each manifest read once."""
    return [(p.parent, json.loads(p.read_text())) for p in sorted(folder.rglob("manifest.json"))]


def load_rows(manifests: Manifests) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(point rows with offload fields added, one summary per run) for the llama.cpp runs."""
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for run, m in manifests:
        points = run / "points.csv"
        if not points.is_file():
            continue
        engines = {e["variant"]: e for e in m.get("engines", []) if e.get("name") == "llamacpp"}
        if not engines:
            continue
        gpus = (m.get("hardware", {}).get("gpu") or {}).get("gpus") or []
        gpu_name = gpus[0]["name"] if gpus else None
        runs.append(
            {
                "run": run.name,
                "status": m.get("status"),
                "gpu": gpu_name,
                "driver": (m.get("hardware", {}).get("gpu") or {}).get("driver_version"),
                "cpu": (m.get("hardware", {}).get("cpu") or {}).get("model"),
                "cores": (m.get("hardware", {}).get("cpu") or {}).get("cores"),
                "version": next(iter(engines.values())).get("version"),
            }
        )
        for p in pd.read_csv(points).to_dict("records"):
            eng = engines.get(int(p["variant"]))
            if eng is None:
                continue
            s = variant_split(eng, int(p["n_gpu_layers"]))
            wb = eng["model"].get("weight_bytes") or {}
            logged = (eng.get("placement") or {}).get("gpu_weights_mib")
            rows.append(
                {
                    **p,
                    "run": run.name,
                    "gpu_name": gpu_name,
                    "split": s,
                    "model_bytes": wb,
                    "logged_mib": logged,
                }
            )
    return rows, runs


def variant_split(eng: dict[str, Any], ngl: int) -> Split | None:
    """The weight bytes a decode step reads from GPU and host memory, for one manifest engine entry."""
    model = eng["model"]
    wb = model.get("weight_bytes") or {}
    if no_weights_on_gpu(eng.get("placement") or {}):
        ngl = 0  # llama.cpp put no weights on a GPU (a CPU build): every layer ran on the CPU
    if not wb or not model.get("block_count"):
        return None
    return split(ngl, int(model["block_count"]), *decode_weight_bytes(wb))


def bench_calibrate(manifests: Manifests, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{precision: {"gpu"/"cpu": bytes/s}} from llama-bench's decode test (`tgN @ dP`) of the all-GPU /
    all-CPU variants: bytes per step x its tokens/s, a check of `calibrate` made without the server."""
    prec = {(r["run"], int(r["variant"])): str(r["precision"]) for r in rows}
    cal: dict[str, dict[str, float]] = {}
    for run, m in manifests:
        engines = {e["variant"]: e for e in m.get("engines", []) if e.get("name") == "llamacpp"}
        for b in m.get("llama_bench") or []:
            eng = engines.get(b.get("variant"))
            p = prec.get((run.name, b.get("variant")))
            tg = [t for t in b.get("tests") or [] if not t.get("n_prompt") and t.get("n_gen")]
            if eng is None or p is None or not tg or _num(tg[-1].get("avg_ts")) is None:
                continue
            s = variant_split(eng, int(b.get("n_gpu_layers") or 0))
            side = None if s is None else "gpu" if s.cpu_bytes == 0 else "cpu" if s.gpu_bytes == 0 else None
            if s is not None and side:
                nbytes = s.gpu_bytes if side == "gpu" else s.cpu_bytes
                cal.setdefault(p, {})[side] = nbytes * float(tg[-1]["avg_ts"])
    return cal


def calibrate(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{precision: {"gpu": bytes/s, "cpu": bytes/s}} from the concurrency-1 all-GPU / all-CPU points."""
    cal: dict[str, dict[str, float]] = {}
    for r in rows:
        s: Split | None = r["split"]
        tpot = _num(r.get("tpot_s_p50"))
        if s is None or not tpot or int(r["concurrency"]) != 1:
            continue
        side = "gpu" if s.cpu_bytes == 0 else "cpu" if s.gpu_bytes == 0 else None
        if side:
            nbytes = s.gpu_bytes if side == "gpu" else s.cpu_bytes
            cal.setdefault(str(r["precision"]), {})[side] = effective_bandwidth(nbytes, tpot)
    return cal


def measured_table(rows: list[dict[str, Any]], cal: dict[str, dict[str, float]]) -> str:
    head = (
        "| weights | offload | conc | ok | out tok/s | TTFT p50 ms | TPOT p50 ms | predicted TPOT ms "
        "| J/out token | GPU W | GPU mem GiB | read/step GPU + host GB | % of GPU bandwidth "
        "| GPU weights MiB, split / llama.cpp log |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    )
    lines = [head]
    for r in rows:
        s: Split | None = r["split"]
        c = cal.get(str(r["precision"]), {})
        pred = step_time_s(s, c.get("gpu"), c.get("cpu")) if s is not None else None
        bw_pct = "–"
        dev = match_nvml(r["gpu_name"]) if r.get("gpu_name") else None
        tpot = _num(r.get("tpot_s_p50"))
        if s is not None and s.cpu_bytes == 0 and dev and dev.bandwidth_gbs and tpot:
            bw_pct = f"{100 * effective_bandwidth(s.gpu_bytes, tpot) / (dev.bandwidth_gbs * GB):.0f} %"
        split_txt = f"{s.gpu_bytes / GB:.2f} + {s.cpu_bytes / GB:.2f}" if s is not None else "–"
        lines.append(
            f"| {r['precision']} | {s.label if s else r['n_gpu_layers']} | {int(r['concurrency'])} "
            f"| {int(r['ok'])} | {_fmt(r.get('output_tok_s'))} | {_fmt(r.get('ttft_s_p50'), '.0f', 1e3)} "
            f"| {_fmt(tpot, '.1f', 1e3)} | {_fmt(pred, '.1f', 1e3)} "
            f"| {_fmt(r.get('energy_j_per_output_token'), '.3f')} | {_fmt(r.get('gpu_power_w_mean'), '.0f')} "
            f"| {_fmt(r.get('gpu_mem_used_bytes_max'), '.1f', 1 / GIB)} | {split_txt} | {bw_pct} "
            f"| {placement_check(s, r.get('logged_mib'))} |"
        )
    return "\n".join(lines)


def placement_check(s: Split | None, logged_mib: Any) -> str:
    """The split model's GPU weight bytes beside the CUDA buffers llama.cpp's load log gave, flagged (!)
    where they differ by over 5 %: the model's placement rule no longer matches the build's."""
    logged = _num(logged_mib)
    if s is None or logged is None:
        return "–"
    model = s.gpu_bytes / MIB
    off = abs(model - logged) > 0.05 * max(model, logged, 1.0)
    return f"{model:.0f} / {logged:.0f}{' (!)' if off else ''}"


def calibration_table(
    cal: dict[str, dict[str, float]], bench: dict[str, dict[str, float]] | None = None
) -> str:
    """Server TPOT p50 calibration; with `bench` (llama-bench decode), its bandwidths beside it."""
    bench = bench or {}
    head = "| weights | GPU GB/s (all layers on GPU) | host GB/s (no layer on GPU) |"
    rule = "|---|--:|--:|"
    if bench:
        head += " GPU GB/s, llama-bench tg | host GB/s, llama-bench tg |"
        rule += "--:|--:|"
    lines = [head, rule]
    for prec in sorted(set(cal) | set(bench)):
        c, b = cal.get(prec, {}), bench.get(prec, {})
        line = f"| {prec} | {_fmt(c.get('gpu'), '.0f', 1 / GB)} | {_fmt(c.get('cpu'), '.1f', 1 / GB)} |"
        if bench:
            line += f" {_fmt(b.get('gpu'), '.0f', 1 / GB)} | {_fmt(b.get('cpu'), '.1f', 1 / GB)} |"
        lines.append(line)
    return "\n".join(lines)


def extrapolate_70b(
    cal: dict[str, dict[str, float]], measured_on: str | None, kv_reserve_gib: float = 6.0
) -> str:
    """Llama-3.1-70B per-sequence decode rate at the calibrated bandwidths (GPU rate scaled by datasheet)."""
    arch = get_model("llama-3.1-70b")
    src = match_nvml(measured_on) if measured_on else None
    lines = [
        "| weights | GPU | blocks on GPU | read/step GPU + host GB | s/token | tok/s per sequence |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for prec, c in sorted(cal.items()):
        bpp = BYTES_PER_PARAM.get(prec.lower())
        if bpp is None or "cpu" not in c or "gpu" not in c or src is None or not src.bandwidth_gbs:
            continue
        blocks, output = llama_weight_bytes(arch, bpp)
        per_block = blocks / arch.layers
        for key in dict.fromkeys(("h100-sxm", src.key)):  # the lent GPU may be an H100 SXM itself
            dev = get_device(key)
            if not dev.bandwidth_gbs or not dev.memory_bytes:
                continue
            gpu_bw = c["gpu"] * dev.bandwidth_gbs / src.bandwidth_gbs
            # n_gpu_layers that fit: the output layer goes first, then the last blocks
            room = dev.memory_bytes - kv_reserve_gib * GIB - output
            fit = 0 if room < 0 else 1 + max(0, min(arch.layers, int(room // per_block)))
            for n in sorted({0, arch.layers // 2, fit}):
                if n > fit:
                    continue
                s = split(n, arch.layers, blocks, output)
                t = step_time_s(s, gpu_bw, c["cpu"])
                if t is None:
                    continue
                lines.append(
                    f"| {prec} | {dev.name} | {s.label} | {s.gpu_bytes / GB:.1f} + {s.cpu_bytes / GB:.1f} "
                    f"| {t:.2f} | {1 / t:.2f} |"
                )
    return "\n".join(lines)


def render(folder: Path) -> str:
    manifests = read_manifests(folder)
    rows, runs = load_rows(manifests)
    if not rows:
        raise SystemExit(f"{folder}: no llama.cpp run directories with points.csv")
    cal = calibrate(rows)
    gpu = next((r["gpu_name"] for r in rows if r.get("gpu_name")), None)
    out = ["Generated by `scripts/gpu_table.py` from the run directories listed here.", ""]
    for r in runs:
        out.append(
            f"- `{r['run']}` ({r['status']}): {r['gpu'] or 'no GPU'}, driver {r['driver'] or '–'}, "
            f"{r['cpu']} ({r['cores']} cores), {r['version']}"
        )
    out += ["", "### Measured", "", measured_table(rows, cal), ""]
    if bench := bench_tables(manifests):
        out += ["### llama-bench beside the server", "", *bench]
    out += [
        "Predicted TPOT: the sequential model of `harness/offload.py` with the bandwidths below; "
        "% of GPU bandwidth: bytes read per step / TPOT p50 against the datasheet bandwidth.",
        "",
        "### Effective bandwidths (concurrency 1)",
        "",
        calibration_table(cal, bench_calibrate(manifests, rows)),
        "",
        "Bytes per decode step / TPOT p50 of the server at concurrency 1; where llama-bench ran, also "
        "bytes per step x its decode tok/s (`tgN @ dP`: one sequence, no HTTP, no sampling). The "
        "extrapolation below uses the server's.",
        "",
        "### Extrapolated, not measured: Llama-3.1-70B on one GPU",
        "",
        f"llama.cpp's split (the CPU computes its layers from host RAM, then the GPU its own): host rate "
        f"as measured here; GPU rate as measured on the {gpu or '?'} scaled by datasheet bandwidth; the "
        "output layer and the blocks that fit leave 6 GiB for KV cache and buffers. The article's claim "
        "for CPU offload of a 70B model is 1-5 tok/s (2-5 s per token); its two halves disagree "
        "(1-5 tok/s is 0.2-1 s per token).",
        "",
        extrapolate_70b(cal, gpu),
    ]
    return "\n".join(out) + "\n"


def bench_tables(manifests: Manifests) -> list[str]:
    """Markdown lines: for each run under `folder` that ran llama-bench (`engine.llama_bench`), its tests
    beside the server's own timings and the client at concurrency 1 (`harness report` shows the same)."""
    out: list[str] = []
    for run, m in manifests:
        points = run / "points.csv"
        df = pd.read_csv(points) if points.is_file() else pd.DataFrame()
        for title, frame, notes in bench_frames(m, df):
            out += [f"`{run.name}`: {title}", ""]
            out += [markdown_frame(frame)] if not frame.empty else []
            out += [*(f"- {n}" for n in notes), ""] if notes else []
    return out


def write_readme(path: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}\n"
    if path.is_file() and BEGIN in path.read_text():
        text = path.read_text()
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1] if END in rest else ""
        path.write_text(pre + block + post.lstrip("\n"))
    else:
        path.write_text("# GPU runs\n\n" + block)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--readme", type=Path, default=None)
    a = ap.parse_args(argv)
    body = render(a.folder)
    if a.readme:
        write_readme(a.readme, body)
        print(f"wrote {a.readme}")
    else:
        print(body, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
