"""The GPU sampler on NVML (it also exports the names of `nvml_api` and `gpu_reader`, which it uses).

`NvmlSampler` reads the engine's GPUs (`engine_gpus`) each `interval_s` on a thread (and once more at
every window edge): energy counter, power, utilization, memory, clocks, temperature, clocks-event
reasons, PCIe bytes.
What a GPU does not support is probed once at start, left out, and listed in the manifest with the
reason. Power comes from the `POWER_INSTANT` field where supported, else `nvmlDeviceGetPowerUsage`
(a 1 s average on H100, near-instantaneous on A100); the manifest names the source per GPU.

Drivers before R555 have no PCIe byte counters; there `nvmlDeviceGetPcieThroughput` (which blocks
for about 20 ms a call) is read once a second by the sampler thread alone, outside the lock that
window edges take, so a window edge on the load's event loop never waits for it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from harness.helper_thread import HelperCall
from harness.telemetry.base import sampler_overhead, telemetry_file, window_start
from harness.telemetry.gpu_pick import engine_gpus, gpus_elsewhere, visible_gpus
from harness.telemetry.gpu_reader import MEMORY_V1, MEMORY_V2, GpuReader, memory_info, memory_v2_supported
from harness.telemetry.nvml_api import (
    NvmlError,
    NvmlGpuLost,
    NvmlNoGpu,
    NvmlNotSupported,
    NvmlUnavailable,
    binding,
    call,
    convert,
    field_bits,
    field_value,
    init,
    probe,
    shutdown,
)
from harness.telemetry.trace import GpuSeries, gpu_window_columns, write_trace
from harness.telemetry.window import counter_wrap_s, pcie_wrap_note

__all__ = [
    "EDGE_LOCK_TIMEOUT_S",
    "MEMORY_V1",
    "MEMORY_V2",
    "GpuReader",
    "NvmlError",
    "NvmlGpuLost",
    "NvmlNoGpu",
    "NvmlNotSupported",
    "NvmlSampler",
    "NvmlUnavailable",
    "binding",
    "call",
    "convert",
    "engine_gpus",
    "field_bits",
    "field_value",
    "gpus_elsewhere",
    "init",
    "memory_info",
    "memory_v2_supported",
    "probe",
    "shutdown",
    "visible_gpus",
]


EDGE_LOCK_TIMEOUT_S = 2.0  # a window edge waits this long for the sampler thread, then skips its sample


class NvmlSampler:
    """Samples the engine's GPUs on a thread (`engine_gpus`; all of them without `visible`/`count`/
    `positions`);
    windows give the `gpu_*` columns of `trace.gpu_window_columns` over those GPUs only, so idle GPUs
    of a shared machine add nothing to energy per token."""

    name = "nvml"

    def __init__(
        self,
        interval_s: float = 0.1,
        visible: str | None = None,
        count: int | None = None,
        positions: list[int] | None = None,
        order: str | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.visible, self.count, self.positions, self.order = visible, count, positions, order
        self.order_unknown = False  # the engine's GPUs may be others (`inventory.cuda_order_unknown`)
        self.selection = ""
        self.engine_count: int | None = None  # `count`, where more than the GPUs here (multi-node)
        self.readers: list[GpuReader] = []
        self.series: list[GpuSeries] = []
        self.windows: dict[str, tuple[int, int]] = {}
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._initialised = False
        self.thread_cpu_s: float | None = None
        self.loop_error: str | None = None
        self.started_ns = 0
        self.stopped_ns = 0
        self.inventory: dict[str, Any] = {}
        self.skipped: dict[int, str] = {}  # engine GPUs NVML could not open, with the reason
        self.edge_skips = 0  # window-edge samples skipped because the sampler thread held the lock
        self._live_last = ""

    def start(self) -> None:
        from harness.telemetry.inventory import gpu_inventory

        self.inventory = gpu_inventory()
        n = init()
        self._initialised = True
        try:
            self._open_gpus(n)
        except BaseException:
            self.stop()
            raise
        self.started_ns = time.perf_counter_ns()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()

    def _open_gpus(self, n: int) -> None:
        from harness.telemetry.inventory import ORDER_NOTE, cuda_order_unknown, mig_parents

        # UUIDs from the inventory just taken ("" where NVML could not say: indices still match)
        known = {g.get("index"): str(g.get("uuid") or "") for g in self.inventory.get("gpus") or []}
        uuids = [known.get(i, "") for i in range(n)]
        picked, self.selection = engine_gpus(
            self.visible, uuids, self.count, mig_parents(self.inventory), self.positions
        )
        self.engine_count = self.count if gpus_elsewhere(len(picked), self.count) else None
        if cuda_order_unknown(self.inventory, self.visible, picked, self.order):
            self.order_unknown = True
            self.selection += f"; {ORDER_NOTE}"
        for i in picked:
            try:
                r = GpuReader(i)
                r.probe()
            except NvmlError as e:  # one GPU that cannot be read costs only its own columns
                self.skipped[i] = str(e)
                continue
            self.readers.append(r)
            self.series.append(GpuSeries(i))
        if picked and not self.readers:
            raise NvmlUnavailable(f"no engine GPU could be opened: {self.skipped}")

    def sample(self, timeout_s: float = -1) -> bool:
        """One sample of every GPU under the lock; False when the lock was not had within `timeout_s`."""
        if not self._lock.acquire(timeout=timeout_s):
            self.edge_skips += 1
            return False
        try:
            self._read_all()
        finally:
            self._lock.release()
        return True

    def _read_all(self) -> None:
        """One sample of every GPU (the caller holds the lock)."""
        for r, s in zip(self.readers, self.series, strict=True):
            t = time.perf_counter_ns()  # per GPU: reading eight of them takes a while
            s.append(t, r.read())

    def _sample_pcie(self) -> None:
        """The slow PCIe throughput fallback, off the lock; its samples go in at their own time."""
        now = time.perf_counter_ns()
        got = [(s, *r.read_pcie()) for r, s in zip(self.readers, self.series, strict=True) if r.pcie_due(now)]
        if got:
            with self._lock:
                for s, t, x in got:
                    s.append(t, x)

    def _loop(self) -> None:
        nxt = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, nxt - time.monotonic())):
            try:
                self.sample()
                self._sample_pcie()
            except Exception as e:  # keep sampling; the manifest says what went wrong
                self.loop_error = f"{type(e).__name__}: {e}"
            nxt += self.interval_s
            if nxt < time.monotonic():  # fell behind: do not burst
                nxt = time.monotonic() + self.interval_s
        self.thread_cpu_s = time.thread_time()

    def edge_sample(self) -> bool:
        """A sample at a window edge, taken on a helper thread that the caller waits for at most
        EDGE_LOCK_TIMEOUT_S: an NVML call that hangs (a GPU falling off the bus) must not hold the run.
        False when it did not finish in time (the helper stays in its call; it holds the lock, so the
        sampler thread and later edges skip their samples rather than wait on it)."""
        helper = HelperCall(lambda: self.sample(EDGE_LOCK_TIMEOUT_S), "nvml-edge")
        helper.thread.join(EDGE_LOCK_TIMEOUT_S + 0.5)
        if helper.thread.is_alive():
            self.edge_skips += 1
            return False
        return bool(helper.result())  # False: the lock was held that long (`sample` counted the skip)

    def begin_window(self, name: str, t_ns: int) -> None:
        self.edge_sample()
        self._open[name] = t_ns

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        opened = self._open.pop(name, None)
        if opened is None:  # a point cut short before its measured requests: no window was opened
            return {}
        t0 = window_start(opened, start_ns)
        self.windows[name] = (t0, t_ns)
        cols = self._window_columns(t0, t_ns)
        # a multi-node engine: the energy of its GPUs elsewhere is missing (`base.energy_columns`)
        if self.engine_count:
            cols["gpu_engine_count"] = self.engine_count
        if self.skipped:  # so is that of its GPUs here that NVML could not open
            cols["gpu_unread_count"] = len(self.skipped)
        if self.order_unknown:  # the GPUs sampled may not be the engine's
            cols["gpu_order_unknown"] = True
        return cols

    def _window_columns(self, t0: int, t1: int) -> dict[str, Any]:
        """The GPUs' columns over [t0, t1], after a closing edge sample."""
        # a thread stuck in an NVML call holds the lock: then neither the edge sample nor the columns
        if not self.edge_sample() or not self._lock.acquire(timeout=EDGE_LOCK_TIMEOUT_S):
            return {"gpu_window_skipped": True}  # the GPUs were sampled, this window's columns are unknown
        try:
            return gpu_window_columns(self.series, t0, t1)
        finally:
            self._lock.release()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            stuck = self._thread.is_alive()  # in an NVML call (a GPU going away): no last sample
            if stuck:
                self.loop_error = self.loop_error or "sampler thread still in an NVML call 5 s after stop"
                self._initialised = False  # no nvmlShutdown under a call in progress: process exit cleans up
            else:
                self.sample(EDGE_LOCK_TIMEOUT_S)
            self._thread = None
            self.stopped_ns = time.perf_counter_ns()
        if self._initialised:
            shutdown()
            self._initialised = False

    def live(self) -> str:
        if not self._lock.acquire(blocking=False):  # the thread is sampling: what it last showed
            return self._live_last
        try:
            last = [s.last() for s in self.series]
        finally:
            self._lock.release()
        pw = [x["power_w"] for x in last if x.get("power_w") is not None]
        ut = [x["util_gpu_pct"] for x in last if x.get("util_gpu_pct") is not None]
        parts = []
        if pw:
            parts.append(f"GPU {sum(pw):.0f} W")
        if ut:
            parts.append(f"{sum(ut) / len(ut):.0f} % util")
        self._live_last = " ".join(parts)
        return self._live_last

    def pcie_wrap_s(self) -> dict[int, float | None]:
        """Per sampled GPU whose PCIe byte counters are 32 bits wide: how long they take to wrap at its
        link's full rate (the inventory's maximum PCIe generation and width)."""
        links = {g.get("index"): g for g in self.inventory.get("gpus") or [] if isinstance(g, dict)}
        return {
            r.index: counter_wrap_s(
                32, links.get(r.index, {}).get("pcie_gen_max"), links.get(r.index, {}).get("pcie_width_max")
            )
            for r in self.readers
            if r.counter_bits.get("pcie_tx_bytes") == 32 or r.counter_bits.get("pcie_rx_bytes") == 32
        }

    def notes(self) -> list[str]:
        """What the numbers of this sampler cannot show, said once at start (and kept in the manifest)."""
        from harness.telemetry.inventory import ORDER_NOTE

        note = pcie_wrap_note(self.interval_s, self.pcie_wrap_s())
        return [n for n in (note, ORDER_NOTE if self.order_unknown else None) if n]

    def manifest(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "pcie_counter_wrap_s": {str(k): v for k, v in self.pcie_wrap_s().items()},
            "notes": self.notes(),
            "samples_per_gpu": len(self.series[0]) if self.series else 0,
            **sampler_overhead(self.thread_cpu_s, self.started_ns, self.stopped_ns),
            "gpus": [r.manifest() for r in self.readers],
            "sampled_gpus": [r.index for r in self.readers],
            "gpu_selection": self.selection,
            "skipped_gpus": {str(k): v for k, v in self.skipped.items()},
            "edge_samples_skipped": self.edge_skips,
            "loop_error": self.loop_error,
        }

    def header(self) -> dict[str, Any]:
        import datetime as dt

        return {
            "interval_s": self.interval_s,
            "recorded_utc": dt.datetime.now(dt.UTC).isoformat(),
            "inventory": self.inventory,
            "sampled_gpus": [r.index for r in self.readers],
            "gpu_selection": self.selection,
            "power_source": {str(r.index): r.power_source for r in self.readers},
            "energy_source": {str(r.index): r.energy_source for r in self.readers},
            "memory_source": {str(r.index): r.memory_source for r in self.readers},
            "absent": {str(r.index): r.absent for r in self.readers},
        }

    def write(self, run_dir: Path, tag: str = "", filename: str | None = None) -> str:
        """The trace into run_dir, as `filename` or else `telemetry-nvml[-tag].jsonl.gz`; its file name."""
        name = filename or telemetry_file("nvml", "jsonl.gz", tag)
        got = self._lock.acquire(timeout=EDGE_LOCK_TIMEOUT_S)  # else the thread is stuck: it adds nothing
        try:  # copied under the lock, written off it: the thread goes on sampling meanwhile
            series, windows = [s.copy() for s in self.series], dict(self.windows)
        finally:
            if got:
                self._lock.release()
        write_trace(Path(run_dir) / name, self.header(), series, windows)
        return name
