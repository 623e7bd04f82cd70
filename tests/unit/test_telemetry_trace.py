"""GPU window columns, the trace file format and the replay sampler, on literal series.

These are unit tests of the arithmetic and the file format with hand-computed values; they are not
measurements. Replays of traces recorded on a real GPU live in tests/integration and tests/gpu.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from harness.telemetry.replay import ReplayNvmlSampler, replay_windows
from harness.telemetry.trace import (
    GpuSeries,
    TraceError,
    decode_reasons,
    gpu_window_columns,
    read_trace,
    write_trace,
)

S = 1_000_000_000


def series(index: int, t: list[int], **cols: list) -> GpuSeries:
    s = GpuSeries(index)
    for i, ti in enumerate(t):
        s.append(ti, {k: v[i] for k, v in cols.items()})
    return s


def two_gpus(origin: int = 0) -> list[GpuSeries]:
    t = [origin + i * S for i in range(5)]
    g0 = series(
        0,
        t,
        energy_mj=[0, 100_000, 200_000, 300_000, 400_000],  # 100 J per second
        power_w=[100.0, 100.0, 100.0, 100.0, 100.0],
        util_gpu_pct=[0, 50, 100, 100, 50],
        mem_used_bytes=[10, 20, 30, 20, 10],
        sm_clock_mhz=[1000, 1500, 1500, 1200, 1500],
        temp_c=[40, 41, 45, 44, 43],
        clocks_event_reasons=[0x1, 0x0, 0x4, 0x4, 0x0],  # idle, none, sw power cap x2, none
        pcie_tx_bytes=[0, 1000, 2000, 3000, 4000],
        pcie_rx_bytes=[0, 0, 0, 0, 0],
    )
    g1 = series(  # no energy counter: falls back to integrating power
        1,
        t,
        power_w=[50.0, 50.0, 150.0, 150.0, 50.0],
        util_gpu_pct=[0, 0, 0, 0, 0],
        mem_used_bytes=[5, 5, 5, 5, 5],
        sm_clock_mhz=[900, 900, 900, 900, 900],
        temp_c=[30, 30, 30, 30, 30],
        clocks_event_reasons=[0x0, 0x40, 0x40, 0x0, 0x0],  # hw thermal slowdown 1 s .. 3 s
        pcie_tx_bytes=[0, 0, 0, 0, 0],
        pcie_rx_bytes=[0, 500, 1000, 1500, 2000],
    )
    return [g0, g1]


def test_gpu_window_columns_by_hand() -> None:
    cols = gpu_window_columns(two_gpus(), S, 3 * S)
    # gpu0: counter 300 J at 3 s − 100 J at 1 s = 200 J; gpu1: ∫ power = (50+150)/2 + (150+150)/2 = 250 J
    assert cols["gpu_energy_j"] == pytest.approx(450.0)
    assert cols["gpu_energy_source"] == "mixed"
    # the cross-check integrates power on both: gpu0 100 W x 2 s = 200 J, gpu1 250 J
    assert cols["gpu_power_integral_j"] == pytest.approx(450.0)
    # mean power: 100 W + 250 J / 2 s
    assert cols["gpu_power_w_mean"] == pytest.approx(225.0)
    assert cols["gpu_power_w_max"] == 150.0
    # gpu0 util time-weighted over 1..3 s: (75 + 100) / 2 = 87.5; gpu1 0 → mean 43.75
    assert cols["gpu_util_pct_mean"] == pytest.approx(43.75)
    assert cols["gpu_sm_clock_mhz_min"] == 900
    assert cols["gpu_mem_used_bytes_max"] == 30
    assert cols["gpu_temp_c_max"] == 45
    # gpu0 power cap from 2 s to 3 s (held to the window end) = 1 s; gpu1 thermal 1 s .. 3 s = 2 s
    assert cols["gpu_throttle_s"] == pytest.approx(2.0)
    assert cols["gpu_throttle_reasons"] == "hw_thermal_slowdown,sw_power_cap"
    assert cols["gpu_pcie_tx_bytes_s"] == pytest.approx(1000.0)
    assert cols["gpu_pcie_rx_bytes_s"] == pytest.approx(500.0)
    assert cols["gpu_count"] == 2 and cols["gpu_samples"] == 6


def test_window_outside_the_samples_has_no_energy() -> None:
    cols = gpu_window_columns(two_gpus(), 3 * S, 9 * S)
    assert cols["gpu_energy_j"] is None and cols["gpu_energy_source"] == "none"


def test_counter_reset_falls_back_to_power_integral() -> None:
    t = [0, S, 2 * S]
    g = series(0, t, energy_mj=[5_000_000, 10, 110_010], power_w=[100.0, 100.0, 100.0])
    cols = gpu_window_columns([g], 0, 2 * S)
    assert cols["gpu_energy_source"] == "power_integral"
    assert cols["gpu_energy_j"] == pytest.approx(200.0)
    assert cols["gpu_power_integral_j"] == pytest.approx(200.0)


def test_a_counter_that_did_not_move_under_power_falls_back_to_power_integral() -> None:
    """A 50 ms window between two updates of the energy counter read 0 J, and so 0 J/token."""
    t = [0, 10_000_000, 60_000_000, 110_000_000]
    g = series(0, t, energy_mj=[1_000, 1_000, 1_000, 1_000], power_w=[300.0, 300.0, 300.0, 300.0])
    cols = gpu_window_columns([g], 10_000_000, 60_000_000)
    # 300 W x 0.05 s = 15 J
    assert cols["gpu_energy_source"] == "power_integral"
    assert cols["gpu_energy_j"] == pytest.approx(15.0)
    # no power drawn, no counter movement: 0 J from the counter is right
    idle = series(0, t, energy_mj=[1_000, 1_000, 1_000, 1_000], power_w=[0.0, 0.0, 0.0, 0.0])
    cols = gpu_window_columns([idle], 10_000_000, 60_000_000)
    assert cols["gpu_energy_source"] == "counter" and cols["gpu_energy_j"] == 0.0


def test_power_integral_column_beside_a_counter_that_disagrees() -> None:
    # counter: 150 J over 0..2 s; power readings say 100 W -> the cross-check shows 200 J
    t = [0, S, 2 * S]
    g = series(0, t, energy_mj=[1_000_000, 1_075_000, 1_150_000], power_w=[100.0, 100.0, 100.0])
    cols = gpu_window_columns([g], 0, 2 * S)
    assert cols["gpu_energy_source"] == "counter"
    assert cols["gpu_energy_j"] == pytest.approx(150.0)
    assert cols["gpu_power_integral_j"] == pytest.approx(200.0)


def test_decode_reasons() -> None:
    assert decode_reasons(0) == []
    assert decode_reasons(0x1 | 0x4 | 0x80) == ["gpu_idle", "sw_power_cap", "hw_power_brake_slowdown"]
    assert decode_reasons(0x10000) == ["0x10000"]
    assert decode_reasons(0x200 | 0x400) == ["board_limit", "reliability"]


def test_older_throttle_bits_count_and_unknown_ones_are_named() -> None:
    # the pre-rename call (A100, older drivers) can also say board limit (0x200) and reliability (0x400)
    t = [i * S for i in range(4)]
    g = series(0, t, power_w=[1.0] * 4, clocks_event_reasons=[0x0, 0x4 | 0x200, 0x400, 0x800])
    cols = gpu_window_columns([g], 0, 3 * S)
    assert cols["gpu_throttle_s"] == pytest.approx(2.0)  # 1 s .. 3 s; 0x800 is not a known throttle
    assert cols["gpu_throttle_reasons"] == "0x800,board_limit,reliability,sw_power_cap"


def test_pcie_throughput_readings_once_a_second_are_samples_of_their_own() -> None:
    # drivers before R555: no byte counters; the sampler thread adds a PCIe-only reading once a second,
    # which may come in after a later window-edge sample
    g = GpuSeries(0)
    for i in range(4):
        g.append(i * S, {"power_w": 100.0, "clocks_event_reasons": 0x4, "util_gpu_pct": 50})
    g.append(int(2.5 * S), {"pcie_tx_kb_s": 3000, "pcie_rx_kb_s": 1000})
    g.append(int(0.5 * S), {"pcie_tx_kb_s": 1000, "pcie_rx_kb_s": 1000})  # late: goes in in order
    assert g.t_ns == sorted(g.t_ns)
    assert g.cols["pcie_tx_kb_s"][1] == 1000 and g.cols["power_w"][1] is None
    cols = gpu_window_columns([g], 0, 3 * S)
    assert cols["gpu_pcie_tx_bytes_s"] == pytest.approx(2_000_000.0)  # mean of 1000 and 3000 KB/s
    assert cols["gpu_pcie_rx_bytes_s"] == pytest.approx(1_000_000.0)
    # the PCIe-only rows leave the rest alone: throttled all along, power and util unchanged
    assert cols["gpu_throttle_s"] == pytest.approx(3.0)
    assert cols["gpu_power_w_mean"] == pytest.approx(100.0)
    assert cols["gpu_util_pct_mean"] == pytest.approx(50.0)
    assert cols["gpu_samples"] == 4
    # a window between two readings has no PCIe rate rather than a made-up one
    assert gpu_window_columns([g], int(0.6 * S), int(1.4 * S))["gpu_pcie_tx_bytes_s"] is None
    # the live display looks past a PCIe-only last row
    g.append(4 * S, {"pcie_tx_kb_s": 10, "pcie_rx_kb_s": 10})
    assert g.last()["power_w"] == 100.0 and g.last()["pcie_tx_kb_s"] == 10


def test_trace_round_trip(tmp_path: Path) -> None:
    gpus = two_gpus(origin=123 * S)
    p = write_trace(tmp_path / "t.jsonl.gz", {"interval_s": 1.0}, gpus, {"w": (124 * S, 126 * S)})
    head, back = read_trace(p)
    assert head["format"] == "llm-harness/nvml-trace" and head["version"] == 1
    assert head["windows"] == {"w": [S, 3 * S]}
    assert [s.index for s in back] == [0, 1]
    assert back[0].t_ns == [i * S for i in range(5)]
    assert back[0].cols["energy_mj"] == gpus[0].cols["energy_mj"]
    assert back[1].cols["energy_mj"] == [None] * 5
    # the stored window recomputes to the same columns as on the original series
    assert replay_windows(p)["w"] == gpu_window_columns(gpus, 124 * S, 126 * S)


def test_a_rewrite_cut_short_leaves_the_previous_trace_whole(tmp_path: Path) -> None:
    """Checkpoints rewrite the trace during the run: one that fails part-way keeps the last good file."""
    gpus = two_gpus()
    p = write_trace(tmp_path / "t.jsonl.gz", {"interval_s": 1.0}, gpus, {})
    later = [g.copy() for g in gpus]
    later[0].append(5 * S, {"power_w": object()})  # not JSON: the write fails at the last sample
    with pytest.raises(TypeError):
        write_trace(p, {"interval_s": 1.0}, later, {})
    assert [len(s) for s in read_trace(p)[1]] == [5, 5]
    assert [x.name for x in tmp_path.iterdir()] == ["t.jsonl.gz"]
    assert [len(g) for g in gpus] == [5, 5]  # the copy was appended to, not the original


def test_read_trace_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"format": "something-else"}) + "\n")
    with pytest.raises(TraceError, match=r"bad.jsonl.gz: line 1: format"):
        read_trace(bad)
    with gzip.open(bad, "wt") as f:
        f.write(json.dumps({"format": "llm-harness/nvml-trace", "version": 1}) + "\n")
        f.write('{"gpu": 0, "t_ns": 5}\n{"gpu": 0, "t_ns": 4}\n')
    with pytest.raises(TraceError, match=r"line 3: t_ns goes backwards"):
        read_trace(bad)
    (tmp_path / "plain.txt").write_text("not gzip")
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "plain.txt")


def test_replay_sampler_maps_windows_onto_trace_time(tmp_path: Path) -> None:
    p = write_trace(tmp_path / "t.jsonl.gz", {"interval_s": 1.0}, two_gpus(), {})
    r = ReplayNvmlSampler(p, offset_s=1.0)  # live start = trace time 1 s
    r.start()
    t0 = r.origin_ns + S
    r.begin_window("p", t0)
    cols = r.end_window("p", t0 + 2 * S)
    assert cols == gpu_window_columns(two_gpus(), S, 3 * S)
    assert r.manifest()["windows_s"] == {"p": [1.0, 3.0]}
    assert r.duration_s == 4.0
    assert time.perf_counter_ns() > r.origin_ns


def test_telemetry_show_summarizes_each_window(tmp_path: Path) -> None:
    from ..integration.conftest import harness_cli

    # counter +600 J over 3 s; power 100, 100, 300, 300 W: trapezoids 100 + 200 + 300 = 600 J
    g = series(
        0,
        [0, S, 2 * S, 3 * S],
        energy_mj=[0, 100_000, 300_000, 600_000],
        power_w=[100.0, 100.0, 300.0, 300.0],
    )
    trace = write_trace(
        tmp_path / "t.jsonl.gz", {"inventory": {"gpus": [{"name": "GPU A"}]}}, [g], {"all": (0, 3 * S)}
    )
    res = harness_cli("telemetry", "show", str(trace), timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{trace}: 1 GPU(s) (GPU A), 4 samples over 3.0 s"
    assert lines[1].startswith(
        "  all: energy 600.0 J (counter), integrated power 600.0 J (+0.0 %); power mean 200.0 W (all GPUs), "
        "max 300.0 W (one GPU)"
    )
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_text("x")
    res = harness_cli("telemetry", "show", str(bad), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "cannot read trace" in res.stderr


def test_telemetry_show_writes_huge_readings_in_exponent_form() -> None:
    """A trace sample of `power_w: 1e308` had been printed as a 309-digit wattage."""
    from harness.cli.tools import _window_line

    line = _window_line({"gpu_power_w_mean": 1e308, "gpu_power_w_max": 250.0, "gpu_mem_used_bytes_max": 2e20})
    assert "power mean 1.000e+308 W (all GPUs), max 250.0 W (one GPU)" in line
    assert "memory max 2.000e+20 B (one GPU)" in line
    assert "util - %" in line


def test_a_window_of_a_long_series_reads_only_the_samples_around_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hours at 10 Hz: a 20 s window gives the same columns from its neighbourhood as from the whole
    series (PCIe readings once a second, energy counter, power), without scanning every sample."""
    import math

    from harness.telemetry import trace

    n = 72_000
    t = [i * S // 10 for i in range(n)]
    g = series(
        0,
        t,
        energy_mj=[i * 30_000 for i in range(n)],  # 300 W
        power_w=[250.0 + 100.0 * math.sin(i / 50) for i in range(n)],
        util_gpu_pct=[i % 100 for i in range(n)],
        sm_clock_mhz=[1500 + i % 7 for i in range(n)],
        pcie_tx_kb_s=[float(i % 13) if i % 10 == 0 else None for i in range(n)],
    )
    t0, t1 = 3_600 * S + S // 20, 3_620 * S + S // 20  # edges between samples
    near = trace.gpu_window(g, t0, t1)
    monkeypatch.setattr(trace, "WINDOW_SLACK_NS", 10**15)  # the whole series
    assert trace.gpu_window(g, t0, t1) == near
    assert near["energy_j"] == pytest.approx(6000.0) and near["samples"] > 190


def test_a_window_between_two_samples_has_consistent_columns() -> None:
    """60 ms between samples 100 ms apart, power capped all along: it read throttle_s 0.06 with no
    throttle reason, and a mean power with no max."""
    ms = S // 1000
    t = [0, 100 * ms]
    g = series(0, t, power_w=[300.0, 340.0], clocks_event_reasons=[0x4, 0x4], sm_clock_mhz=[1980, 1900])
    cols = gpu_window_columns([g], 20 * ms, 80 * ms)
    assert cols["gpu_power_w_mean"] == pytest.approx(320.0)
    assert cols["gpu_power_w_max"] == pytest.approx(332.0)  # interpolated at 80 ms
    assert cols["gpu_sm_clock_mhz_min"] == pytest.approx(1916.0)
    assert cols["gpu_throttle_s"] == pytest.approx(0.06)
    assert cols["gpu_throttle_reasons"] == "sw_power_cap"
    # one sample inside, none at the edges: throttle time is not known, as energy is not
    inside = series(0, [50 * ms], power_w=[300.0], clocks_event_reasons=[0x4])
    cols = gpu_window_columns([inside], 20 * ms, 80 * ms)
    assert cols["gpu_energy_j"] is None and cols["gpu_throttle_s"] is None


def test_throttle_time_unknown_on_one_gpu_is_unknown_for_all() -> None:
    """One GPU's samples end inside the window: energy was unknown, yet the other GPU's 60 ms of power
    cap passed for the longest throttle."""
    ms = S // 1000
    covered = series(0, [0, 100 * ms], power_w=[300.0, 300.0], clocks_event_reasons=[0x4, 0x4])
    short = series(1, [0, 50 * ms], power_w=[300.0, 300.0], clocks_event_reasons=[0x0, 0x0])
    cols = gpu_window_columns([covered, short], 20 * ms, 80 * ms)
    assert cols["gpu_energy_j"] is None and cols["gpu_throttle_s"] is None
    assert gpu_window_columns([covered], 20 * ms, 80 * ms)["gpu_throttle_s"] == pytest.approx(0.06)


def test_telemetry_show_reads_a_run_directorys_traces_and_names_its_other_telemetry(tmp_path: Path) -> None:
    """Given a run directory it had failed with `Is a directory`, and given the run's CPU telemetry with
    `Not a gzipped file (b'PA')`."""
    from ..integration.conftest import harness_cli

    g = series(0, [0, S], energy_mj=[0, 1000], power_w=[1.0, 1.0])
    run = tmp_path / "run"
    run.mkdir()
    names = ["telemetry-nvml-v2.jsonl.gz", "telemetry-nvml-v10.jsonl.gz", "telemetry-nvml-v2-a1.jsonl.gz"]
    for name in names:
        write_trace(run / name, {}, [g], {"all": (0, S)})
    res = harness_cli("telemetry", "show", str(run), timeout=120)
    assert res.returncode == 0, res.stderr
    heads = [ln.split(":")[0] for ln in res.stdout.splitlines() if not ln.startswith(" ")]
    assert heads == [str(run / n) for n in (names[0], names[2], names[1])]  # by variant and attempt
    untagged = tmp_path / "untagged"  # the sampler's own name where a run gives none
    untagged.mkdir()
    write_trace(untagged / "telemetry-nvml.jsonl.gz", {}, [g], {"all": (0, S)})
    res = harness_cli("telemetry", "show", str(untagged), timeout=120)
    assert res.returncode == 0 and res.stdout.startswith(str(untagged / "telemetry-nvml.jsonl.gz")), (
        res.stderr
    )
    quick = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    res = harness_cli("telemetry", "show", str(quick), timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no NVML trace (telemetry-nvml-v<N>.jsonl.gz) in this directory (it has telemetry-cpu" in (
        res.stderr
    )
    res = harness_cli("telemetry", "show", str(quick / "telemetry-cpu.parquet"), timeout=120)
    assert res.returncode == 2
    assert "the host CPU's telemetry (a table), not an NVML trace: its figures are per point" in res.stderr
