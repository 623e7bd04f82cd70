"""vLLM command-line choices that depend on its version or the checkpoint: renamed flags and modules, and
the quantization flags for a scenario precision (pure functions; harness.engines.vllm builds the argv)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# --gpu-memory-utilization when not given: the share of each GPU's memory vLLM takes (0.92 in the pinned
# release and its docs, 0.9 in earlier ones)
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92


def vllm_at_least(version: str | None, want: tuple[int, int]) -> bool:
    """The vLLM version string (e.g. `0.33.0`, `0.32.1rc1+cpu`) is `want` (major, minor) or later; an
    unknown or unparsable version counts as recent (the images this harness pins are)."""
    m = re.match(r"(\d+)\.(\d+)", version or "")
    return m is None or (int(m[1]), int(m[2])) >= want


def api_server_module(version: str | None) -> str:
    """The OpenAI API server's module for `python -m`: its launcher module from vLLM 0.32 on."""
    if vllm_at_least(version, (0, 32)):
        return "vllm.entrypoints.launchers.api_server.entry"
    return "vllm.entrypoints.openai.api_server"


def quantization_config(model_dir: Path | None) -> dict[str, Any] | None:
    """A checkpoint's config.json `quantization_config`, None when it has none (or no readable config)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text()) if model_dir else {}
    except (OSError, ValueError):
        return None
    q = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    return q if isinstance(q, dict) else None


def checkpoint_quantization(model_dir: Path | None) -> str | None:
    """`quant_method` of a checkpoint's config.json `quantization_config` (e.g. `fp8`), else None."""
    q = quantization_config(model_dir)
    return str(q["quant_method"]) if q and q.get("quant_method") else None


def precision_args(precision: str, version: str | None = None, checkpoint: str | None = None) -> list[str]:
    """vLLM flags for a scenario precision (`version`: the engine's vLLM, for flags that were renamed;
    `checkpoint`: the model's own `quant_method`, when it is pre-quantized).

    bf16/fp16 set `--dtype`; fp8 quantizes the weights online (`--quantization fp8_per_tensor` from vLLM
    0.32, where `fp8` for online quantization is deprecated; `fp8` before; on GPUs without FP8
    units vLLM runs them weight-only through its Marlin kernels); int8 with dummy weights is described by
    the W8A8 compressed-tensors config written into config.json (nothing to pass); a pre-quantized
    checkpoint (fp8, awq, gptq, int4) is read from its own config, nothing passed; awq/gptq are named
    only for a checkpoint whose config names no method.
    """
    if precision == "bf16":
        return ["--dtype", "bfloat16"]
    if precision == "fp16":
        return ["--dtype", "float16"]
    if precision in CHECKPOINT_METHODS and checkpoint:
        # a pre-quantized checkpoint: vLLM reads the method from its config and picks the fastest kernel
        # for it (awq_marlin, gptq_marlin); a method named here forces that one (plain awq is several
        # times slower), and one that differs from the config's (fp8_per_tensor against
        # compressed-tensors) is refused at start-up
        return []
    if precision == "fp8":
        return ["--quantization", "fp8_per_tensor" if vllm_at_least(version, (0, 32)) else "fp8"]
    if precision in ("awq", "gptq"):
        return ["--quantization", precision]
    return []


# quant_method values of checkpoints that can hold each quantized precision (vLLM reads them itself)
CHECKPOINT_METHODS = {
    "fp8": ("fp8", "compressed-tensors", "modelopt", "fbgemm_fp8"),
    "awq": ("awq", "awq_marlin"),
    "gptq": ("gptq", "gptq_marlin", "compressed-tensors"),
}
# what a scenario precision accepts of the precision a checkpoint holds
HELD_OK = {
    "fp8": ("fp8",),
    "int8": ("int8",),
    "int4": ("int4", "awq", "gptq"),
    "awq": ("awq",),
    "gptq": ("gptq", "int4"),
}


def method_precision(method: str) -> str | None:
    """The precision a vLLM quantization method's weights hold, as configs name it and vLLM logs it
    (`fp8`, `fp8_per_tensor`, `modelopt`, `fbgemm_fp8`: fp8; `awq`, `awq_marlin`: awq; `gptq*`: gptq);
    None for other methods (compressed-tensors says it in its config groups)."""
    if method in ("fp8", "fp8_per_tensor", "modelopt", "fbgemm_fp8"):
        return "fp8"
    if method.startswith(("awq", "gptq")):
        return method.split("_")[0]
    return None


def checkpoint_precision(model_dir: Path | None) -> str | None:
    """The precision a pre-quantized checkpoint's weights hold, from its config.json: fp8, int8, int4,
    awq or gptq (compressed-tensors by its weights' num_bits and type); None when it is not quantized
    or the config does not say."""
    q = quantization_config(model_dir)
    if q is None:
        return None
    method = str(q.get("quant_method") or "")
    if held := method_precision(method):
        return held
    if method != "compressed-tensors":
        return None
    groups = q.get("config_groups")
    for g in groups.values() if isinstance(groups, dict) else ():
        w = g.get("weights") if isinstance(g, dict) else None
        if isinstance(w, dict) and w.get("num_bits") == 8:
            return "fp8" if w.get("type") == "float" else "int8"
        if isinstance(w, dict) and w.get("num_bits") == 4:
            return "int4"
    return None


def checkpoint_conflict(precision: str, held: str | None, quantized: bool | None = None) -> str | None:
    """Why a scenario's quantized precision cannot be what a checkpoint holds (`held`, from
    checkpoint_precision), else None. bf16/fp16/auto with a quantized checkpoint is no conflict: the
    weights stay quantized and the point records what they hold. int8/int4 need a checkpoint that holds
    them (nothing quantizes to them at load): refused where `quantized` is False (its config.json has no
    quantization_config; a method the harness does not classify, such as bitsandbytes, is let through)."""
    allowed = HELD_OK.get(precision)
    if held is None and quantized is False and precision in ("int8", "int4"):
        # no flag quantizes weights to these online: vLLM would run the checkpoint's own dtype, and the
        # point would be labelled int8/int4
        return (
            f"engine.precision: {precision!r} needs a checkpoint that holds {precision} weights, but its "
            "config.json has no quantization_config (vLLM would run it unquantized); use a pre-quantized "
            "checkpoint, precision: fp8 (quantized at load), or bf16"
        )
    if held is None or allowed is None or held in allowed:
        return None
    return (
        f"engine.precision: {precision!r}, but the checkpoint's config.json holds {held} weights; set "
        f"precision: {held} (or auto)"
    )
