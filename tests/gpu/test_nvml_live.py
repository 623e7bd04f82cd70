"""The NVML sampler on a real NVIDIA GPU: inventory, idle vs loaded windows, counter vs power, replay.

Skipped without a GPU. With `HARNESS_NVML_TRACE_DIR=<dir>` the recorded trace is also copied there,
to be committed under tests/fixtures/nvml/ as a replay fixture.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from harness.telemetry import nvml
from harness.telemetry.replay import replay_windows
from harness.telemetry.trace import read_trace
from harness.telemetry.window import integrate

from ..integration.conftest import harness_cli


def _gpu() -> bool:
    try:
        nvml.probe()
    except nvml.NvmlError:
        return False
    return True


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _gpu(), reason="no NVIDIA GPU visible to NVML")]


def _matmul_load(seconds: float) -> bool:
    """bf16 matmuls on GPU 0 for `seconds`; False when torch with CUDA is not installed."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
    return True


def _window(s: nvml.NvmlSampler, name: str, work) -> dict:
    t0 = time.perf_counter_ns()
    s.begin_window(name, t0)
    work()
    return s.end_window(name, time.perf_counter_ns())


def test_live_sampler_idle_and_loaded(tmp_path: Path) -> None:
    s = nvml.NvmlSampler(0.1)
    s.start()
    try:
        time.sleep(0.5)
        idle = _window(s, "idle", lambda: time.sleep(3.0))
        loaded_ok: list[bool] = []
        loaded = _window(s, "matmul", lambda: loaded_ok.append(_matmul_load(5.0)))
        after = _window(s, "idle-after", lambda: time.sleep(3.0))
    finally:
        s.stop()
    path = tmp_path / s.write(tmp_path)
    if os.environ.get("HARNESS_NVML_TRACE_DIR"):
        dest = Path(os.environ["HARNESS_NVML_TRACE_DIR"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest / f"{s.inventory['gpus'][0]['name'].replace(' ', '-')}-matmul.jsonl.gz")

    inv = s.inventory
    assert inv["available"] and inv["driver_version"] and inv["gpus"][0]["uuid"].startswith("GPU-")
    print("inventory:", inv["gpus"][0])
    print(
        "power source:", [r.power_source for r in s.readers], "energy:", [r.energy_source for r in s.readers]
    )
    print("memory:", [r.memory_source for r in s.readers])
    # 32-bit PCIe byte counters: their wrap period from the link the inventory reports (None: unknown)
    m = s.manifest()
    print("pcie counter bits:", [r.counter_bits for r in s.readers], "wrap s:", m["pcie_counter_wrap_s"])
    for r in s.readers:
        if r.counter_bits.get("pcie_tx_bytes") == 32 and inv["gpus"][r.index].get("pcie_gen_max"):
            assert 0 < m["pcie_counter_wrap_s"][str(r.index)] < 100
    for r in s.readers:
        v1 = nvml.memory_info(r.handle, v2=False)
        if r.memory_source == nvml.MEMORY_V2:  # v2 leaves out what the driver reserves; v1 counts it as used
            v2 = nvml.memory_info(r.handle, v2=True)
            assert v2.total == v1.total and v2.used <= v1.used
            assert v2.used + v2.reserved + v2.free == pytest.approx(v2.total, rel=0.01)
        else:
            assert r.memory_source == nvml.MEMORY_V1 and "mem_used_bytes_v2" in r.absent
    for name, cols in (("idle", idle), ("matmul", loaded), ("idle-after", after)):
        print(
            name,
            {k: cols[k] for k in ("gpu_energy_j", "gpu_power_w_mean", "gpu_util_pct_mean", "gpu_samples")},
        )
        assert cols["gpu_power_w_mean"] > 0
        assert cols["gpu_energy_j"] is not None and cols["gpu_energy_j"] > 0
        assert cols["gpu_samples"] >= 20 * cols["gpu_count"]  # 100 ms over ≥ 3 s, edges included

    head, series = read_trace(path)
    g0 = series[0]
    energies = [e for e in g0.cols["energy_mj"] if e is not None]
    assert energies == sorted(energies), "energy counter went backwards"
    w = head["windows"]["matmul"]
    if energies:
        counter_j = loaded["gpu_energy_j"] if loaded["gpu_energy_source"] == "counter" else None
        power_j = integrate(g0.t_ns, g0.cols["power_w"], w[0], w[1])
        print(f"matmul window: counter {counter_j} J, ∫power {power_j} J")
        if counter_j and power_j and s.inventory["count"] == 1:
            assert abs(counter_j - power_j) / counter_j < 0.25
    # without torch the "loaded" window ran nothing: the checks that load shows would not be made
    assert loaded_ok == [True], "torch with CUDA is needed to load the GPU in this test (pip install torch)"
    assert loaded["gpu_power_w_mean"] > idle["gpu_power_w_mean"]
    assert loaded["gpu_util_pct_mean"] > 50

    # replaying the written trace gives the live windows' columns
    again = replay_windows(path)
    for name, cols in (("idle", idle), ("matmul", loaded)):
        assert again[name]["gpu_energy_j"] == pytest.approx(cols["gpu_energy_j"], rel=1e-9)
        assert again[name]["gpu_power_w_mean"] == pytest.approx(cols["gpu_power_w_mean"], rel=1e-9)


def test_gpu_info_records_a_trace(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl.gz"
    res = harness_cli("gpu-info", "--record", str(out), "--duration-s", "1", timeout=120)
    assert res.returncode == 0, res.stderr
    head, series = read_trace(out)
    assert head["inventory"]["available"] is True
    assert len(series) == head["inventory"]["count"] and len(series[0]) >= 10
