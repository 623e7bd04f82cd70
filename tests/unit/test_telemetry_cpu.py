"""CPU sampler on real processes; RAPL discovery and wrap handling; CPU inventory parsing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from harness.hostinfo import cpu_inventory
from harness.telemetry.cpu import CpuSampler, find_rapl

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"
IDLE = "import time\ntime.sleep(30)\n"


def _window(sampler: CpuSampler, seconds: float, watch: list[psutil.Process] | None = None) -> dict:
    """One window of `seconds`; with `watch`, also `truth_cpu_pct`: their CPU time read around it."""
    sampler.start()
    try:
        time.sleep(0.3)
        before = sum(p.cpu_times().user + p.cpu_times().system for p in watch or [])
        t0 = time.perf_counter_ns()
        sampler.begin_window("w", t0)
        time.sleep(seconds)
        t1 = time.perf_counter_ns()
        cols = sampler.end_window("w", t1)
        after = sum(p.cpu_times().user + p.cpu_times().system for p in watch or [])
    finally:
        sampler.stop()
    cols["truth_cpu_pct"] = 100 * (after - before) / ((t1 - t0) / 1e9)
    return cols


def test_busy_engine_process_shows_cpu_and_rss(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        s = CpuSampler(proc.pid, interval_s=0.1)
        cols = _window(s, 1.5, [psutil.Process(proc.pid)])
    finally:
        proc.kill()
        proc.wait()
    # what the sampler says matches the process's own CPU time over the window (±5 points: the
    # reference is read just outside the window edges); a spinning process gets some CPU even on a
    # crowded machine, and one thread cannot use more than one core
    assert cols["engine_cpu_pct_mean"] == pytest.approx(cols["truth_cpu_pct"], abs=5), cols
    assert 5 < cols["engine_cpu_pct_mean"] < 110, cols
    assert cols["engine_rss_bytes_max"] > 1_000_000
    assert 0 < cols["host_cpu_pct_mean"] <= 100
    if sys.platform == "linux":  # the kernel reports steal time (0 on bare metal)
        assert 0 <= cols["host_cpu_steal_pct_mean"] <= 100 - cols["host_cpu_pct_mean"] + 1e-6
    assert cols["host_mem_used_bytes_max"] > 0
    s.write(tmp_path)
    df = pd.read_parquet(tmp_path / "telemetry-cpu.parquet")
    assert len(df) == len(s.t_ns) >= 15
    assert df["engine_cpu_s"].is_monotonic_increasing


def test_idle_process_shows_little_cpu() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IDLE])
    try:
        time.sleep(0.5)  # past interpreter start-up
        cols = _window(CpuSampler(proc.pid, interval_s=0.1), 1.0)
    finally:
        proc.kill()
        proc.wait()
    assert cols["engine_cpu_pct_mean"] < 10, cols


def test_children_of_the_engine_are_counted() -> None:
    # the "engine" is a shell whose child does the work
    # "; true" keeps the shell from exec'ing its only command: it must stay as the parent
    proc = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} -c '{BUSY}'; true"])
    try:
        time.sleep(0.3)
        kids = psutil.Process(proc.pid).children(recursive=True)
        assert kids, "the shell has not started its child"
        cols = _window(CpuSampler(proc.pid, interval_s=0.1), 1.5, [psutil.Process(proc.pid), *kids])
    finally:
        for k in psutil.Process(proc.pid).children(recursive=True):
            k.kill()
        proc.kill()
        proc.wait()
    assert cols["engine_cpu_pct_mean"] == pytest.approx(cols["truth_cpu_pct"], abs=5), cols
    assert cols["engine_cpu_pct_mean"] > 5, cols


def test_external_engine_has_host_columns_only() -> None:
    s = CpuSampler(None, interval_s=0.1)
    cols = _window(s, 0.3)
    assert "engine_cpu_pct_mean" not in cols
    assert cols["host_mem_used_bytes_max"] > 0
    assert "external" in s.manifest()["absent"]["engine"]


def test_rapl_absent_on_this_host_or_readable() -> None:
    doms, why = find_rapl()
    if doms:
        assert why is None and all(d.read_uj() >= 0 for d in doms)
    else:
        assert why and "powercap" in why


def _fake_powercap(root: Path, uj: int, rng: int) -> Path:
    pkg = root / "intel-rapl:0"
    sub = root / "intel-rapl:0:0"
    for d, name in ((pkg, "package-0"), (sub, "core")):
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{rng}\n")
    return pkg


def test_find_rapl_reads_package_domains_only(tmp_path: Path) -> None:
    _fake_powercap(tmp_path, 123, 1000)
    doms, why = find_rapl(tmp_path)
    assert why is None
    assert [(d.name, d.max_range_uj, d.read_uj()) for d in doms] == [("package-0", 1000, 123)]
    assert find_rapl(tmp_path / "nope")[1] is not None


def test_rapl_window_energy_handles_wrap(tmp_path: Path) -> None:
    """Literal counter values written to a powercap-shaped directory: 900 → 100 µJ wraps at 1000."""
    pkg = _fake_powercap(tmp_path, 900, 1000)
    s = CpuSampler(None, interval_s=10, powercap=tmp_path)
    s.start()
    try:
        t0 = time.perf_counter_ns()
        s.begin_window("w", t0)
        (pkg / "energy_uj").write_text("100\n")
        time.sleep(0.2)  # the end edge sample lands microseconds after t1, the begin one 0.2 s earlier
        cols = s.end_window("w", time.perf_counter_ns())
    finally:
        s.stop()
    # 900 → 1000 (wrap) → 100 = 200 µJ (less the few µs between t1 and the end sample, interpolated)
    assert cols["cpu_energy_j"] == pytest.approx(200e-6, rel=0.01)
    assert cols["cpu_power_w_mean"] > 0


def test_cpu_inventory_counts_sockets() -> None:
    info = "\n".join(
        [
            "processor\t: 0",
            "physical id\t: 0",
            "flags\t\t: fpu avx avx2 avx512f avx512_bf16 amx_tile",
            "processor\t: 1",
            "physical id\t: 1",
            "flags\t\t: fpu avx avx2 avx512f avx512_bf16 amx_tile",
        ]
    )
    inv = cpu_inventory(info)
    assert inv["sockets"] == 2
    assert inv["isa"] == ["avx", "avx2", "avx512f", "avx512_bf16", "amx_tile"]
    assert inv["mem_total_bytes"] > 0
    assert cpu_inventory("")["sockets"] == 1


def test_each_engine_of_a_run_writes_samples_of_its_own(tmp_path: Path) -> None:
    """Variants and resumes start an engine each, with samplers of their own: each writes its own file,
    named in its manifest entry (the second variant's once overwrote the first one's)."""
    from harness.telemetry.base import TelemetrySet

    lengths = {}
    for tag, seconds in (("v0", 0.35), ("v1", 0.15), ("v0-a1", 0.15)):
        tel = TelemetrySet([CpuSampler(os.getpid(), interval_s=0.05)])
        tel.start()
        time.sleep(seconds)
        tel.stop(tmp_path, tag)
        assert tel.manifest()["cpu"]["file"] == f"telemetry-cpu-{tag}.parquet"
        lengths[tag] = tel.manifest()["cpu"]["samples"]
    for tag, n in lengths.items():
        assert len(pd.read_parquet(tmp_path / f"telemetry-cpu-{tag}.parquet")) == n
    assert lengths["v0"] > lengths["v1"]  # the longer one kept its own samples
    assert not (tmp_path / "telemetry-cpu.parquet").exists()


def test_checkpoints_keep_the_samples_so_far_while_sampling_goes_on(tmp_path: Path) -> None:
    """The runner checkpoints after every point: the file on disk grows with the run, the sampler keeps
    sampling, and stop's file has everything (a harness killed after a point keeps its raw samples)."""
    from harness.telemetry.base import TelemetrySet

    tel = TelemetrySet([CpuSampler(os.getpid(), interval_s=0.05)])
    tel.start()
    f = tmp_path / "telemetry-cpu-v0.parquet"
    try:
        time.sleep(0.3)
        assert tel.checkpoint(tmp_path, "v0")  # the first one is always written
        assert tel.manifest()["cpu"]["file"] == f.name
        sizes = [len(pd.read_parquet(f))]
        tel._last_checkpoint = (time.monotonic(), 60.0)  # as if it had taken a minute: too soon again
        assert not tel.checkpoint(tmp_path, "v0")  # the file is left as it was
        assert len(pd.read_parquet(f)) == sizes[0]
        tel._last_checkpoint = (time.monotonic() - 2.0, 0.1)  # a 0.1 s write 2 s ago: due again
        time.sleep(0.3)
        assert tel.checkpoint(tmp_path, "v0")
        sizes.append(len(pd.read_parquet(f)))
        assert 0 < sizes[0] < sizes[1]
        time.sleep(0.3)
    finally:
        tel.stop(tmp_path, "v0")
    final = pd.read_parquet(tmp_path / "telemetry-cpu-v0.parquet")
    assert len(final) == tel.manifest()["cpu"]["samples"] > sizes[1]
    assert final["t_ns"].is_monotonic_increasing
    assert [p.name for p in tmp_path.iterdir()] == ["telemetry-cpu-v0.parquet"]  # no temporary left over


def test_a_failed_checkpoint_is_recorded_and_the_sampler_goes_on(tmp_path: Path) -> None:
    from harness.telemetry.base import TelemetrySet

    s = CpuSampler(os.getpid(), interval_s=0.05)
    tel = TelemetrySet([s])
    tel.start()
    try:
        tel.checkpoint(tmp_path / "gone", "v0")  # no such directory: the write fails
        assert tel.samplers == [s]
        assert "gone" in tel.manifest()["cpu"]["checkpoint_error"]
        t0 = time.perf_counter_ns()
        tel.begin_window("w", t0)
        time.sleep(0.2)
        assert tel.end_window("w", time.perf_counter_ns())["engine_cpu_pct_mean"] is not None
        assert tel.checkpoint(tmp_path, "v0")  # the next one that works clears it
        assert "checkpoint_error" not in tel.manifest()["cpu"]
    finally:
        tel.stop(tmp_path, "v0")


def test_a_sampler_whose_manifest_fails_mid_run_keeps_sampling_and_is_stopped(tmp_path: Path) -> None:
    from harness.telemetry.base import TelemetrySet

    s = CpuSampler(os.getpid(), interval_s=0.05)
    tel = TelemetrySet([s])
    tel.start()
    absent, s.absent = s.absent, None  # breaks its manifest only (sampling never reads it)
    try:
        assert "manifest: TypeError" in tel.manifest()["cpu"]["error"]
        assert tel.samplers == [s]  # not dropped: the runner reads manifests after every point
    finally:
        s.absent = absent
        tel.stop(tmp_path, "v0")
    assert s._thread is None  # its thread was stopped with the others
    assert (tmp_path / "telemetry-cpu-v0.parquet").is_file()


def test_host_busy_and_steal_shares_by_hand() -> None:
    """Two seconds of a 2-vCPU VM (4 CPU-seconds): 1 s busy, 0.8 s taken by the hypervisor (steal)."""
    s = CpuSampler(None)
    s.t_ns = [0, 1_000_000_000, 2_000_000_000]
    s.cols.update(
        engine_cpu_s=[None] * 3,
        engine_rss_bytes=[None] * 3,
        host_busy_s=[10.0, 10.5, 11.0],
        host_steal_s=[3.0, 3.4, 3.8],
        host_total_s=[100.0, 102.0, 104.0],
        mem_used=[1, 2, 1],
    )
    cols = s.window_columns(0, 2_000_000_000)
    assert cols["host_cpu_pct_mean"] == pytest.approx(25.0)  # 1.0 / 4.0
    assert cols["host_cpu_steal_pct_mean"] == pytest.approx(20.0)  # 0.8 / 4.0
    assert cols["host_busy_cores_mean"] == pytest.approx(0.5)  # 1.0 CPU-second over 2 s
    s.cols["host_steal_s"] = [None] * 3  # a kernel that does not report it: no column
    assert "host_cpu_steal_pct_mean" not in s.window_columns(0, 2_000_000_000)
    # a window between two samples has no sample inside it, but memory at its edges (interpolated): 1.25
    # and 1.5 GB; it had no maximum, where its CPU % has a mean
    s.cols["mem_used"] = [1e9, 2e9, 1e9]
    cols = s.window_columns(250_000_000, 500_000_000)
    assert cols["host_mem_used_bytes_max"] == pytest.approx(1.5e9) and cols["host_cpu_pct_mean"] is not None


def test_a_point_cut_short_before_its_window_leaves_the_samplers_running_and_written(tmp_path: Path) -> None:
    """Ctrl-C during warmup: end_window of a window never opened used to raise, which dropped the
    sampler for good: its thread kept running and its samples since the last checkpoint were lost."""
    from harness.telemetry.base import TelemetrySet
    from harness.telemetry.cpu import CpuSampler

    cpu = CpuSampler(os.getpid(), interval_s=0.05)
    tel = TelemetrySet([cpu])
    tel.start()
    assert tel.end_window("v0-c1") == {} and tel.samplers == [cpu] and tel.problems == {}

    class Broken(CpuSampler):  # a sampler whose window fails for a reason of its own
        name = "broken"

        def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict:
            raise RuntimeError("boom")

    broken = Broken(os.getpid(), interval_s=0.05)
    tel = TelemetrySet([broken])
    tel.start()
    tel.begin_window("p")
    time.sleep(0.2)
    tel.end_window("p")
    assert tel.samplers == [] and tel.problems == {"broken": "end_window: RuntimeError: boom"}
    tel.stop(tmp_path)
    assert broken._thread is None or not broken._thread.is_alive()  # stopped all the same
    written = pd.read_parquet(tmp_path / tel.files["broken"])
    assert len(written) >= 3 and tel.manifest()["broken"]["error"] == "end_window: RuntimeError: boom"


def test_the_tree_counts_children_that_come_and_go_once() -> None:
    from harness.telemetry.cpu import ProcCpu, tree_cpu_increase

    parent, child, brief = (100, 1.0), (101, 2.0), (102, 3.0)
    prev = {parent: ProcCpu(10.0, 0.0, 1), child: ProcCpu(3.0, 0.0, 100)}
    # the child exits after 1.5 s more (4.5 s in all) and a child never listed used 0.8 s: the parent
    # reaped both (5.3 s), and itself used 0.5 s; 3.0 s of the child were counted before
    now = {parent: ProcCpu(10.5, 5.3, 1)}
    assert tree_cpu_increase(prev, now) == (pytest.approx(0.5 + 1.5 + 0.8), 0.0)
    # the first sample is the origin; a process new since the last sample counts whole
    assert tree_cpu_increase({}, now, first=True) == (0.0, 0.0)
    assert tree_cpu_increase({parent: ProcCpu(10.5, 5.3, 1)}, {**now, brief: ProcCpu(0.2, 0.0, 100)}) == (
        pytest.approx(0.2),
        0.0,
    )
    # gone but not yet reaped (the parent's times have not grown): carried as debt, never negative
    inc, debt = tree_cpu_increase(prev, {parent: ProcCpu(10.2, 0.0, 1)})
    assert (inc, debt) == (0.0, pytest.approx(2.8))
    assert tree_cpu_increase(
        {parent: ProcCpu(10.2, 0.0, 1)}, {parent: ProcCpu(10.3, 4.5, 1)}, debt_s=debt
    ) == (
        pytest.approx(0.1 + 4.5 - 2.8),
        0.0,
    )
    # an orphan (its parent not in the tree) that is gone: nothing more to count for it
    assert tree_cpu_increase(
        {parent: ProcCpu(1.0, 0, 1), (7, 0.0): ProcCpu(2.0, 0, 55)}, {parent: ProcCpu(1.0, 0, 1)}
    ) == (
        0.0,
        0.0,
    )


def test_a_parent_and_its_child_gone_together_are_counted_once() -> None:
    from harness.telemetry.cpu import ProcCpu, tree_cpu_increase

    root, parent, child = (1, 0.0), (2, 0.0), (3, 0.0)
    prev = {root: ProcCpu(1.0, 0.0, 0), parent: ProcCpu(2.0, 0.0, 1), child: ProcCpu(3.0, 0.0, 2)}
    # the child runs 1 s more and is reaped by the parent (its reaped: 4.0), which runs 0.5 s more and is
    # reaped by the root: the root's reaped time grows by 2.5 + 4.0
    now = {root: ProcCpu(1.0, 6.5, 0)}
    assert tree_cpu_increase(prev, now) == (pytest.approx(1.5), 0.0)


def test_host_cpu_seconds_never_step_back_when_iowait_does() -> None:
    """Linux's iowait can decrease between two reads of /proc/stat (proc(5)); the total holding it then
    stepped back, the window's increase was unknown, and host_cpu_pct_mean came out empty."""
    from collections import namedtuple

    from harness.telemetry.cpu import host_cpu_seconds

    times = namedtuple("times", "user nice system idle iowait irq softirq steal guest guest_nice")
    a = times(100.0, 0.0, 50.0, 800.0, 10.0, 1.0, 1.0, 5.0, 0.0, 0.0)
    busy, total, steal = host_cpu_seconds(a)
    assert (busy, total, steal) == (152.0, 967.0, 5.0)  # 100 + 50 + 1 + 1; all fields
    b = a._replace(user=101.0, iowait=9.5)  # one second busier, iowait 0.5 s lower
    busy2, total2, _ = host_cpu_seconds(b, (busy, total))
    assert busy2 == 153.0 and total2 == 967.5  # the total held would have read 967.5, not dropped
    c = a._replace(iowait=5.0)  # total drops by 5 s with nothing else moving: held at its highest
    assert host_cpu_seconds(c, (busy2, total2))[:2] == (153.0, 967.5)
