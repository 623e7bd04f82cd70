"""scripts/gpu_table.py's 70B extrapolation on literal bandwidths (hand-computed rows)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_table  # noqa: E402

# Llama-3.1-70B: 80 blocks of 855,638,016 params; output layer 128,256 x 8192
BLOCK_PARAMS = 855_638_016
OUTPUT_PARAMS = 128_256 * 8192


def _rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines()[2:]]


def test_extrapolation_rows_by_hand() -> None:
    cal = {"F16": {"gpu": 3.0e12, "cpu": 50e9}}
    rows = _rows(gpu_table.extrapolate_70b(cal, "NVIDIA H200"))
    by = {(r[1], r[2]): r for r in rows}
    # no block on the GPU: every weight read from host RAM at 50 GB/s
    host_only = (80 * BLOCK_PARAMS + OUTPUT_PARAMS) * 2 / 50e9
    r = by[("NVIDIA H100 SXM5 80GB", "0/80 blocks on GPU")]
    assert float(r[4]) == round(host_only, 2) and float(r[5]) == round(1 / host_only, 2)
    # n_gpu_layers 40 on an H100: the output layer and the last 39 blocks, read at 3.0 TB/s x 3350/4800
    # (datasheet ratio); the first 41 blocks from the host
    gpu_bw = 3.0e12 * 3350 / 4800
    t40 = (39 * BLOCK_PARAMS + OUTPUT_PARAMS) * 2 / gpu_bw + 41 * BLOCK_PARAMS * 2 / 50e9
    assert float(by[("NVIDIA H100 SXM5 80GB", "39/80 blocks + output on GPU")][4]) == round(t40, 2)
    # what fits in the 81,559 MiB NVML reports with 6 GiB kept: the output layer first, then
    # (85.52e9 - 6.44e9 - 2.10e9) / 1.711e9 B = 44.98 -> 44 blocks
    fit = int((81_559 * 2**20 - 6 * 2**30 - OUTPUT_PARAMS * 2) // (BLOCK_PARAMS * 2))
    assert fit == 44
    assert ("NVIDIA H100 SXM5 80GB", "44/80 blocks + output on GPU") in by
    # on the H200 (143,771 MiB) all 80 blocks and the output layer fit: the GPU side only
    full = by[("NVIDIA H200 SXM 141GB", "80/80 blocks + output on GPU")]
    assert float(full[4]) == round((80 * BLOCK_PARAMS + OUTPUT_PARAMS) * 2 / 3.0e12, 2)


def test_a_run_on_an_h100_sxm_gives_each_extrapolated_row_once() -> None:
    """The table sets an H100 SXM beside the GPU the run was on: on an H100 SXM, the same rows twice."""
    rows = _rows(gpu_table.extrapolate_70b({"F16": {"gpu": 2.5e12, "cpu": 50e9}}, "NVIDIA H100 80GB HBM3"))
    assert len(rows) == 3 and len({(r[1], r[2]) for r in rows}) == 3


def test_no_extrapolation_without_both_sides() -> None:
    md = gpu_table.extrapolate_70b({"F16": {"cpu": 50e9}}, "NVIDIA H200")
    assert len(md.splitlines()) == 2  # the header only


def test_llama_bench_calibration_from_a_committed_cpu_run(tmp_path: Path) -> None:
    import shutil

    run = ROOT / "results/evidence/llama-bench-cpu/20261206T001355Z-llama-bench-cpu"
    shutil.copytree(run, tmp_path / run.name)
    manifests = gpu_table.read_manifests(tmp_path)
    rows, _ = gpu_table.load_rows(manifests)
    bench = gpu_table.bench_calibrate(manifests, rows)
    # Gemma-3-270M Q4_K_M, no layer on a GPU: 18 blocks (68,327,424 B) + the tied output layer
    # (token_embd, 178,257,920 B) per step, at llama-bench's tg64 @ d128 of 80.627694 tok/s
    assert bench == {"Q4_K_M": {"cpu": (68_327_424 + 178_257_920) * 80.627694}}
    table = gpu_table.calibration_table(gpu_table.calibrate(rows), bench)
    assert table.splitlines()[2].endswith("| – | 19.9 |")


def test_the_split_models_gpu_bytes_are_set_beside_llama_cpps_own_buffers() -> None:
    """The measured table shows the GPU weights the split model expects beside the CUDA buffers
    llama.cpp's load log gave, and flags a gap over 5 %: its placement rule changed once already."""
    from harness.offload import split

    s = split(17, 32, 32 * 436.2e6, 1050.7e6)  # the output layer and the last 16 blocks: 8,029.9e6 B
    assert gpu_table.placement_check(s, 7_658.0) == "7658 / 7658"  # 8,029.9e6 B = 7,657.9 MiB
    assert gpu_table.placement_check(s, 7_242.0) == "7658 / 7242 (!)"  # 5.4 % fewer on the GPU
    assert gpu_table.placement_check(s, None) == "–" and gpu_table.placement_check(None, 7_658.0) == "–"
