"""Edges of the offload split: a model without blocks is refused, and a model of a single block splits
into the output layer and that block (hand-computed)."""

from __future__ import annotations

import pytest

from harness.offload import split


@pytest.mark.parametrize("blocks", [0, -1])
def test_split_refuses_a_model_without_blocks(blocks: int) -> None:
    with pytest.raises(ValueError, match="blocks must be >= 1"):
        split(1, blocks, 400, 50)


def test_split_of_a_one_block_model() -> None:
    # 1 block of 100 B, a 50-byte output layer: 1 slot is the output layer, 2 slots add the block
    none = split(0, 1, 100, 50)
    assert (none.gpu_bytes, none.cpu_bytes, none.gpu_blocks, none.output_on_gpu) == (0.0, 150.0, 0, False)
    output_only = split(1, 1, 100, 50)
    assert (output_only.gpu_bytes, output_only.cpu_bytes, output_only.gpu_blocks) == (50.0, 100.0, 0)
    assert output_only.label == "0/1 blocks + output on GPU"
    full = split(2, 1, 100, 50)
    assert (full.gpu_bytes, full.cpu_bytes, full.gpu_blocks) == (150.0, 0.0, 1)
    assert split(-1, 1, 100, 50) == full
    assert full.label == "1/1 blocks + output on GPU"
