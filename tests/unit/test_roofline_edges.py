"""Edges of the roofline math: bytes per parameter, argument checks, efficiency, offload, pipeline stages,
ties between the memory and compute bounds, and the smallest batch for a target rate.

Each test pins a result that a one-token change in harness/roofline.py (< for <=, a dropped factor, a
constant off by one) would alter; the comments give the arithmetic by hand.

Fixtures: a 1e9-parameter shape of 10 layers, 8 heads and 8 KV heads of 128: KV per token
= 2 x 10 x 8 x 128 x 2 B = 40,960 B; a device of 1e12 B/s, 1e15 FLOP/s (bf16), 80 GiB, host link 5e10 B/s.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.catalog.hardware import Device
from harness.roofline import (
    Shape,
    bytes_per_param,
    decode_bound,
    min_batch_for,
    prefill_bound,
    roofline_table,
)

S = Shape("t", 1e9, layers=10, heads=8, kv_heads=8, head_dim=128)
D = Device(
    key="t",
    kind="gpu",
    vendor="other",
    name="t",
    architecture="t",
    form_factor="sxm",
    memory_gib=80,
    memory_type="x",
    bandwidth_gbs=1000,
    bf16_tflops=1000,
    tdp_w=1,
    source="t",
    host_link_gbs=50,
)


def dev(**changes: Any) -> Device:
    return D.model_copy(update=changes)


# bytes per parameter


def test_bytes_per_param_of_every_precision_name() -> None:
    """None and "auto" mean the checkpoint's 16-bit weights; GGUF quants average over their blocks."""
    exact = {
        None: 2.0,
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
        "AWQ": 0.5,  # names are case-blind
        "q8_0": 1.0625,  # 34 / 32
        "q6_k": 0.8203125,  # 210 / 256
        "q4_0": 0.5625,  # 18 / 32
    }
    for name, expected in exact.items():
        assert bytes_per_param(name) == expected, name
    assert bytes_per_param("q5_k_m") == pytest.approx(0.71295, rel=1e-12)  # 5.7036 / 8
    assert bytes_per_param("q4_k_m") == pytest.approx(0.6118, rel=1e-12)  # 4.8944 / 8


# decode: argument checks, efficiency, offload


@pytest.mark.parametrize(
    "kwargs",
    [{"tp": 0}, {"batch": 0}, {"efficiency": 0.0}, {"efficiency": 1.5}],
    ids=["tp0", "batch0", "efficiency0", "efficiency1.5"],
)
def test_decode_rejects_empty_group_batch_and_efficiency_outside_unit_interval(
    kwargs: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="efficiency in"):
        decode_bound(S, D, 2e9, **kwargs)


def test_decode_efficiency_scales_bandwidth_down() -> None:
    # t_mem = 2e9 / (1e12 x 0.5) = 4 ms -> 250 tok/s
    b = decode_bound(S, D, 2e9, efficiency=0.5)
    assert b.t_memory_s == pytest.approx(0.004, rel=1e-12)
    assert b.tok_s == pytest.approx(250.0, rel=1e-12)
    assert b.bound == "memory"


def test_decode_efficiency_scales_the_offload_link_down() -> None:
    # on device 1e9 / 5e11 = 2 ms; offload 1e9 / (5e10 x 0.5) = 40 ms -> 25 tok/s
    b = decode_bound(S, D, 2e9, offload_bytes=1e9, offload_bandwidth_bytes_s=5e10, efficiency=0.5)
    assert b.t_memory_s == pytest.approx(0.040, rel=1e-12)
    assert b.tok_s == pytest.approx(25.0, rel=1e-12)
    assert b.bound == "offload"


def test_decode_efficiency_scales_peak_flops_down() -> None:
    # t_cmp = 2000 x 2e9 / (1e15 x 0.5) = 8 ms > t_mem = 2e9 / 5e11 = 4 ms -> 2000 / 8 ms = 250,000 tok/s
    b = decode_bound(S, D, 2e9, batch=2000, efficiency=0.5)
    assert b.t_compute_s == pytest.approx(0.008, rel=1e-12)
    assert b.bound == "compute"
    assert b.tok_s == pytest.approx(250_000.0, rel=1e-12)


def test_decode_offloaded_bytes_are_not_read_from_device_memory() -> None:
    # on device 2e9 - 0.5e9 = 1.5e9 B / 1e12 = 1.5 ms > offload 0.5e9 / 1e12 = 0.5 ms -> 666.67 tok/s
    b = decode_bound(S, D, 2e9, offload_bytes=0.5e9, offload_bandwidth_bytes_s=1e12)
    assert b.t_memory_s == pytest.approx(0.0015, rel=1e-12)
    assert b.tok_s == pytest.approx(2000 / 3, rel=1e-12)
    assert b.bound == "memory"


# decode: what fits


def test_pipeline_stages_split_weights_and_kv_in_what_fits() -> None:
    # 1 GiB device, all of it usable: room = 2^30 - 2^30 / 2 = 536,870,912 B;
    # KV = 20,000 x 40,960 = 819,200,000 B, / 2 stages = 409,600,000 <= room -> fits, max batch 1
    b = decode_bound(
        S, dev(memory_gib=1), 2**30, context_tokens=20000, memory_utilization=1.0, pipeline_stages=2
    )
    assert b.fits is True
    assert b.max_batch == 1


def test_weights_over_memory_fit_no_batch_at_all() -> None:
    # room = 0.9 x 2^30 - 2^30 < 0: no batch fits; max batch 0, not a negative count
    b = decode_bound(S, dev(memory_gib=1), 2**30, context_tokens=1000)
    assert b.fits is False
    assert b.max_batch == 0


def test_one_token_of_context_still_gives_a_max_batch() -> None:
    # room = 0.9 x 80 x 2^30 - 2e9 = 75,309,411,328 B; / 40,960 B per sequence = 1,838,608.67 -> 1,838,608
    b = decode_bound(S, D, 2e9, context_tokens=1)
    assert b.max_batch == 1_838_608


# prefill


def test_prefill_offloaded_bytes_are_not_read_from_device_memory() -> None:
    # on device 1.5e9 / 1e12 = 1.5 ms > offload 0.5 ms, compute 2e9 / 1e15 = 2 us -> 666.67 tok/s
    p = prefill_bound(S, D, 2e9, 1, offload_bytes=0.5e9, offload_bandwidth_bytes_s=1e12)
    assert p["t_prefill_s"] == pytest.approx(0.0015, rel=1e-12)
    assert p["prefill_tok_s"] == pytest.approx(2000 / 3, rel=1e-12)
    assert p["bound"] == "memory"


def test_prefill_compute_splits_over_tp_at_the_given_efficiency() -> None:
    # FLOPs = 2 x 1e9 x 1000 + 2 x 10 x 8 x 128 x 1000^2 = 2.02048e12;
    # t_cmp = 2.02048e12 / (2 x 1e15 x 0.5) = 2.02048 ms > t_mem = 1e9 / 5e11 = 2 ms
    # -> 1000 / 2.02048 ms = 494,931.897 tok/s
    p = prefill_bound(S, D, 2e9, 1000, tp=2, efficiency=0.5)
    assert p["t_prefill_s"] == pytest.approx(0.00202048, rel=1e-12)
    assert p["prefill_tok_s"] == pytest.approx(1000 / 0.00202048, rel=1e-12)
    assert p["bound"] == "compute"


def test_prefill_takes_the_slower_of_memory_and_compute() -> None:
    # t_mem = 2e9 / 1e12 = 2 ms, t_cmp = 2e9 / 1e15 = 2 us -> 2 ms, 500 tok/s
    p = prefill_bound(S, D, 2e9, 1)
    assert p["t_prefill_s"] == pytest.approx(0.002, rel=1e-12)
    assert p["prefill_tok_s"] == pytest.approx(500.0, rel=1e-12)
    assert p["bound"] == "memory"


# smallest batch for a target rate


def test_min_batch_rounds_an_exact_quotient_to_itself() -> None:
    # no context: B >= 1000 x 2e9 / 1e12 = 2 exactly -> 2 (not 3); compute cap 1e15 / 2e9 = 500,000
    got = min_batch_for(1000, S, D, 2e9)
    assert got["min_batch"] == 2
    assert got["compute_cap_tok_s"] == 500_000.0
    assert got["memory_cap_tok_s"] == math.inf


def test_min_batch_reaches_the_compute_cap_but_not_beyond() -> None:
    # compute cap 500,000 tok/s: reached with B = 500,000 x 2e9 / 1e12 = 1000; 600,000 is out of reach
    assert min_batch_for(600_000, S, D, 2e9)["min_batch"] is None
    at_cap = min_batch_for(500_000, S, D, 2e9)
    assert at_cap["min_batch"] == 1000
    assert at_cap["compute_cap_tok_s"] == 500_000.0


def test_min_batch_with_context_counts_kv_reads_and_attention_flops() -> None:
    # kv = 1000 x 40,960 = 4.096e7 B per sequence;
    # compute cap = 1e15 / (2e9 + 4 x 10 x 8 x 128 x 1000) = 1e15 / 2.04096e9 = 489,965.506 tok/s
    # memory cap = 1e12 / 4.096e7 = 24,414.0625 tok/s
    # B >= 1000 x 2e9 / (1e12 - 1000 x 4.096e7) = 2e12 / 9.5904e11 = 2.085 -> 3
    got = min_batch_for(1000, S, D, 2e9, context_tokens=1000)
    assert got["compute_cap_tok_s"] == pytest.approx(1e15 / 2.04096e9, rel=1e-12)
    assert got["memory_cap_tok_s"] == pytest.approx(24_414.0625, rel=1e-12)
    assert got["min_batch"] == 3


def test_min_batch_efficiency_scales_bandwidth_and_peak() -> None:
    # compute cap = 0.5 x 1e15 / 2.04096e9 = 244,982.753; B >= 2e12 / (5e11 - 4.096e10) = 4.357 -> 5
    got = min_batch_for(1000, S, D, 2e9, context_tokens=1000, efficiency=0.5)
    assert got["compute_cap_tok_s"] == pytest.approx(0.5e15 / 2.04096e9, rel=1e-12)
    assert got["min_batch"] == 5


def test_min_batch_tp_splits_weights_kv_and_compute() -> None:
    # per device: w = 1e9, kv = 1000 x 40,960 / 2 = 2.048e7; B >= 1e12 / (1e12 - 2.048e10) = 1.021 -> 2;
    # compute cap = 2 x 1e15 / 2.04096e9 = 979,931.013
    got = min_batch_for(1000, S, D, 2e9, context_tokens=1000, tp=2)
    assert got["min_batch"] == 2
    assert got["compute_cap_tok_s"] == pytest.approx(2e15 / 2.04096e9, rel=1e-12)


def test_min_batch_at_the_memory_cap_is_unreachable() -> None:
    # 24,414.0625 x 4.096e7 = 1e12 exactly: the denominator is 0, no batch reaches it
    assert min_batch_for(24_414.0625, S, D, 2e9, context_tokens=1000)["min_batch"] is None


def test_min_batch_is_at_least_one() -> None:
    # 100 x 2e9 / 1e12 = 0.2 -> 1; a target of 0: ceil(0 - 1e-9) = 0 -> 1
    assert min_batch_for(100, S, D, 2e9)["min_batch"] == 1
    assert min_batch_for(0, S, D, 2e9)["min_batch"] == 1


# the table


def test_roofline_table_streams_offload_over_the_host_link() -> None:
    # bf16: 2e9 B of weights, 1e9 of them offloaded over the 5e10 B/s host link: 1e9 / 5e10 = 20 ms
    # (> on device 1e9 + 4.096e7 B / 1e12 = 1.04 ms) -> 50 tok/s; 1.0 GB of weights and
    # 1000 x 40,960 = 0.04096 GB of KV on the device
    rows, pre = roofline_table(S, D, "bf16", 1, [1], 1000, 1, offload_bytes=1e9)
    (row,) = rows
    assert row["tok_s"] == pytest.approx(50.0, rel=1e-12)
    assert row["t_step_ms"] == pytest.approx(20.0, rel=1e-12)
    assert row["bound"] == "offload"
    assert row["weights_gb_per_device"] == pytest.approx(1.0, rel=1e-12)
    assert row["kv_gb_per_device"] == pytest.approx(0.04096, rel=1e-12)
    # prefill reads the offloaded 1e9 B over the same link once: 20 ms for 1 token
    assert pre["t_prefill_s"] == pytest.approx(0.020, rel=1e-12)
    assert pre["bound"] == "offload"


# ties


def test_decode_tie_between_memory_and_compute_is_memory() -> None:
    # 1e12 FLOP/s: t_cmp = 2 x 1e9 / 1e12 = 2 ms = t_mem = 2e9 / 1e12: compute must exceed memory
    b = decode_bound(S, dev(bf16_tflops=1), 2e9)
    assert b.t_compute_s == b.t_memory_s
    assert b.bound == "memory"


def test_prefill_tie_between_memory_and_compute_is_compute() -> None:
    # FLOPs = 2e9 + 2 x 10 x 8 x 128 = 2,000,020,480 / 1e12 = t_mem = 2,000,020,480 B / 1e12
    p = prefill_bound(S, dev(bf16_tflops=1), 2_000_020_480, 1)
    assert p["bound"] == "compute"


def test_tie_between_device_and_offload_reads_is_memory() -> None:
    # on device 2e9 - 1e9 = 1e9 B / 1e12 = 1 ms = offload 1e9 / 1e12: offload must exceed it
    d = decode_bound(S, D, 2e9, offload_bytes=1e9, offload_bandwidth_bytes_s=1e12)
    assert d.bound == "memory"
    assert d.tok_s == pytest.approx(1000.0, rel=1e-12)
    p = prefill_bound(S, D, 2e9, 1, offload_bytes=1e9, offload_bandwidth_bytes_s=1e12)
    assert p["bound"] == "memory"


def test_kv_filling_memory_exactly_fits() -> None:
    # room = 2^30 - (2^30 - 40,960,000) = 40,960,000 B = 1000 x 40,960: fits, max batch 1
    b = decode_bound(S, dev(memory_gib=1), 2**30 - 40_960_000, context_tokens=1000, memory_utilization=1.0)
    assert b.fits is True
    assert b.max_batch == 1
