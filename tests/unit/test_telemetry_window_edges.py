"""Edges of the telemetry window math: boundaries, zero-length windows, repeated readings and time
stamps, with literal series and the arithmetic done by hand.

Each test pins a result that a one-token change in harness/telemetry/window.py or trace.py (< for <=,
and for or, an index off by one) would alter; the comments give the arithmetic.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from harness.telemetry.trace import (
    GpuSeries,
    TraceError,
    _header_problem,
    gpu_window_columns,
    read_trace,
    write_trace,
)
from harness.telemetry.window import (
    clip_series,
    counter_delta,
    counter_increase,
    counter_wrap_s,
    edge_values,
    held_seconds,
    integrate,
    interp_at,
    j_per_token,
    pcie_wrap_note,
    time_weighted_mean,
)

S = 1_000_000_000
MS = S // 1000


def series(index: int, t: list[int], **cols: list[Any]) -> GpuSeries:
    """A GpuSeries of literal samples: sample i has t[i] and, per keyword, that column's i-th value."""
    s = GpuSeries(index)
    for i, ti in enumerate(t):
        s.append(ti, {k: v[i] for k, v in cols.items()})
    return s


# ---------------------------------------------------------------- interpolation at sample times
def test_window_edge_on_a_sample_takes_its_reading_exactly() -> None:
    """An edge that falls on a sample is that sample's reading, not one rebuilt from its neighbour:
    0.3 + (250.7 − 0.3) · 100 ms / 100 ms rounds to 250.69999999999996 in floats."""
    t = [0, 100 * MS]
    assert interp_at(t, [0.3, 250.7], 100 * MS) == 250.7
    assert interp_at(t, [0.3, 250.7], 0) == 0.3
    # the max power of a window ending on the second sample is that sample's 250.7 W
    assert edge_values(t, [0.3, 250.7], 0, 100 * MS) == [0.3, 250.7]
    assert max(edge_values(t, [0.3, 250.7], 50 * MS, 100 * MS)) == 250.7


def test_interp_at_a_sample_time_ignores_a_non_finite_neighbour() -> None:
    """At a sample's own time interp_at returns that sample: 250 + (NaN − 250) · 0 would be NaN, and
    inf + (250 − inf) · 1 NaN too (the window functions drop such values first; interp_at is public)."""
    t = [0, S]
    assert interp_at(t, [250.0, float("nan")], 0) == 250.0
    assert interp_at(t, [float("inf"), 250.0], S) == 250.0
    assert interp_at(t, [float("nan"), 250.0], S) == 250.0


def test_interp_at_a_time_stamp_two_samples_share_reads_the_later_one() -> None:
    """GpuSeries keeps two readings with one time stamp in arrival order; the value there is the later
    one (the step the second reading made), and past it the line runs from that one."""
    t = [0, S, S, 2 * S]
    v = [0.0, 10.0, 20.0, 30.0]
    assert interp_at(t, v, S) == 20.0
    assert interp_at(t, v, S // 2) == 5.0  # 0 + (10 − 0) · 0.5
    assert interp_at(t, v, 3 * S // 2) == 25.0  # 20 + (30 − 20) · 0.5


# ---------------------------------------------------------------- zero-length windows
def test_zero_length_window_has_one_edge_point() -> None:
    """t0 == t1: clip_series gives the edge once (the series at 0.5 s: 100 + (200 − 100) · 0.5 = 150)."""
    assert clip_series([0, S], [100.0, 200.0], S // 2, S // 2) == ([S // 2], [150.0])
    assert edge_values([0, S], [100.0, 200.0], S // 2, S // 2) == [150.0]


def test_zero_length_window_has_no_increase_or_area_even_outside_the_samples() -> None:
    """For t1 ≤ t0 counter_increase and integrate are 0 whether or not the samples cover that time;
    the time-weighted mean of no time is None, not a division by zero."""
    t = [0, S]
    assert counter_increase(t, [0, 100], 5 * S, 5 * S) == 0.0
    assert counter_increase(t, [0, 100], S // 2, S // 2) == 0.0
    assert integrate(t, [100.0, 200.0], 5 * S, 5 * S) == 0.0
    assert time_weighted_mean(t, [100.0, 200.0], S // 2, S // 2) is None


def test_gpu_window_columns_of_a_zero_length_window() -> None:
    """A window with t0 == t1 = 0.5 s: no time, so no PCIe rate (0 bytes / 0 s) and no mean power; one
    sample (the interpolated edge), whose power 100 + (200 − 100) · 0.5 = 150 W is the max."""
    g = series(
        0,
        [0, S],
        energy_mj=[0, 1000],
        power_w=[100.0, 200.0],
        pcie_tx_bytes=[0, 1000],
        pcie_rx_bytes=[0, 0],
    )
    cols = gpu_window_columns([g], S // 2, S // 2)
    assert cols["gpu_energy_j"] == 0.0 and cols["gpu_energy_source"] == "counter"
    assert cols["gpu_power_w_mean"] is None
    assert cols["gpu_power_w_max"] == 150.0
    assert cols["gpu_pcie_tx_bytes_s"] is None and cols["gpu_pcie_rx_bytes_s"] is None
    assert cols["gpu_samples"] == 1


def test_zero_length_window_of_a_gpu_without_an_energy_counter() -> None:
    """A GPU whose energy counter never read (pre-Volta) has no increase to report even over no time:
    its 0 J comes from the power integral, and a GPU with neither reading has no energy at all."""
    no_counter = series(0, [0, S], energy_mj=[None, None], power_w=[100.0, 200.0])
    assert counter_increase(no_counter.t_ns, no_counter.cols["energy_mj"], S // 2, S // 2) is None
    cols = gpu_window_columns([no_counter], S // 2, S // 2)
    assert cols["gpu_energy_j"] == 0.0 and cols["gpu_energy_source"] == "power_integral"
    blind = series(0, [0, S], energy_mj=[None, None], power_w=[None, None])
    assert integrate(blind.t_ns, blind.cols["power_w"], S // 2, S // 2) is None
    cols = gpu_window_columns([blind], S // 2, S // 2)
    assert cols["gpu_energy_j"] is None and cols["gpu_energy_source"] == "none"


# ---------------------------------------------------------------- counters
def test_counter_delta_needs_a_positive_wrap_range_however_small() -> None:
    """A decrease with wrap_at 0 is a reset (None); any positive range is a wrap: 0.25 + 1.0 − 0.75."""
    assert counter_delta(10, 5, wrap_at=0) is None
    assert counter_delta(10, 5, wrap_at=-1) is None
    assert counter_delta(0.75, 0.25, wrap_at=1.0) == 0.5


def test_wrapping_counter_that_reads_the_same_twice_did_not_wrap() -> None:
    """RAPL's counter read twice between updates repeats its value: no wrap, the increase is
    (500 − 500) + (700 − 500) = 200, not 200 + one wrap of 1000."""
    t = [0, S, 2 * S]
    assert counter_increase(t, [500, 500, 700], 0, 2 * S, wrap_at=1000) == 200.0
    # a real wrap right after the repeat: 500, 500, 1000 + 100 → 600
    assert counter_increase(t, [500, 500, 100], 0, 2 * S, wrap_at=1000) == 600.0


# ---------------------------------------------------------------- PCIe
def test_pcie_counter_wrap_period_needs_an_integer_width_and_counts_x1_links() -> None:
    """No width in the inventory (None) or a non-integer one: unknown. An x1 Gen3 link is a link:
    2**32 B / (1 · 0.985e9 B/s) = 4.36 s."""
    assert counter_wrap_s(32, 5, None) is None
    assert counter_wrap_s(32, 5, 16.0) is None
    assert counter_wrap_s(32, 3, 1) == pytest.approx(4294967296 / 0.985e9)
    assert counter_wrap_s(32, 4, 2) == pytest.approx(4294967296 / (2 * 1.969e9))  # 1.09 s


def test_pcie_wrap_note_when_the_gap_exactly_reaches_the_wrap_period() -> None:
    """Read every 0.5 s, the gap with the 1.25 margin is 0.625 s: a counter that wraps in 0.625 s can
    wrap unseen (2**32 B / 0.5 s = 8.6 GB/s; 0.625 / 1.25 = 0.500 s avoids it)."""
    assert pcie_wrap_note(0.5, {0: 0.625}) == (
        "PCIe byte counters of GPU 0 wrap every 625 ms at the link's full rate, and are read every 500 ms: "
        "gpu_pcie_*_bytes_s are lower bounds where the link ran above 9 GB/s (telemetry.interval_s under "
        "0.500 avoids it)"
    )
    assert pcie_wrap_note(0.5, {0: 0.626}) is None  # 0.625 s < 0.626 s


def test_pcie_rate_from_byte_counters_over_windows_of_one_second_and_less() -> None:
    """Byte counters give a rate over any window with time in it: 5000 B over 1 s, and 2500 B over the
    first 0.5 s (0 + 5000 · 0.5 interpolated) is also 5000 B/s; no once-a-second readings needed."""
    g = series(0, [0, S], power_w=[100.0, 100.0], pcie_tx_bytes=[0, 5000], pcie_rx_bytes=[0, 1000])
    cols = gpu_window_columns([g], 0, S)
    assert cols["gpu_pcie_tx_bytes_s"] == pytest.approx(5000.0)
    assert cols["gpu_pcie_rx_bytes_s"] == pytest.approx(1000.0)
    assert gpu_window_columns([g], 0, S // 2)["gpu_pcie_tx_bytes_s"] == pytest.approx(5000.0)


# ---------------------------------------------------------------- throttling
def test_throttle_time_unknown_when_the_samples_start_after_the_window() -> None:
    """Before the first sample the flag's state is not known: None, not the 1 s from 1 s to 2 s."""
    assert held_seconds([S, 2 * S], [True, True], 0, 2 * S) is None
    assert held_seconds([], [], 0, S) is None
    assert held_seconds([S, 2 * S], [True, True], S, 2 * S) == 1.0  # covered: 1 s .. 2 s


def test_throttle_reason_that_ended_at_the_window_start_is_not_listed() -> None:
    """Power-capped at 0 s, cleared by the reading at 1 s: the window [1 s, 2 s] starts unthrottled, so
    neither time (the cap held 0 .. 1 s, outside) nor a reason; the reading at t0 is the state there."""
    g = series(0, [0, S, 2 * S], power_w=[100.0] * 3, clocks_event_reasons=[0x4, 0x0, 0x0])
    cols = gpu_window_columns([g], S, 2 * S)
    assert cols["gpu_throttle_s"] == 0.0
    assert cols["gpu_throttle_reasons"] == ""
    # one step earlier the cap is inside: held 0.5 s .. 1 s = 0.5 s
    cols = gpu_window_columns([g], S // 2, 2 * S)
    assert cols["gpu_throttle_s"] == pytest.approx(0.5)
    assert cols["gpu_throttle_reasons"] == "sw_power_cap"


def test_throttle_reasons_of_two_readings_at_the_window_start_time() -> None:
    """Two readings at t0 = 1 s (GpuSeries keeps both): the power cap the first one saw is a reason seen
    in the window, though the second, unthrottled, is the state that held (throttle time 0)."""
    g = series(0, [0, S, S, 2 * S], power_w=[100.0] * 4, clocks_event_reasons=[0x0, 0x4, 0x0, 0x0])
    cols = gpu_window_columns([g], S, 2 * S)
    assert cols["gpu_throttle_reasons"] == "sw_power_cap"
    assert cols["gpu_throttle_s"] == 0.0


# ---------------------------------------------------------------- J per token
def test_j_per_token_of_a_single_token() -> None:
    """One output token is a count like any other: 5 J / 1 token = 5 J/token; none or fewer is None."""
    assert j_per_token(5.0, 1) == 5.0
    assert j_per_token(3.0, 0.5) == 6.0  # a fractional (estimated) count: 3 / 0.5
    assert j_per_token(5.0, -2) is None


# ---------------------------------------------------------------- trace files
def test_trace_without_samples_keeps_its_windows_as_given(tmp_path: Path) -> None:
    """No GPU sampled yet: there is no first sample to count from, so the windows are written unshifted."""
    p = write_trace(tmp_path / "t.jsonl.gz", {}, [GpuSeries(0)], {"w": (5, 9)})
    head, back = read_trace(p)
    assert head["windows"] == {"w": [5, 9]}
    assert back == []


def test_two_samples_of_one_gpu_at_the_same_time_read_back(tmp_path: Path) -> None:
    """A PCIe-only reading stamped the same nanosecond as a sample is not 'backwards': both read back,
    in order, at trace time 0."""
    g = GpuSeries(0)
    g.append(7 * S, {"power_w": 100.0})
    g.append(7 * S, {"pcie_tx_kb_s": 10})
    g.append(8 * S, {"power_w": 120.0})
    _, back = read_trace(write_trace(tmp_path / "t.jsonl.gz", {}, [g], {}))
    assert back[0].t_ns == [0, 0, S]
    assert back[0].cols["power_w"] == [100.0, None, 120.0]
    assert back[0].cols["pcie_tx_kb_s"] == [None, 10, None]


def test_read_trace_rejects_text_and_boolean_readings(tmp_path: Path) -> None:
    """A field is a number or null: a string or a JSON true is named with its line."""
    text = series(0, [0], power_w=["n/a"])
    p = write_trace(tmp_path / "text.jsonl.gz", {}, [text], {})
    with pytest.raises(TraceError, match=r"line 2: power_w: 'n/a' is not a number"):
        read_trace(p)
    flag = series(0, [0], temp_c=[True])
    p = write_trace(tmp_path / "flag.jsonl.gz", {}, [flag], {})
    with pytest.raises(TraceError, match=r"line 2: temp_c: True is not a number"):
        read_trace(p)


def test_trace_header_windows_must_be_pairs_of_integers() -> None:
    """Each window is [t0_ns, t1_ns]: two integers, in a list."""
    assert _header_problem({"windows": {"w": [1, 2]}}) is None
    assert _header_problem({"windows": {"w": [0.5, 2.0]}}) == "windows: w: [0.5, 2.0] is not [t0_ns, t1_ns]"
    assert _header_problem({"windows": {"w": [1, 2, 3]}}) == "windows: w: [1, 2, 3] is not [t0_ns, t1_ns]"
    assert _header_problem({"windows": {"w": (1, 2)}}) == "windows: w: (1, 2) is not [t0_ns, t1_ns]"


def test_read_trace_rejects_an_inventory_whose_gpus_is_not_a_list(tmp_path: Path) -> None:
    """The inventory's `gpus` is read back as a list: a string there is a bad header, not a crash later."""
    p = write_trace(tmp_path / "t.jsonl.gz", {"inventory": {"gpus": "H100"}}, [], {})
    with pytest.raises(TraceError, match=r"line 1: inventory: expected a mapping with a list of gpus"):
        read_trace(p)


def test_read_trace_compares_each_sample_with_the_previous_one_of_its_gpu(tmp_path: Path) -> None:
    """t_ns 5, 9, 7 for one GPU: 7 is after the first sample yet before the previous one, so backwards.
    (write_trace sorts its rows and cannot write this; the file is built line by line.)"""
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"format": "llm-harness/nvml-trace", "version": 1}) + "\n")
        f.write('{"gpu": 0, "t_ns": 5}\n{"gpu": 0, "t_ns": 9}\n{"gpu": 0, "t_ns": 7}\n')
    with pytest.raises(TraceError, match=r"line 4: t_ns goes backwards for gpu 0"):
        read_trace(bad)


def test_a_step_back_within_float_rounding_is_no_reset_and_no_wrap() -> None:
    """Host CPU seconds are sums of floats: 4368.860000000002 then 4368.860000000001 (a committed CPU
    trace) had made the window's CPU % empty, as if the counter had been reset."""
    assert counter_delta(4368.860000000002, 4368.860000000001) == 0.0
    assert counter_delta(4368.86, 4368.85) is None  # 10 ms back is a real decrease
    t = [0, 100, 200, 300]
    busy = [4368.85, 4368.860000000002, 4368.860000000001, 4368.87]
    assert counter_increase(t, busy, 0, 300) == pytest.approx(0.02)
    # nor a wrap: a counter that wraps at 1000 does not gain 1000 from rounding
    assert counter_increase(t, busy, 0, 300, wrap_at=1000.0) == pytest.approx(0.02)
    assert counter_increase(t, [990.0, 999.0, 4.0, 6.0], 0, 300, wrap_at=1000.0) == pytest.approx(16.0)


def test_float_noise_is_relative_to_the_counter_and_no_wider_than_rounding() -> None:
    """A µJ counter near 1e11 rounds in steps of 1.5e-5: a step back of one is no decrease and no wrap.
    A step back of 1 ms on 4368 s of CPU time is no rounding: a real decrease."""
    import math

    big = 1e11
    assert counter_delta(math.nextafter(big, math.inf), big) == 0.0
    t = [0, 100, 200, 300]
    vs = [big, math.nextafter(big, math.inf), big, big + 5.0]
    assert counter_increase(t, vs, 0, 300, wrap_at=2.6e11) == pytest.approx(5.0, abs=1e-3)
    assert counter_delta(4368.86, 4368.859) is None
