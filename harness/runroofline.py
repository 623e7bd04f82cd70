"""A run point's decode ceiling (tok/s) from its manifest: the model's shape and weight bytes, the
engine's batch and placement, and the device's memory bandwidth (the arithmetic is harness.roofline's
and harness.offload's)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness import offload
from harness.catalog import models
from harness.catalog.hardware import Device, devices
from harness.engines.vllm_flags import DEFAULT_GPU_MEMORY_UTILIZATION
from harness.models import PACKAGE_CATALOG
from harness.roofline import BYTES_PER_PARAM, Shape, decode_bound
from harness.rundevice import gpus_of, host_cpu_key, offload_had_no_effect
from harness.slots import engine_slots

GIB = 1024**3


def shape_of(
    cfg: dict[str, Any], engine: dict[str, Any], precision: str | None = None
) -> tuple[Shape | None, float | None]:
    """The model's shape for the roofline and its weight bytes: the GGUF file size when there is one, else
    the weights at `precision` (`Shape.weight_bytes`; what the point ran at, default the configuration's),
    None at `auto` (bytes a parameter not known)."""
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
            weight = shape.weight_bytes(prec)
    return shape, weight


def step_bytes_of(
    cfg: dict[str, Any], engine: dict[str, Any], shape: Shape, weight: float, precision: str | None
) -> float:
    """The weight bytes a decode step reads of the `weight` bytes `shape_of` gave: a GGUF's blocks and
    output layer where its tensor sizes are known (of the token embeddings a step reads a row per
    sequence), a catalog shape's `step_bytes`, else all of them."""
    groups = (engine.get("model") or {}).get("weight_bytes")
    if isinstance(groups, dict) and groups.get("blocks"):
        blocks, output = offload.decode_weight_bytes(groups)
        return min(weight, blocks + output)
    if (engine.get("model") or {}).get("size_bytes"):
        return weight
    return shape.step_bytes(str(precision or cfg.get("precision") or "auto").lower())


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


def mean_len(v: Any) -> float:
    if isinstance(v, dict):
        return float(v.get("mean") or 0)
    return float(v or 0)


def context_tokens(manifest: dict[str, Any]) -> float:
    """Average tokens in context during decode = input + output / 2 (from the scenario's workload)."""
    w = (manifest.get("scenario") or {}).get("workload") or {}
    return mean_len(w.get("input_tokens")) + mean_len(w.get("output_tokens")) / 2


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
    off = 0.0 if offload_had_no_effect(engine) else float(cfg.get("cpu_offload_gb") or 0) * GIB
    link = dev.host_link_gbs * 1e9 if dev.host_link_gbs else None
    if off and not link:
        return math.nan
    vllm_util = float(cfg.get("gpu_memory_utilization") or DEFAULT_GPU_MEMORY_UTILIZATION)
    mem_util = vllm_util if cfg.get("type") == "vllm" else 0.9

    if cfg.get("type") == "vllm":
        pp = int(cfg.get("pipeline_parallel_size") or 1)
    else:  # llama.cpp's layers split over its GPUs are stages: each holds its share, the KV cache beside it
        pp = gpus_of(cfg, engine, hw) if cfg.get("type") == "llamacpp" else 1
    off = min(off, weight / (tp * pp))  # vLLM offloads at most a device's share of the weights

    step = step_bytes_of(cfg, engine, shape, weight, precision)

    def bound(b: int) -> Any:
        return decode_bound(
            shape, dev, weight, tp, b, ctx, kv_bpe, 1.0, precision or "bf16", off, link, mem_util, pp, step
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
