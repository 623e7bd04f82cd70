"""llama.cpp partial offload: which weights each decode step reads from GPU memory and from host RAM.

llama.cpp counts the output layer as the layer after the last block and fills the GPU from the end:
`n_gpu_layers` = k puts the output layer and the last k - 1 blocks on the GPU (its load log: "offloading
output layer to GPU", "offloading k-1 repeating layers", which says one block short for k > blocks,
though all are placed; src/llama-model.cpp, i_gpu_start =
n_layer + 1 - k, in the llama.cpp llama-cpp-python 0.3.36 vendors; before llama.cpp PR #18148 the
output layer went last). The token embeddings stay in host RAM (one row is read per token). A decode
step runs the CPU layers and the GPU layers one after the other, so for a step that is bound by reading
weights:

    t_step = cpu_bytes / cpu_bandwidth + gpu_bytes / gpu_bandwidth

Effective bandwidths come from measurement (bytes read per step / measured time per output token);
`step_time_s` then predicts the other offload levels and other models of the same kind. These are
pure functions; scripts/gpu_table.py applies them to run directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.catalog import ModelArch


def no_weights_on_gpu(placement: dict[str, Any]) -> bool:
    """Whether llama.cpp's load log, as `engines.llamacpp.load_placement` reads it, says the run put no
    weights on a GPU: it ignored --gpu-layers (no usable GPU), or every model buffer is host memory.
    False where the log does not tell."""
    if placement.get("gpu_layers_ignored"):
        return True
    return "gpu_weights_mib" in placement and not placement["gpu_weights_mib"]


def cuda_devices_with_weights(placement: dict[str, Any]) -> list[int] | None:
    """The CUDA devices (k of `CUDA<k>`, CUDA's numbering of the GPUs the process sees) llama.cpp's load
    log put model weights on, in order; None where it names none, or where a GPU buffer is not one CUDA
    device's (row split's `CUDA_Split`, another backend's `Vulkan0`): then it cannot tell which GPUs."""
    import re

    buffers = placement.get("model_buffers_mib")
    if not isinstance(buffers, dict):
        return None
    gpu = {k: v for k, v in buffers.items() if not k.upper().startswith("CPU") and not k.endswith("_Host")}
    found = {k: re.fullmatch(r"CUDA(\d+)", k) for k in gpu}
    if not gpu or not all(found.values()):
        return None
    return sorted(
        int(m.group(1)) for k, m in found.items() if m and isinstance(gpu[k], int | float) and gpu[k] > 0
    )


@dataclass(frozen=True)
class Split:
    """Weight bytes one decode step reads on each side."""

    gpu_blocks: int
    blocks: int
    output_on_gpu: bool
    gpu_bytes: float
    cpu_bytes: float

    @property
    def label(self) -> str:
        out = " + output" if self.output_on_gpu else ""
        return f"{self.gpu_blocks}/{self.blocks} blocks{out} on GPU"


def split(n_gpu_layers: int, blocks: int, block_bytes: float, output_bytes: float) -> Split:
    """`block_bytes` is all blocks together; -1 means everything on the GPU (the scenario's meaning).
    The output layer takes the first of the `n_gpu_layers` slots, the last blocks the others."""
    if blocks < 1:
        raise ValueError("blocks must be >= 1")
    slots = blocks + 1 if n_gpu_layers < 0 else min(n_gpu_layers, blocks + 1)
    output_on_gpu = slots >= 1
    on_gpu = max(0, slots - 1)
    per_block = block_bytes / blocks
    gpu = on_gpu * per_block + (output_bytes if output_on_gpu else 0.0)
    cpu = (blocks - on_gpu) * per_block + (0.0 if output_on_gpu else output_bytes)
    return Split(on_gpu, blocks, output_on_gpu, gpu, cpu)


def decode_weight_bytes(groups: dict[str, Any]) -> tuple[float, float]:
    """(all blocks, output layer) bytes a decode step reads, from a GGUF's tensor bytes by group
    (`harness.models.weight_bytes`). A GGUF without `output.weight` ties the output layer to the token
    embeddings: llama.cpp then loads `token_embd` a second time as the output layer (placed as the
    output layer is), and every step reads all of it."""
    blocks = float(groups.get("blocks") or 0)
    output = float(groups.get("output") or 0) or float(groups.get("token_embd") or 0)
    return blocks, output


def effective_bandwidth(bytes_per_step: float, step_s: float) -> float:
    """Bytes per second that a step of `step_s` seconds reading `bytes_per_step` sustained."""
    if step_s <= 0:
        raise ValueError("step_s must be > 0")
    return bytes_per_step / step_s


def step_time_s(s: Split, gpu_bytes_s: float | None, cpu_bytes_s: float | None) -> float | None:
    """Predicted seconds per decode step (sequential CPU then GPU layers); None if a side is unknown."""
    t = 0.0
    for nbytes, bw in ((s.gpu_bytes, gpu_bytes_s), (s.cpu_bytes, cpu_bytes_s)):
        if nbytes:
            if not bw:
                return None
            t += nbytes / bw
    return t


def llama_block_params(hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int) -> int:
    """Weights of one llama-style block: the q and o projections (hidden x heads x head_dim each), k and v
    (hidden x kv_heads x head_dim each) and the three FFN matrices (hidden x ffn each); norms left out."""
    return 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + 3 * hidden * ffn


def llama_weight_bytes(arch: ModelArch, bytes_per_param: float) -> tuple[float, float]:
    """(all blocks, output layer) bytes of a llama-style architecture at `bytes_per_param`."""
    per_block = llama_block_params(arch.hidden, arch.heads, arch.kv_heads, arch.head_dim, arch.intermediate)
    return arch.layers * per_block * bytes_per_param, arch.vocab * arch.hidden * bytes_per_param
