"""Roofline ceilings against numbers computed by hand from the datasheets (shared REFERENCE examples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.catalog import get_model
from harness.catalog.hardware import get_device
from harness.roofline import Shape, bytes_per_param, decode_bound, min_batch_for, prefill_bound
from tests.conftest import run_harness

MISTRAL = Shape.of(get_model("mistral-7b"))  # 7.24e9 params
LLAMA70 = Shape.of(get_model("llama-3.1-70b"))  # 70.6e9 params, 80 layers, 64 heads, 8 KV heads, head dim 128
A100 = get_device("a100-80gb-sxm")  # 2039 GB/s, 312 TFLOPS bf16, 81,920 MiB
H100 = get_device("h100-sxm")  # 3350 GB/s, 989 bf16 / 1979 fp8 TFLOPS, 81,559 MiB


def test_single_stream_weights_only_examples_from_reference() -> None:
    # Mistral-7B bf16: 7.24e9 x 2 B = 14.48e9 B per token
    # A100-80GB: 2039e9 / 14.48e9 = 140.81 tok/s (REFERENCE: ~141); H100 SXM: 3350e9 / 14.48e9 = 231.35 (~231)
    assert decode_bound(MISTRAL, A100, MISTRAL.params * 2).tok_s == pytest.approx(140.8149, rel=1e-5)
    assert decode_bound(MISTRAL, H100, MISTRAL.params * 2).tok_s == pytest.approx(231.3536, rel=1e-5)
    # Llama-70B fp8 on one H100: 3350e9 / 70.6e9 = 47.45 tok/s (REFERENCE: ~47)
    b = decode_bound(LLAMA70, H100, LLAMA70.params * 1, flops_precision="fp8")
    assert b.tok_s == pytest.approx(47.4504, rel=1e-5)
    assert b.bound == "memory" and b.fits is True


def test_batch_shares_the_weight_read_but_not_the_kv_read() -> None:
    # KV per token (bf16) = 2 x 80 x 8 x 128 x 2 = 327,680 B; batch 8 x 1024 tokens = 2.684e9 B
    # t = (70.6e9 + 2.684e9) / 3.35e12 = 21.876 ms -> 8 / 0.021876 = 365.70 tok/s
    b = decode_bound(LLAMA70, H100, LLAMA70.params, batch=8, context_tokens=1024, flops_precision="fp8")
    assert b.kv_bytes_per_device == 8 * 1024 * 327_680
    assert b.tok_s == pytest.approx(365.6988, rel=1e-5)
    assert b.tok_s_per_sequence == pytest.approx(365.6988 / 8, rel=1e-5)
    # room for KV = 0.9 x 81,559 MiB (what NVML reports) - 70.6e9 = 6.369e9 B -> / (1024 x 327,680) = 18.98
    # -> 18 sequences
    assert b.max_batch == 18 and b.fits is True
    assert decode_bound(LLAMA70, H100, LLAMA70.params, batch=64, context_tokens=1024).fits is False


def test_tensor_parallel_splits_weights_and_kv_heads() -> None:
    # bf16 70B over TP 2: 141.2e9 / 2 per device -> 3350e9 / 70.6e9 = 47.45 tok/s per TP group
    b = decode_bound(LLAMA70, H100, LLAMA70.params * 2, tp=2)
    assert b.tok_s == pytest.approx(47.4504, rel=1e-5)
    # KV heads: 8 shared by TP 2 -> half the KV per device; TP 16 > 8 KV heads -> replicated, 1/8 per device
    kv2 = decode_bound(
        LLAMA70, H100, LLAMA70.params * 2, tp=2, batch=1, context_tokens=1000
    ).kv_bytes_per_device
    kv16 = decode_bound(
        LLAMA70, H100, LLAMA70.params * 2, tp=16, batch=1, context_tokens=1000
    ).kv_bytes_per_device
    assert kv2 == 1000 * 327_680 / 2 and kv16 == 1000 * 327_680 / 8


def test_huge_batch_becomes_compute_bound() -> None:
    # Mistral bf16 on A100, batch 4096, no context: memory 14.48e9 / 2.039e12 = 7.10 ms,
    # compute 4096 x 2 x 7.24e9 / 312e12 = 190.1 ms -> tok/s = 312e12 / (2 x 7.24e9) = 21,546.96
    b = decode_bound(MISTRAL, A100, MISTRAL.params * 2, batch=4096)
    assert b.bound == "compute"
    assert b.t_memory_s == pytest.approx(0.0071015, rel=1e-4)
    assert b.tok_s == pytest.approx(21546.961, rel=1e-6)


def test_attention_flops_grow_with_the_context() -> None:
    # the same at 100 tokens of context: per token 2 x 7.24e9 + 4 x 32 layers x 32 heads x 128 x 100
    # = 1.448e10 + 5.24288e7 FLOP; still compute-bound (KV read: 4096 x 100 x 131,072 B = 53.7 GB,
    # 26.3 ms beside the 7.1 ms of weights, against 191 ms of compute) -> 312e12 / 1.4532429e10
    b = decode_bound(MISTRAL, A100, MISTRAL.params * 2, batch=4096, context_tokens=100)
    assert b.bound == "compute"
    assert b.tok_s == pytest.approx(312e12 / (2 * 7.24e9 + 4 * 32 * 32 * 128 * 100), rel=1e-9)
    assert b.t_memory_s == pytest.approx((14.48e9 + 4096 * 100 * 131_072) / 2039e9, rel=1e-9)


def test_offloaded_weights_are_capped_by_the_host_link() -> None:
    # 70 GiB = 75.16e9 B over PCIe Gen5 x16 (63 GB/s) = 1.193 s per step -> 0.838 tok/s;
    # the remaining 66.0e9 B on the GPU take only 19.7 ms
    off = 70 * 2**30
    b = decode_bound(LLAMA70, H100, LLAMA70.params * 2, offload_bytes=off, offload_bandwidth_bytes_s=63e9)
    assert b.bound == "offload"
    assert b.tok_s == pytest.approx(0.83819, rel=1e-4)
    with pytest.raises(ValueError, match="offload_bandwidth"):
        decode_bound(LLAMA70, H100, LLAMA70.params * 2, offload_bytes=off)


def test_prefill_compute_bound() -> None:
    # 70B fp8 on H100, 1024-token prompt: 2 x 70.6e9 x 1024 + 2 x 80 x 64 x 128 x 1024^2 = 1.4596e14 FLOP
    # / 1979e12 = 73.76 ms -> 13,884 tok/s
    p = prefill_bound(LLAMA70, H100, LLAMA70.params, 1024, flops_precision="fp8")
    assert p["bound"] == "compute"
    assert p["t_prefill_s"] == pytest.approx(0.0737560, rel=1e-5)
    assert p["prefill_tok_s"] == pytest.approx(13883.61, rel=1e-5)


def test_prefill_with_offloaded_weights_waits_for_them() -> None:
    # 70B fp8 on H100 with 30 GB offloaded over a 64 GB/s link: 30e9 / 64e9 = 468.75 ms, above the
    # 73.76 ms of compute and the (70.6e9 - 30e9) / 3.35e12 = 12.1 ms of on-device weights
    p = prefill_bound(LLAMA70, H100, LLAMA70.params, 1024, flops_precision="fp8", offload_bytes=30e9,
                      offload_bandwidth_bytes_s=64e9)  # fmt: skip
    assert p["bound"] == "offload"
    assert p["t_prefill_s"] == pytest.approx(0.46875, rel=1e-9)
    assert p["prefill_tok_s"] == pytest.approx(1024 / 0.46875, rel=1e-9)
    # 1 GB offloaded: 15.6 ms over the link, still below the compute time
    small = prefill_bound(LLAMA70, H100, LLAMA70.params, 1024, flops_precision="fp8", offload_bytes=1e9,
                          offload_bandwidth_bytes_s=64e9)  # fmt: skip
    assert small["bound"] == "compute" and small["t_prefill_s"] == pytest.approx(0.0737560, rel=1e-5)
    with pytest.raises(ValueError, match="offload_bandwidth"):
        prefill_bound(LLAMA70, H100, LLAMA70.params, 1024, offload_bytes=1e9)


def test_min_batch_for_the_articles_3311_tok_s_on_one_h100() -> None:
    # B >= 3311 x 70.6e9 / (3.35e12 - 3311 x 1024 x 327,680) = 104.4 -> 105; only 18 fit
    got = min_batch_for(3311, LLAMA70, H100, LLAMA70.params, context_tokens=1024, flops_precision="fp8")
    assert got["min_batch"] == 105
    assert got["max_batch"] == 18 and got["fits"] is False
    # memory cap as B -> inf: 3.35e12 / (1024 x 327,680) = 9,983.8 tok/s; above it no batch helps
    assert got["memory_cap_tok_s"] == pytest.approx(9983.778, rel=1e-6)
    assert min_batch_for(10_000, LLAMA70, H100, LLAMA70.params, context_tokens=1024)["min_batch"] is None


def test_bytes_per_param() -> None:
    assert bytes_per_param("BF16") == 2 and bytes_per_param("fp8") == 1 and bytes_per_param("int4") == 0.5
    assert bytes_per_param("q8_0") == 34 / 32  # 32 int8 weights + an fp16 scale per block
    with pytest.raises(ValueError, match="allowed"):
        bytes_per_param("fp3")


def test_roofline_cli_prints_the_batch_table() -> None:
    res = run_harness(
        "roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--precision", "fp8", "--batch", "1,8",
        "--context-tokens", "1024",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [
        [c.strip() for c in line.split("│")[1:-1]] for line in res.stdout.splitlines() if line.startswith("│")
    ]
    # batch 1: a step reads the 70.60e9 B of the weights (72.70e9 held: fp8 keeps the embeddings and
    # lm_head, 2 x 128,256 x 8,192 parameters, 16-bit, and reads a row of the embeddings), (70.60e9 + 1024 x
    # 327,680) / 3.35e12 = 21.17 ms -> 47.2 tok/s; batch 8 as above: 365.7, 45.7 a sequence
    assert rows[0][:5] == ["1", "47.2", "47.2", "21.17", "memory"]
    assert rows[1][:3] == ["8", "365.7", "45.7"]
    assert "prefill of 1024 tokens" in res.stdout and "note:" not in res.stdout
    # bf16 on one H100: 141.2 GB of weights in 85.5 GB (81,559 MiB); no context, no batch bound
    res = run_harness("roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm")
    assert "│   NO │" in res.stdout
    text = " ".join(res.stdout.split())
    assert (
        "note: 'fits NO': 141.2 GB of weights and 0.00 GB of KV per device (batch 1) exceed 90 % of its "
        "85.5 GB: the tok/s shown is the bandwidth's ceiling if they fit, not a setup that runs" in text
    )
    assert "note: max batch: give --context-tokens" in text
    # a tiny model's step and weights are fractions of a ms and a GB: significant digits, not 0.00 and 0.0
    res = run_harness("roofline", "--model", "tiny-llama", "--gpu", "a100-80gb-sxm", "--batch", "1,4")
    tiny = [[c.strip() for c in ln.split("│")[1:-1]] for ln in res.stdout.splitlines() if ln.startswith("│")]
    # a step reads 819,840 x 2 B less the embeddings' 2048 x 128 x 2 B: 1.115e6 B / 2.039e12 B/s; the
    # device holds all 1.64e6 B
    assert [r[3] for r in tiny] == ["0.000547"] * 2 and tiny[0][5] == "0.00164"
    assert "prefill of 1024 tokens: >= 0.00710 ms" in res.stdout
    assert "bits a weight" not in res.stdout  # bf16: every weight is 2 bytes
    res = run_harness(
        "roofline",
        "--model",
        "tiny-llama",
        "--gpu",
        "a100-80gb-sxm",
        "--batch",
        "1",
        "--context-tokens",
        "1024",
    )
    kv = [[c.strip() for c in ln.split("│")[1:-1]] for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert kv[0][6] not in ("0", "0.00") and len(kv[0][6].lstrip("0.")) == 3, kv  # 3 significant digits
    # weights that do not fit beside a small KV cache: both in significant digits
    res = run_harness("roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--context-tokens", "16")
    assert "'fits NO': 141.2 GB of weights and 0.00524 GB of KV per device" in " ".join(res.stdout.split())
    # and a tiny model's weights beside a KV cache far too large for the device
    big = ("--batch", "100000", "--context-tokens", "100000")
    res = run_harness("roofline", "--model", "tiny-llama", "--gpu", "a100-80gb-sxm", *big)
    assert "'fits NO': 0.00164 GB of weights and " in " ".join(res.stdout.split())
    # a llama.cpp mix is one file's average: another model's embeddings may weigh more
    res = run_harness("roofline", "--model", "gemma-3-270m", "--gpu", "h100-sxm", "--precision", "Q4_K_M")
    text = " ".join(res.stdout.split())
    assert (
        "note: Q4_K_M: 4.89 bits a weight, the average of llama.cpp's Llama-3.1-8B file of this mix" in text
    )
    res = run_harness("roofline", "--model", "gemma-3-270m", "--gpu", "h100-sxm", "--precision", "q8_0")
    assert "bits a weight" not in res.stdout  # its output tensor is Q8_0 too: the file is as nominal
    res = run_harness("roofline", "--model", "gemma-3-270m", "--gpu", "h100-sxm", "--precision", "q4_0")
    assert "note: q4_0: 4.5 bits a weight, the block's size; llama.cpp keeps the output tensor" in " ".join(
        res.stdout.split()
    )
    bad = run_harness("roofline", "--model", "llama-9", "--gpu", "h100-sxm")
    assert bad.returncode == 2 and "allowed:" in bad.stderr and "Traceback" not in bad.stderr


def test_a_cpu_without_a_flops_peak_has_memory_bounds_labelled_as_such() -> None:
    """A CPU has no FLOP/s peak in the catalog: the prefill bound was NaN ms, labelled memory-bound."""
    epyc = get_device("epyc-9654")  # 460.8 GB/s, no FLOP/s peak
    assert epyc.peak_flops("bf16") is None
    llama8 = Shape.of(get_model("llama-3.1-8b"))
    # the weight read alone: 8.03e9 x 2 B / 460.8e9 B/s
    p = prefill_bound(llama8, epyc, llama8.params * 2, 512)
    assert p["t_prefill_s"] == pytest.approx(llama8.params * 2 / 460.8e9, rel=1e-9)
    assert p["prefill_tok_s"] == pytest.approx(512 / p["t_prefill_s"], rel=1e-9)
    assert p["bound"] == "memory (no FLOP/s peak known)"
    d = decode_bound(llama8, epyc, llama8.params * 2, batch=64)
    assert d.bound == "memory (no FLOP/s peak known)" and d.t_compute_s == 0.0
    assert decode_bound(llama8, H100, llama8.params * 2).bound == "memory"
    cli = run_harness("roofline", "--model", "llama-3.1-8b", "--gpu", "epyc-9654", "--context-tokens", "512")
    assert cli.returncode == 0, cli.stderr
    assert "nan" not in cli.stdout and "no FLOP/s peak in the catalog for this device" in cli.stdout


def test_tensor_parallel_sizes_vllm_can_split_the_heads_over() -> None:
    from harness.roofline import tensor_parallel_problem

    # Llama-3.1-70B: 64 heads, 8 KV heads; 16 GPUs hold each KV head twice
    assert [n for n in range(1, 17) if tensor_parallel_problem(64, 8, n) is None] == [1, 2, 4, 8, 16]
    assert tensor_parallel_problem(64, 8, 3) == "64 attention heads do not split evenly over 3 GPUs"
    # 48 heads over 12 GPUs divide, 8 KV heads do not (nor 12 over 8)
    assert "8 KV heads do not split evenly over 12 GPUs" in str(tensor_parallel_problem(48, 8, 12))


def test_a_precision_in_capitals_is_that_precision_for_the_flops_peak_too() -> None:
    """`roofline --precision FP8` counted fp8 weights against the bf16 peak: prefill at TP 1 took 147.6 ms,
    not 73.8."""
    h100 = get_device("h100-sxm")
    assert h100.peak_flops("FP8") == h100.peak_flops("fp8") == 1979e12  # dense (3958 with sparsity)
    assert h100.peak_flops("BF16") == h100.peak_flops("bf16")
    lower = run_harness("roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--precision", "fp8")
    upper = run_harness("roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--precision", "FP8")
    assert lower.returncode == upper.returncode == 0, upper.stderr
    assert upper.stdout.replace("FP8", "fp8") == lower.stdout


def test_roofline_writes_its_rows_as_numbers(tmp_path: Path) -> None:
    """The table was the only output: a script comparing devices had to parse rounded text."""
    import json

    import pandas as pd

    args = ["roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--precision", "fp8"]
    args += ["--batch", "1,8", "--context-tokens", "1024"]
    res = run_harness(*args, "--out", str(tmp_path / "r.csv"))
    assert res.returncode == 0 and f"wrote {tmp_path / 'r.csv'}" in res.stderr, res.stderr
    df = pd.read_csv(tmp_path / "r.csv")
    # (70.60e9 + 1024 x 327,680) B read a step at 3.35e12 B/s, as the table above says (47.2)
    assert list(df["batch"]) == [1, 8] and df["tok_s"][0] == pytest.approx(
        3.35e12 / (70.6e9 + 1024 * 327_680)
    )
    assert set(df["model"]) == {"llama-3.1-70b"} and set(df["prefill_bound"]) == {"compute"}
    # held and read apart: 72.70 GB on the device, of which a step reads 70.60
    assert df["weights_gb_per_device"][0] == pytest.approx(72.70, abs=0.01)
    assert df["weights_read_gb_per_device"][0] == pytest.approx(70.60, abs=0.01)
    res = run_harness(*args, "--out", str(tmp_path / "r.json"))
    got = json.loads((tmp_path / "r.json").read_text())
    assert got["asked"]["precision"] == "fp8" and [r["batch"] for r in got["decode"]] == [1, 8]
    assert got["decode"][1]["max_batch"] == 12 and got["prefill"]["input_tokens"] == 1024
    res = run_harness(*args, "--out", str(tmp_path))
    assert res.returncode == 2 and "is a directory" in res.stderr
