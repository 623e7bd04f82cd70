"""Theoretical ceilings for decode and prefill, and how far a measurement is from them.

Decode (one step produces one token for each of B sequences), per device of a TP group:

    bytes_step  = step_bytes / TP + B x context x kv_bytes_per_token / min(TP, kv_heads)
    t_memory    = bytes_step / (bandwidth x efficiency)
    flops_step  = B x (2 x params + 4 x layers x heads x head_dim x context) / TP
    t_compute   = flops_step / (peak_flops x efficiency)
    t_step      = max(t_memory, t_compute);   tok/s <= B / t_step;   per-sequence tok/s <= 1 / t_step

With vLLM's --cpu-offload-gb, `offload_bytes` per device are streamed over the host link each step:
t_memory = max(on-device bytes / bandwidth, offload_bytes / offload_bandwidth) (perfect overlap: still an
upper bound on tok/s). llama.cpp's layers left on the CPU are not streamed but computed there, from host
RAM, before the GPU's: harness.offload sums the two sides instead.

Prefill of a prompt of L tokens: flops = 2 x params x L + 2 x layers x heads x head_dim x L^2
(causal attention), t_prefill >= max(flops / (TP x peak), step_bytes / (TP x bandwidth)); offloaded
weights are read once in the pass over the slower path, as in a decode step.

A device without a FLOP/s peak in the catalog (the CPUs) has memory bounds only: its bound is then
`NO_PEAK_BOUND`, not "memory", since compute may well be what limits it (prefill on a CPU is).

KV heads are split over TP ranks up to kv_heads and replicated beyond that, hence min(TP, kv_heads).
Weights are counted at the precision's bytes per parameter (`Shape.weight_bytes`: what the devices hold,
the token embeddings and an untied output layer 16-bit where FP8, INT8 or 4-bit quantize the linear layers
only); a step reads them all but the token embeddings of an untied model, of which it reads a row per
sequence (`Shape.step_bytes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.catalog import ModelArch
from harness.catalog.hardware import Device

NO_PEAK_BOUND = "memory (no FLOP/s peak known)"

# bytes per parameter of each precision name the engines use (GGUF k-quants are averages over a file)
BYTES_PER_PARAM: dict[str, float] = {
    "auto": 2.0,
    "fp32": 4.0,
    "f32": 4.0,
    "fp16": 2.0,
    "f16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "awq": 0.5,
    "gptq": 0.5,
    "q8_0": 34 / 32,  # 32 int8 weights + one fp16 scale per block
    "q6_k": 210 / 256,
    # average bits per weight of llama.cpp's mixes, as its tools/quantize/README.md gives them for
    # Llama-3.1-8B (other shapes differ a little: the mix is per tensor)
    "q5_k_m": 5.7036 / 8,
    "q4_k_m": 4.8944 / 8,
    "q4_0": 18 / 32,
}


# vLLM's quantized checkpoints (and its own FP8) quantize the linear layers: the token embeddings and an
# untied output layer stay 16-bit. GGUF types quantize them too, and their averages count them.
LINEAR_ONLY_QUANT = frozenset({"fp8", "int8", "int4", "awq", "gptq"})


def weight_bytes(params: float, embedding_params: float, precision: str | None) -> float:
    """Bytes of `params` weights at `precision`, of which `embedding_params` stay 16-bit where the
    precision quantizes the linear layers only (`LINEAR_ONLY_QUANT`)."""
    return (params - embedding_params) * bytes_per_param(precision) + embedding_params * embedding_bpp(
        precision
    )


def embedding_bpp(precision: str | None) -> float:
    """Bytes a parameter of the token embeddings and an untied output layer take at `precision`: 2 where it
    quantizes the linear layers only (`LINEAR_ONLY_QUANT`), else the precision's own."""
    return 2.0 if (precision or "auto").lower() in LINEAR_ONLY_QUANT else bytes_per_param(precision)


def bytes_per_param(precision: str | None) -> float:
    p = (precision or "auto").lower()
    if p not in BYTES_PER_PARAM:
        raise ValueError(
            f"precision {precision!r} has no bytes-per-parameter (allowed: {', '.join(BYTES_PER_PARAM)})"
        )
    return BYTES_PER_PARAM[p]


@dataclass(frozen=True)
class Shape:
    """What the roofline needs to know about a model."""

    name: str
    params: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    embedding_params: float = 0.0  # token embeddings and an untied output layer (ModelArch's)
    lookup_params: float = 0.0  # token embeddings a step reads a row of (untied: ModelArch's)

    @classmethod
    def of(cls, m: ModelArch) -> Shape:
        return cls(
            m.name,
            m.params_b * 1e9,
            m.layers,
            m.heads,
            m.kv_heads,
            m.head_dim,
            m.embedding_params(),
            m.lookup_params(),
        )

    def weight_bytes(self, precision: str | None) -> float:
        """The weights' bytes at `precision` (`harness.roofline.weight_bytes`): what memory holds."""
        return weight_bytes(self.params, self.embedding_params, precision)

    def step_bytes(self, precision: str | None) -> float:
        """The weight bytes a forward pass reads: all of them but the token embeddings of an untied model,
        of which it reads a row per token."""
        return self.weight_bytes(precision) - self.lookup_params * embedding_bpp(precision)

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        """2 (K and V) x layers x kv_heads x head_dim x bytes_per_elem."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_elem


@dataclass(frozen=True)
class DecodeBound:
    batch: int
    context_tokens: float
    weight_bytes_per_device: float
    kv_bytes_per_device: float
    t_memory_s: float
    t_compute_s: float
    tok_s: float  # all sequences together
    bound: str  # "memory", "compute" or "offload"
    fits: bool | None  # weights + KV within device memory (None: memory size unknown)
    max_batch: int | None  # largest batch whose KV fits beside the weights at this context

    @property
    def t_step_s(self) -> float:
        return max(self.t_memory_s, self.t_compute_s)

    @property
    def tok_s_per_sequence(self) -> float:
        return 1.0 / self.t_step_s


def tensor_parallel_problem(heads: int, kv_heads: int, tp: int) -> str | None:
    """Why vLLM cannot split a model of `heads` attention heads and `kv_heads` KV heads over `tp` GPUs,
    else None: the heads must divide evenly, and the KV heads too (or, with more GPUs than KV heads,
    the GPUs must be a multiple of them, each KV head then held by several)."""
    if heads % tp:
        return f"{heads} attention heads do not split evenly over {tp} GPUs"
    if (kv_heads % tp) if tp <= kv_heads else (tp % kv_heads):
        return f"{kv_heads} KV heads do not split evenly over {tp} GPUs (nor {tp} over them)"
    return None


def _kv_per_device(shape: Shape, tp: int, kv_bytes_per_elem: float) -> float:
    return shape.kv_bytes_per_token(kv_bytes_per_elem) / min(tp, shape.kv_heads)


def _memory_time(
    on_device_bytes: float,
    device: Device,
    offload_bytes: float,
    offload_bandwidth_bytes_s: float | None,
    efficiency: float,
) -> tuple[float, str]:
    """(seconds, "memory" or "offload"): reading `on_device_bytes` at the device's bandwidth and, in
    parallel, `offload_bytes` over the slower path; the longer of the two bounds the pass."""
    t_mem = on_device_bytes / (device.bandwidth_bytes_s * efficiency)
    if offload_bytes <= 0:
        return t_mem, "memory"
    if not offload_bandwidth_bytes_s:
        raise ValueError("offload_bytes needs offload_bandwidth_bytes_s")
    t_off = offload_bytes / (offload_bandwidth_bytes_s * efficiency)
    return (t_off, "offload") if t_off > t_mem else (t_mem, "memory")


def decode_bound(
    shape: Shape,
    device: Device,
    weight_bytes: float,
    tp: int = 1,
    batch: int = 1,
    context_tokens: float = 0.0,
    kv_bytes_per_elem: float = 2.0,
    efficiency: float = 1.0,
    flops_precision: str = "bf16",
    offload_bytes: float = 0.0,
    offload_bandwidth_bytes_s: float | None = None,
    memory_utilization: float = 0.9,
    pipeline_stages: int = 1,
    step_bytes: float | None = None,
) -> DecodeBound:
    """Upper bound on decode tok/s for `batch` sequences at `context_tokens` each (module docstring).
    `weight_bytes`: what the devices hold (what fits); `step_bytes`: what a step reads of them
    (`Shape.step_bytes`; default all of them).
    `pipeline_stages`: each device holds 1/stages of the weights and of the KV cache, which changes what
    fits (`fits`, `max_batch`): the stages read theirs one after the other, adding no bandwidth; each
    streams its own `offload_bytes` (per device) in its turn, so a step streams stages x that."""
    if tp < 1 or batch < 1 or not 0 < efficiency <= 1:
        raise ValueError("tp and batch must be >= 1 and efficiency in (0, 1]")
    w_dev = weight_bytes / tp
    read_dev = (weight_bytes if step_bytes is None else step_bytes) / tp
    kv_tok = _kv_per_device(shape, tp, kv_bytes_per_elem)
    kv_dev = batch * context_tokens * kv_tok
    streamed = offload_bytes * max(1, pipeline_stages)  # each stage streams its own, in turn
    t_mem, bound = _memory_time(
        max(0.0, read_dev - streamed) + kv_dev, device, streamed, offload_bandwidth_bytes_s, efficiency
    )
    peak = device.peak_flops(flops_precision)
    flops = batch * (2 * shape.params + 4 * shape.layers * shape.heads * shape.head_dim * context_tokens) / tp
    t_cmp = flops / (peak * efficiency) if peak else 0.0
    if t_cmp > t_mem:
        bound = "compute"
    elif not peak and bound == "memory":
        bound = NO_PEAK_BOUND
    fits: bool | None = None
    max_batch: int | None = None
    mem = device.memory_bytes
    if mem is not None:
        pp = max(1, pipeline_stages)
        room = mem * memory_utilization - (w_dev / pp - offload_bytes)  # offload_bytes is per device
        fits = room >= kv_dev / pp
        if context_tokens > 0:
            max_batch = max(0, math.floor(room / (context_tokens * kv_tok / pp)))
    return DecodeBound(
        batch, context_tokens, w_dev, kv_dev, t_mem, t_cmp, batch / max(t_mem, t_cmp), bound, fits, max_batch
    )


def prefill_bound(
    shape: Shape,
    device: Device,
    weight_bytes: float,
    input_tokens: int,
    tp: int = 1,
    efficiency: float = 1.0,
    flops_precision: str = "bf16",
    offload_bytes: float = 0.0,
    offload_bandwidth_bytes_s: float | None = None,
) -> dict[str, Any]:
    """Lower bound on the time to prefill one prompt and the matching tok/s (module docstring).
    `offload_bytes` per device are read over the slower path once in the pass, as in a decode step."""
    L = input_tokens
    flops = 2 * shape.params * L + 2 * shape.layers * shape.heads * shape.head_dim * L * L
    peak = device.peak_flops(flops_precision)
    t_cmp = flops / (tp * peak * efficiency) if peak else 0.0
    t_mem, mem_bound = _memory_time(
        weight_bytes / tp - offload_bytes, device, offload_bytes, offload_bandwidth_bytes_s, efficiency
    )
    t = max(t_cmp, t_mem)
    if t_cmp >= t_mem and peak:
        bound = "compute"
    else:
        bound = NO_PEAK_BOUND if not peak and mem_bound == "memory" else mem_bound
    return {"input_tokens": L, "t_prefill_s": t, "prefill_tok_s": L / t, "bound": bound}


def min_batch_for(
    target_tok_s: float,
    shape: Shape,
    device: Device,
    weight_bytes: float,
    tp: int = 1,
    context_tokens: float = 0.0,
    kv_bytes_per_elem: float = 2.0,
    efficiency: float = 1.0,
    flops_precision: str = "bf16",
    step_bytes: float | None = None,
) -> dict[str, Any]:
    """Smallest batch B with B / t_step(B) >= target, or None when no batch reaches it.

    Memory: B x bw >= target x (w + B x c x kv)  =>  B >= target x w / (bw - target x c x kv), w the
    weight bytes a step reads (`step_bytes`, default `weight_bytes`, which is what has to fit).
    Compute: B / t_compute is the same for every B, so it caps the reachable tok/s outright."""
    w = (weight_bytes if step_bytes is None else step_bytes) / tp
    kv = context_tokens * _kv_per_device(shape, tp, kv_bytes_per_elem)
    bw = device.bandwidth_bytes_s * efficiency
    peak = device.peak_flops(flops_precision)
    compute_cap = (
        tp
        * peak
        * efficiency
        / (2 * shape.params + 4 * shape.layers * shape.heads * shape.head_dim * context_tokens)
        if peak
        else math.inf
    )
    memory_cap = bw / kv if kv > 0 else math.inf  # B -> infinity
    out: dict[str, Any] = {
        "target_tok_s": target_tok_s,
        "compute_cap_tok_s": compute_cap,
        "memory_cap_tok_s": memory_cap,
    }
    denom = bw - target_tok_s * kv
    if target_tok_s > compute_cap or denom <= 0:
        out["min_batch"] = None
        return out
    b = max(1, math.ceil(target_tok_s * w / denom - 1e-9))
    out["min_batch"] = b
    bound = decode_bound(
        shape,
        device,
        weight_bytes,
        tp,
        b,
        context_tokens,
        kv_bytes_per_elem,
        efficiency,
        flops_precision,
        step_bytes=step_bytes,
    )
    out["fits"] = bound.fits
    out["max_batch"] = bound.max_batch
    return out


def roofline_table(
    shape: Shape,
    device: Device,
    precision: str,
    tp: int,
    batches: list[int],
    context_tokens: float,
    input_tokens: int,
    kv_bytes_per_elem: float = 2.0,
    efficiency: float = 1.0,
    offload_bytes: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Decode bounds per batch size and the prefill bound, as rows for `harness roofline`."""
    weight, step = shape.weight_bytes(precision), shape.step_bytes(precision)
    link = device.host_link_gbs * 1e9 if device.host_link_gbs else None
    rows = []
    for b in batches:
        d = decode_bound(
            shape,
            device,
            weight,
            tp,
            b,
            context_tokens,
            kv_bytes_per_elem,
            efficiency,
            precision,
            offload_bytes,
            link,
            step_bytes=step,
        )
        rows.append(
            {
                "batch": b,
                "tok_s": d.tok_s,
                "tok_s_per_sequence": d.tok_s_per_sequence,
                "t_step_ms": d.t_step_s * 1000,
                "bound": d.bound,
                "weights_gb_per_device": (d.weight_bytes_per_device - offload_bytes) / 1e9,
                "weights_read_gb_per_device": (step / tp - offload_bytes) / 1e9,  # of those, a step reads
                "kv_gb_per_device": d.kv_bytes_per_device / 1e9,
                "fits": d.fits,
                "max_batch": d.max_batch,
            }
        )
    pre = prefill_bound(shape, device, step, input_tokens, tp, efficiency, precision, offload_bytes, link)
    return rows, pre
