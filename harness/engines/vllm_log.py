"""What vLLM's own log says about a server it started: the engine configuration it logs once at start-up
(`Initializing a V1 LLM engine (v...) with config: model=..., dtype=torch.bfloat16, ..., quantization=fp8,
...`) and the GPU worker's `Model loading took X GiB` line. Pure functions of the log text."""

from __future__ import annotations

import re

from harness.engines.vllm_flags import method_precision

_LOADED_RE = re.compile(r"Model loading took ([0-9.]+) GiB")
_CONFIG_RE = re.compile(r"with config: (.*)")
_FIELD_RE = re.compile(r"\b(dtype|quantization|kv_cache_dtype)=([\w.-]+)")

# torch dtypes as the scenario's precision names
PRECISION_OF_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def loaded_gib(text: str) -> float | None:
    """GiB of weights the GPU worker reported loading (the last such line), None when absent (CPU)."""
    found = _LOADED_RE.findall(text)
    return float(found[-1]) if found else None


def engine_settings(text: str) -> dict[str, str]:
    """dtype (`bfloat16`), quantization (`fp8`, `None`) and kv_cache_dtype from the last engine config line
    of the log; empty when there is none."""
    lines = _CONFIG_RE.findall(text)
    if not lines:
        return {}
    out = {k: v for k, v in _FIELD_RE.findall(lines[-1])}
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
