"""Window math with literal values computed by hand."""

from __future__ import annotations

import pytest

from harness.telemetry.base import energy_columns
from harness.telemetry.window import (
    clip_series,
    counter_delta,
    counter_increase,
    held_seconds,
    integrate,
    interp_at,
    j_per_token,
    time_weighted_mean,
    unwrap_reading,
    window_values,
)

S = 1_000_000_000


def test_counter_delta_plain_wrap_and_reset() -> None:
    assert counter_delta(100, 250) == 150
    assert counter_delta(7, 7) == 0
    # RAPL-style wrap: 262143328850 µJ range, counter went from range-1000 to 500
    assert counter_delta(262_143_328_850 - 1000, 500, wrap_at=262_143_328_850) == 1500
    # no wrap range known (NVML mJ counter): a decrease is a reset, delta unknown
    assert counter_delta(5000, 10) is None


def test_interp_and_clip() -> None:
    t = [0, 1 * S, 2 * S]
    v = [100.0, 200.0, 400.0]
    assert interp_at(t, v, S // 2) == 150.0
    assert interp_at(t, v, 3 * S // 2) == 300.0
    assert interp_at(t, v, 2 * S) == 400.0
    assert interp_at(t, v, -1) is None and interp_at(t, v, 2 * S + 1) is None
    ts, vs = clip_series(t, v, S // 2, 3 * S // 2)
    assert ts == [S // 2, S, 3 * S // 2] and vs == [150.0, 200.0, 300.0]


def test_counter_increase_interpolates_edges() -> None:
    # energy counter in mJ sampled each second
    t = [0, S, 2 * S, 3 * S]
    mj = [10_000, 10_300, 10_700, 11_000]
    # window 0.5 s .. 2.5 s: 10_150 -> 10_850
    assert counter_increase(t, mj, S // 2, 5 * S // 2) == pytest.approx(700.0)
    assert counter_increase(t, mj, 0, 3 * S) == 1000.0
    assert counter_increase(t, mj, S, S) == 0.0


def test_counter_increase_across_wraps() -> None:
    t = [0, S, 2 * S, 3 * S, 4 * S]
    uj = [900, 950, 20, 70, 10]  # wraps at 1000 twice
    # unwrapped: 900, 950, 1020, 1070, 2010; window 0.5 s .. 3.5 s: 925 -> 1540
    assert counter_increase(t, uj, S // 2, 7 * S // 2, wrap_at=1000) == pytest.approx(615.0)
    # without the wrap range the decrease makes the window unknown
    assert counter_increase(t, uj, S // 2, 7 * S // 2) is None


def test_counter_increase_needs_coverage_and_skips_missing_samples() -> None:
    t = [S, 2 * S, 3 * S]
    assert counter_increase(t, [0, 10, 20], 0, 2 * S) is None  # starts before the first sample
    assert counter_increase(t, [0, 10, 20], S, 4 * S) is None  # ends after the last
    assert counter_increase(t, [0, None, 20], S, 3 * S) == 20.0


def test_integrate_power() -> None:
    t = [0, S, 2 * S]
    assert integrate(t, [200.0, 200.0, 200.0], 0, 2 * S) == pytest.approx(400.0)
    ramp = [100.0, 200.0, 300.0]
    assert integrate(t, ramp, 0, 2 * S) == pytest.approx(400.0)
    # 0.5 .. 1.5 s: edges 150 and 250 W, through 200 W at 1 s: (175 + 225) * 0.5
    assert integrate(t, ramp, S // 2, 3 * S // 2) == pytest.approx(200.0)
    assert time_weighted_mean(t, ramp, S // 2, 3 * S // 2) == pytest.approx(200.0)
    assert integrate(t, ramp, 0, 3 * S) is None


def test_energy_from_counter_agrees_with_power_integral_when_consistent() -> None:
    # 250 W for 4 s is 1000 J; a counter in mJ and a constant power reading describe the same thing
    t = [0, S, 2 * S, 3 * S, 4 * S]
    mj = [0, 250_000, 500_000, 750_000, 1_000_000]
    assert counter_increase(t, mj, 0, 4 * S) / 1000 == integrate(t, [250.0] * 5, 0, 4 * S) == 1000.0


def test_held_seconds_step_function() -> None:
    t = [0, S, 2 * S, 3 * S]
    flags = [False, True, True, False]
    assert held_seconds(t, flags, S // 2, 3 * S) == 2.0
    assert held_seconds(t, flags, 3 * S // 2, 5 * S // 2) == 1.0
    assert held_seconds(t, [None, None, None, None], 0, 3 * S) == 0.0
    # past the samples the state is not known: not "unthrottled" before the first, nor the last one's
    # held to the window's end (one sample at 1.5 s in [1 s, 2 s] read 0.5 s where energy was unknown)
    assert held_seconds([0, S], [False, True], 0, 3 * S) is None
    assert held_seconds(t, flags, S // 2, 7 * S // 2) is None
    assert held_seconds([3 * S // 2], [True], S, 2 * S) is None


def test_gauge_extremes_of_a_window_between_two_samples_are_its_interpolated_edges() -> None:
    """A 60 ms window between samples 100 ms apart had a mean power but no max (no sample inside)."""
    from harness.telemetry.window import edge_values

    t = [0, S // 10]
    assert edge_values(t, [100.0, 200.0], S // 50, S // 50 + 6 * S // 100) == [120.0, 180.0]
    assert edge_values(t, [100.0, None], S // 50, S // 20) == []  # not covered: nothing to take


def test_window_values_and_j_per_token() -> None:
    t = [0, S, 2 * S]
    assert window_values(t, [1, None, 3], 0, 2 * S) == [1.0, 3.0]
    assert window_values(t, [1, 2, 3], S, S) == [2.0]
    assert j_per_token(500.0, 250) == 2.0
    assert j_per_token(500.0, 0) is None
    assert j_per_token(None, 10) is None
    assert j_per_token(float("nan"), 10) is None


def test_energy_columns_sum_gpu_and_rapl() -> None:
    # a CPU-offload run on a GPU machine: the CPU package did most of the work, the GPU idled
    assert energy_columns({"gpu_energy_j": 10.0, "cpu_energy_j": 3.0}) == {
        "energy_j": 13.0,
        "energy_scope": "gpu+cpu_package",
    }
    assert energy_columns({"gpu_energy_j": 10.0, "cpu_energy_j": None}) == {
        "energy_j": 10.0,
        "energy_scope": "gpu",
    }
    assert energy_columns({"gpu_energy_j": None, "cpu_energy_j": 3.0}) == {
        "energy_j": 3.0,
        "energy_scope": "cpu_package",
    }
    assert energy_columns({"engine_cpu_pct_mean": 50.0}) == {}
    # GPUs sampled (vLLM TP=8) but one GPU's energy unknown: not the CPU's 120 J passed off as the whole
    lost = {"gpu_count": 8, "gpu_energy_j": None, "cpu_energy_j": 120.0}
    assert energy_columns(lost) == {"energy_j": None, "energy_scope": "incomplete"}
    # the window's columns skipped (an NVML call held the sampler's lock): the same
    assert energy_columns({"gpu_window_skipped": True, "cpu_energy_j": 120.0})["energy_j"] is None


def test_energy_of_a_multi_node_engine_is_not_the_head_nodes_alone() -> None:
    """TP 8 x PP 2 over two nodes: NVML here sees the head node's 8 GPUs, whose 5000 J are about half
    the engine's energy; passed off as the whole, J/token came out about half the real value."""
    head = {"gpu_count": 8, "gpu_energy_j": 5000.0, "gpu_engine_count": 16, "cpu_energy_j": 300.0}
    assert energy_columns(head) == {"energy_j": None, "energy_scope": "incomplete"}
    from harness.flags import flags

    row = {"ok": 4, "output_tokens": 100, **head, **energy_columns(head)}
    said = [m for m in flags(row) if "J/token" in m]
    assert said == [
        "GPU energy measured on 8 of the engine's 16 GPUs only (the others are on other machines): no J/token"
    ]


def test_energy_of_an_engine_with_a_gpu_nvml_could_not_open_is_not_the_others_alone() -> None:
    """vLLM TP=2 whose second GPU NVML could not open (`skipped_gpus`): the first GPU's 800 J passed as
    the engine's energy (scope `gpu`), and J/token came out about half the real value."""
    one_of_two = {"gpu_count": 1, "gpu_energy_j": 800.0, "gpu_unread_count": 1}
    assert energy_columns(one_of_two) == {"energy_j": None, "energy_scope": "incomplete"}
    from harness.flags import flags

    row = {"ok": 4, "output_tokens": 100, **one_of_two, **energy_columns(one_of_two)}
    said = [m for m in flags(row) if "J/token" in m]
    assert said == [
        "GPU energy measured on 1 of the engine's 2 GPUs only (NVML could not open the others: the "
        "manifest's skipped_gpus): no J/token"
    ]


def test_energy_per_token_counts_every_token_the_energy_went_to() -> None:
    from harness.flags import flags
    from harness.records import RequestRecord
    from harness.token_counts import energy_per_token, tokens_per_chunk, uncounted_tokens_in

    row = {"energy_j": 100.0, "output_tokens": 50, "server_output_tokens": 80, "ok": 5}
    assert energy_per_token(row) == {"energy_j_per_output_token": 2.0, "energy_tokens_source": "client"}

    def rec(
        chunks: list[int], tokens: int | None, warmup: bool = True, error: str | None = None
    ) -> RequestRecord:
        r = RequestRecord(request_id=0, point_id="p", scheduled_ns=0, warmup=warmup, output_tokens=tokens)
        r.chunk_ns, r.error_kind, r.done_ns = chunks, error, chunks[-1]
        return r

    # window [100, 200]: a warmup request streaming into it (3 of its chunks), a cooldown request cut
    # at the end (2 chunks in, no usage: a token each), one that streamed 2 tokens a chunk, a measured
    # request (counted by the point itself) and a warmup request wholly before the window
    records = [
        rec([80, 90, 110, 150, 190], 5),
        rec([180, 195, 205], None),
        rec([120, 130], 4),
        rec([120, 130], 2, warmup=False),
        rec([10, 20], 2),
    ]
    assert uncounted_tokens_in(records, 100, 200) == 3 + 2 + 4
    # a measured request that failed after 3 chunks in the window, without usage: not in the point's
    # output_tokens, its chunks count at the point's own tokens per chunk (here 2)
    failed = rec([150, 160, 170], None, warmup=False, error="disconnected")
    assert not failed.ok
    # the ratio of the requests that reported both: 2 + 4 tokens over 3 chunks (a stream without usage
    # adds no tokens and so none of its chunks either)
    assert tokens_per_chunk([rec([1, 2], 2), rec([1], 4), rec([1, 2, 3], None)]) == 2.0
    assert tokens_per_chunk([rec([1, 2, 3], None)]) == 1.0
    counted = rec([1, 2, 3, 4], 4)
    counted.output_tokens_source = "chunks"  # one per chunk by construction: no evidence of the ratio
    assert tokens_per_chunk([rec([1, 2], 4), counted]) == 2.0
    assert uncounted_tokens_in([*records, failed], 100, 200, 2.0) == 3 + 2 * 2 + 4 + 3 * 2
    # the engine's counter (80 here) is not used: scraped off the window's edges, and llama.cpp's
    # counts a request only when it ends
    shared = energy_per_token(row, 30.0)
    assert shared == {"energy_j_per_output_token": 1.25, "energy_tokens_source": "client+unmeasured"}
    assert not any("J/token" in m for m in flags({**row, **shared}))
    # nothing measured succeeded: no J/token, whatever failed or unmeasured streams generated
    assert energy_per_token({**row, "ok": 0, "output_tokens": 0}, 30.0) == {
        "energy_j_per_output_token": None,
        "energy_tokens_source": None,
    }
    assert any("GPU energy unknown" in m for m in flags({**row, "energy_scope": "incomplete"}))
    # a window shorter than a second: the counter's 20-100 ms updates are a large share of it
    assert any(
        "energy over a 0.35 s window" in m for m in flags({**row, "window_s": 0.35, "gpu_energy_j": 90.0})
    )
    assert not any(
        "energy over a" in m for m in flags({**row, "window_s": 0.35, "cpu_energy_j": 9.0})
    )  # RAPL: ~1 ms
    assert not any("energy over a" in m for m in flags({**row, "window_s": 4.0}))


def test_unwrap_reading_of_a_32_bit_counter() -> None:
    st, v = unwrap_reading(None, 4_000_000_000, 32)
    assert v == 4_000_000_000
    st, v = unwrap_reading(st, 4_294_000_000, 32)
    assert v == 4_294_000_000
    st, v = unwrap_reading(st, 1_000, 32)  # wrapped past 2**32
    assert st == (1_000, 1) and v == 2**32 + 1_000
    st, v = unwrap_reading(st, 5_000, 32)
    assert v == 2**32 + 5_000
    st, v = unwrap_reading(st, 10, 32)  # a second wrap
    assert v == 2 * 2**32 + 10


def test_checkpoints_take_at_most_a_twentieth_of_the_time() -> None:
    from harness.telemetry.base import checkpoint_due

    assert checkpoint_due(5.0, None, 0.0)  # the first one
    assert checkpoint_due(100.0, 99.9, 0.002)  # small files: after every point (20 x 2 ms = 40 ms)
    assert not checkpoint_due(100.0, 99.99, 0.002)
    assert not checkpoint_due(200.0, 100.0, 6.0)  # a 6 s rewrite: not again within 120 s of its end
    assert checkpoint_due(220.0, 100.0, 6.0)


def test_pcie_counter_wrap_period_by_link() -> None:
    from harness.telemetry.window import counter_wrap_s

    # 2**32 B / (16 lanes x 3.938 GB/s) at Gen5, / (16 x 1.969 GB/s) at Gen4, / (16 x 0.985 GB/s) at Gen3
    assert counter_wrap_s(32, 5, 16) == pytest.approx(4294967296 / 63.008e9)  # 0.068 s
    assert counter_wrap_s(32, 4, 16) == pytest.approx(4294967296 / 31.504e9)  # 0.136 s
    assert counter_wrap_s(32, 3, 8) == pytest.approx(4294967296 / 7.88e9)  # 0.545 s
    assert counter_wrap_s(32, None, 16) is None and counter_wrap_s(32, 5, 0) is None
    assert counter_wrap_s(32, 9, 16) is None  # a generation this table does not know


def test_pcie_wrap_note_only_where_a_wrap_can_go_unseen() -> None:
    from harness.telemetry.window import counter_wrap_s, pcie_wrap_note

    gen5, gen4 = counter_wrap_s(32, 5, 16), counter_wrap_s(32, 4, 16)
    assert pcie_wrap_note(0.1, {0: gen5, 1: gen4, 2: None}) == (
        "PCIe byte counters of GPU 0 wrap every 68 ms at the link's full rate, and are read every 100 ms: "
        "gpu_pcie_*_bytes_s are lower bounds where the link ran above 43 GB/s (telemetry.interval_s under "
        "0.055 avoids it)"
    )
    assert pcie_wrap_note(0.05, {0: gen5, 1: gen4}) is None  # read faster than either wraps
    assert pcie_wrap_note(0.2, {1: gen4, 0: gen5}).startswith(
        "PCIe byte counters of GPU 0, 1 wrap every 68 ms"
    )
    assert pcie_wrap_note(0.1, {}) is None
