"""Offload split arithmetic on literal values (hand-computed), and the 8B/70B catalog weight sizes."""

from __future__ import annotations

import pytest

from harness.catalog import get_model
from harness.offload import decode_weight_bytes, effective_bandwidth, llama_weight_bytes, split, step_time_s
from harness.roofline import BYTES_PER_PARAM


def test_split_levels() -> None:
    """4 blocks of 100 bytes, a 50-byte output layer. llama.cpp fills the GPU from the end, the output
    layer first: n_gpu_layers 2 is the output and the last block (its log: "offloading output layer to
    GPU", "offloading 1 repeating layers to GPU")."""
    assert split(0, 4, 400, 50) == split(0, 4, 400.0, 50.0)
    none = split(0, 4, 400, 50)
    assert (none.gpu_bytes, none.cpu_bytes, none.output_on_gpu) == (0.0, 450.0, False)
    output_only = split(1, 4, 400, 50)
    assert (output_only.gpu_bytes, output_only.cpu_bytes, output_only.gpu_blocks) == (50.0, 400.0, 0)
    half = split(2, 4, 400, 50)
    assert (half.gpu_bytes, half.cpu_bytes, half.gpu_blocks) == (150.0, 300.0, 1)
    all_but_one = split(4, 4, 400, 50)  # as many slots as blocks: the first block stays on the CPU
    assert (all_but_one.gpu_bytes, all_but_one.cpu_bytes) == (350.0, 100.0)
    for n in (5, 99, -1):
        full = split(n, 4, 400, 50)
        assert (full.gpu_bytes, full.cpu_bytes, full.gpu_blocks) == (450.0, 0.0, 4)
        assert full.label == "4/4 blocks + output on GPU"
    assert half.label == "1/4 blocks + output on GPU" and none.label == "0/4 blocks on GPU"


def test_step_time_is_the_sum_of_both_sides() -> None:
    s = split(2, 4, 400, 50)  # 150 B on the GPU, 300 B on the CPU
    assert step_time_s(s, 1000.0, 100.0) == pytest.approx(0.15 + 3.0)
    assert step_time_s(split(99, 4, 400, 50), 1000.0, None) == pytest.approx(0.45)
    assert step_time_s(s, 1000.0, None) is None
    assert effective_bandwidth(450.0, 0.5) == 900.0
    with pytest.raises(ValueError):
        effective_bandwidth(1.0, 0.0)


def test_llama_catalog_weight_bytes() -> None:
    # Llama-3.1-8B per block: q,o 2*4096*4096 + k,v 2*4096*1024 + ffn 3*4096*14336 = 218,103,808 params
    blocks, output = llama_weight_bytes(get_model("llama-3.1-8b"), 2.0)
    assert blocks == 32 * 218_103_808 * 2
    assert output == 128_256 * 4096 * 2
    # 70B at Q8_0: 80 blocks of 855,638,016 params
    blocks70, _ = llama_weight_bytes(get_model("llama-3.1-70b"), BYTES_PER_PARAM["q8_0"])
    assert blocks70 == pytest.approx(80 * 855_638_016 * 34 / 32)


def test_decode_weight_bytes_counts_a_tied_output_layer_as_the_embeddings() -> None:
    # Gemma-3-270M Q4_K_M as shipped: no output.weight, 178,257,920 B of token_embd
    gemma = {"blocks": 68_327_424, "token_embd": 178_257_920, "output": 0, "other": 2560}
    assert decode_weight_bytes(gemma) == (68_327_424.0, 178_257_920.0)
    # an own output layer: the embeddings (one row read per token) are left out
    assert decode_weight_bytes({"blocks": 4e9, "token_embd": 1e9, "output": 1.1e9}) == (4e9, 1.1e9)
    assert decode_weight_bytes({}) == (0.0, 0.0)
