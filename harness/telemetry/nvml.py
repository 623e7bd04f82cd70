"""The GPU sampler on NVML (through `harness.telemetry.nvml_api`, whose names it also exports).

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

from harness.telemetry.base import sampler_overhead, telemetry_file
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
from harness.telemetry.window import counter_wrap_s, pcie_wrap_note, unwrap_reading

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
    "init",
    "memory_info",
    "memory_v2_supported",
    "probe",
    "shutdown",
]


COUNTER_FIELDS = ("energy_mj", "pcie_tx_bytes", "pcie_rx_bytes")
EDGE_LOCK_TIMEOUT_S = 2.0  # a window edge waits this long for the sampler thread, then skips its sample
# sample field -> (pynvml field constant, scale to the sample's unit)
FIELD_IDS = {
    "energy_mj": ("NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1.0),
    "power_w": ("NVML_FI_DEV_POWER_INSTANT", 1e-3),  # mW
    "power_avg_w": ("NVML_FI_DEV_POWER_AVERAGE", 1e-3),
    "pcie_tx_bytes": ("NVML_FI_DEV_PCIE_COUNT_TX_BYTES", 1.0),
    "pcie_rx_bytes": ("NVML_FI_DEV_PCIE_COUNT_RX_BYTES", 1.0),
}


def _util(h: Any) -> dict[str, Any]:
    u = call("nvmlDeviceGetUtilizationRates", h)
    return {"util_gpu_pct": u.gpu, "util_mem_pct": u.memory}


def _reasons(h: Any) -> dict[str, Any]:
    try:
        return {"clocks_event_reasons": call("nvmlDeviceGetCurrentClocksEventReasons", h)}
    except NvmlNotSupported:  # drivers before the rename
        return {"clocks_event_reasons": call("nvmlDeviceGetCurrentClocksThrottleReasons", h)}


def _temp(h: Any) -> dict[str, Any]:
    """GPU temperature: nvmlDeviceGetTemperatureV (the old call is deprecated, to go in CUDA 14), else the
    old call on drivers and bindings without it."""
    sensor = binding().NVML_TEMPERATURE_GPU
    try:
        return {"temp_c": call("nvmlDeviceGetTemperatureV", h, sensor)}
    except NvmlNotSupported:
        return {"temp_c": call("nvmlDeviceGetTemperature", h, sensor)}


MEMORY_V1 = "nvmlDeviceGetMemoryInfo (v1: used includes memory the driver reserves)"
MEMORY_V2 = "nvmlDeviceGetMemoryInfo_v2"


def memory_info(h: Any, v2: bool) -> Any:
    """`nvmlDeviceGetMemoryInfo` as version 2 (whose `used` leaves out what the driver reserves, as
    nvidia-smi shows it, with `reserved` apart) or version 1 (`used` = total - free, reserved included)."""
    if not v2:
        return call("nvmlDeviceGetMemoryInfo", h)
    version = getattr(binding(), "nvmlMemory_v2", None)
    if version is None:
        raise NvmlNotSupported("nvmlMemory_v2: not in this nvidia-ml-py version")
    return call("nvmlDeviceGetMemoryInfo", h, version)


def memory_v2_supported(h: Any) -> tuple[bool, str | None]:
    """Whether this binding and driver answer the version-2 memory call, and why not where they don't."""
    try:
        memory_info(h, v2=True)
    except NvmlError as e:  # not supported, an older driver's version mismatch, or another refusal
        return False, str(e)
    return True, None


def _readers(memory_v2: bool = False) -> list[tuple[str, Any]]:
    nv = binding()
    return [
        ("util", _util),
        ("mem_used_bytes", lambda h: {"mem_used_bytes": memory_info(h, memory_v2).used}),
        ("sm_clock_mhz", lambda h: {"sm_clock_mhz": call("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM)}),
        ("mem_clock_mhz", lambda h: {"mem_clock_mhz": call("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_MEM)}),
        ("temp_c", _temp),
        ("clocks_event_reasons", _reasons),
    ]


class GpuReader:
    """Reads one GPU; `probe()` decides once what this GPU supports."""

    PCIE_THROUGHPUT_PERIOD_NS = 1_000_000_000  # nvmlDeviceGetPcieThroughput samples for ~20 ms

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle = call("nvmlDeviceGetHandleByIndex", index)
        self.fields: dict[str, tuple[int, float]] = {}
        self.counter_bits: dict[str, int] = {}  # 32-bit counter fields, unwrapped as they are read
        self._raw: dict[str, tuple[int, int]] = {}  # counter field -> (last raw value, wraps so far)
        self.readers: list[tuple[str, Any]] = []
        self.absent: dict[str, str] = {}
        self.power_source: str | None = None
        self.energy_source: str | None = None
        self.memory_source: str | None = None
        self.errors: dict[str, str] = {}
        self.error_count = 0
        self._energy_fn = False
        self._power_fn = False
        self._pcie_fn = False
        self._pcie_last_ns = 0

    def probe(self) -> None:
        nv = binding()
        ids = {k: (getattr(nv, c), sc) for k, (c, sc) in FIELD_IDS.items() if hasattr(nv, c)}
        for k, (c, _) in FIELD_IDS.items():
            if not hasattr(nv, c):
                self.absent[k] = f"{c}: not in this nvidia-ml-py version"
        try:
            got = call("nvmlDeviceGetFieldValues", self.handle, [i for i, _ in ids.values()])
            for (k, spec), fv in zip(ids.items(), got, strict=True):
                try:
                    field_value(fv)
                    self.fields[k] = spec
                    if k in COUNTER_FIELDS and field_bits(fv) == 32:
                        self.counter_bits[k] = 32
                except NvmlError as e:
                    self.absent[k] = str(e)
        except NvmlError as e:
            for k in ids:
                self.absent[k] = str(e)
        if "energy_mj" in self.fields:
            self.energy_source = "field:TOTAL_ENERGY_CONSUMPTION"
        else:
            self._energy_fn = self._try("energy_mj", "nvmlDeviceGetTotalEnergyConsumption")
            self.energy_source = "nvmlDeviceGetTotalEnergyConsumption" if self._energy_fn else None
        if "power_w" in self.fields:
            self.power_source = "field:POWER_INSTANT"
        else:
            self._power_fn = self._try("power_w", "nvmlDeviceGetPowerUsage")
            self.power_source = "nvmlDeviceGetPowerUsage" if self._power_fn else None
        if "pcie_tx_bytes" not in self.fields or "pcie_rx_bytes" not in self.fields:
            self._pcie_fn = self._try("pcie_tx_kb_s", "nvmlDeviceGetPcieThroughput", 0)
        memory_v2, why_not = memory_v2_supported(self.handle)
        for label, fn in _readers(memory_v2):
            try:
                fn(self.handle)
                self.readers.append((label, fn))
            except NvmlError as e:
                self.absent[label] = str(e)
        if any(label == "mem_used_bytes" for label, _ in self.readers):
            self.memory_source = MEMORY_V2 if memory_v2 else MEMORY_V1
            if why_not:
                self.absent["mem_used_bytes_v2"] = why_not

    def _try(self, key: str, fn: str, *args: Any) -> bool:
        try:
            call(fn, self.handle, *args)
        except NvmlError as e:
            self.absent[key] = f"{self.absent[key]}; {e}" if key in self.absent else str(e)
            return False
        self.absent.pop(key, None)
        return True

    def _err(self, what: str, e: NvmlError) -> None:
        self.error_count += 1
        self.errors[what] = str(e)

    def read(self) -> dict[str, Any]:
        s: dict[str, Any] = {}
        if self.fields:
            try:
                got = call("nvmlDeviceGetFieldValues", self.handle, [i for i, _ in self.fields.values()])
                for (k, (_, scale)), fv in zip(self.fields.items(), got, strict=True):
                    try:
                        v = field_value(fv)
                        if k in self.counter_bits:
                            v = self._unwrap(k, int(v))
                        s[k] = v * scale if scale != 1.0 else v
                    except NvmlError as e:
                        self._err(k, e)
            except NvmlError as e:
                self._err("field_values", e)
        for flag, key, fn, scale in (
            (self._energy_fn, "energy_mj", "nvmlDeviceGetTotalEnergyConsumption", 1.0),
            (self._power_fn, "power_w", "nvmlDeviceGetPowerUsage", 1e-3),
        ):
            if flag:
                try:
                    s[key] = call(fn, self.handle) * scale
                except NvmlError as e:
                    self._err(key, e)
        for label, fn in self.readers:
            try:
                s.update(fn(self.handle))
            except NvmlError as e:
                self._err(label, e)
        return s

    def _unwrap(self, key: str, raw: int) -> int:
        """A 32-bit counter made monotone: one more wrap for every decrease since the first read."""
        self._raw[key], value = unwrap_reading(self._raw.get(key), raw, self.counter_bits[key])
        return value

    def pcie_due(self, t_ns: int) -> bool:
        """The throughput fallback is due (once per `PCIE_THROUGHPUT_PERIOD_NS`)."""
        return self._pcie_fn and t_ns - self._pcie_last_ns >= self.PCIE_THROUGHPUT_PERIOD_NS

    def read_pcie(self) -> tuple[int, dict[str, Any]]:
        """PCIe TX and RX throughput (KB/s, each measured over ~20 ms) and the time at their middle."""
        t0 = time.perf_counter_ns()
        self._pcie_last_ns = t0
        s: dict[str, Any] = {}
        try:
            s["pcie_tx_kb_s"] = call("nvmlDeviceGetPcieThroughput", self.handle, 0)
            s["pcie_rx_kb_s"] = call("nvmlDeviceGetPcieThroughput", self.handle, 1)
        except NvmlError as e:
            self._err("pcie_throughput", e)
        return (t0 + time.perf_counter_ns()) // 2, s

    def manifest(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "power_source": self.power_source,
            "energy_source": self.energy_source,
            "memory_source": self.memory_source,
            "counter_bits": dict(self.counter_bits),
            "absent": dict(self.absent),
            "read_errors": self.error_count,
            "last_errors": dict(self.errors),
        }


def engine_gpus(
    visible: str | None, uuids: list[str], count: int | None = None, mig: dict[str, int] | None = None
) -> tuple[list[int], str]:
    """NVML indices of the GPUs an engine runs on, and how that was decided.

    NVML sees every GPU of the machine; the engine sees those `CUDA_VISIBLE_DEVICES` lists (indices, or
    UUIDs / their prefixes; unset: all) and uses the first `count` of them (vLLM: TP x PP; None: all,
    as llama.cpp splits layers over every visible GPU). Indices are taken in NVML (PCI bus) order, which
    is CUDA's order too on machines with one GPU model. A MIG instance (`MIG-…`, found in `mig`: its
    UUID → the index of the GPU it is part of) counts as that whole GPU, said so: NVML's power, energy,
    clocks and PCIe counters are the whole GPU's. An entry that names no single GPU: all GPUs, said so.
    """
    n = len(uuids)
    mig = mig or {}
    if visible is None:
        picked, how = list(range(n)), "all GPUs (CUDA_VISIBLE_DEVICES not set)"
    elif not visible.strip():
        return [], "none (CUDA_VISIBLE_DEVICES is empty: the engine sees no GPU)"
    else:
        picked, parts = [], []
        for tok in (t.strip() for t in visible.split(",")):
            if tok.lstrip("-").isdigit():
                i = int(tok)
                if not 0 <= i < n:
                    break  # CUDA stops at the first invalid entry
                picked.append(i)
                continue
            if tok.startswith("MIG-"):
                match = sorted({i for u, i in mig.items() if u.startswith(tok)})
                if len(match) == 1:
                    parts.append(f"{tok} is part of GPU {match[0]}")
                    if match[0] not in picked:
                        picked.append(match[0])
                    continue
            else:
                names = (tok, "GPU-" + tok)
                match = [i for i, u in enumerate(uuids) if u and u.startswith(names)]
                if len(match) == 1:
                    picked.append(match[0])
                    continue
            why = f"CUDA_VISIBLE_DEVICES entry {tok!r} names no single GPU here"
            return list(range(n)), f"all GPUs ({why})"
        how = f"CUDA_VISIBLE_DEVICES={visible}"
        if parts:
            how += (
                f" ({'; '.join(parts)}: power, energy, clocks and PCIe are the whole GPU's,"
                " shared with its other MIG instances)"
            )
    if count is not None and count < len(picked):
        picked, how = picked[:count], f"{how}, the first {count} (the engine's GPU count)"
    return picked, how


class NvmlSampler:
    """Samples the engine's GPUs on a thread (`engine_gpus`; all of them without `visible`/`count`);
    windows give the `gpu_*` columns of `trace.gpu_window_columns` over those GPUs only, so idle GPUs
    of a shared machine add nothing to energy per token."""

    name = "nvml"

    def __init__(self, interval_s: float = 0.1, visible: str | None = None, count: int | None = None) -> None:
        self.interval_s = interval_s
        self.visible, self.count = visible, count
        self.selection = ""
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
        from harness.telemetry.inventory import mig_parents

        # UUIDs from the inventory just taken ("" where NVML could not say: indices still match)
        known = {g.get("index"): str(g.get("uuid") or "") for g in self.inventory.get("gpus") or []}
        uuids = [known.get(i, "") for i in range(n)]
        picked, self.selection = engine_gpus(self.visible, uuids, self.count, mig_parents(self.inventory))
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
        got: list[bool] = []
        raised: list[BaseException] = []

        def edge() -> None:
            try:
                got.append(self.sample(EDGE_LOCK_TIMEOUT_S))
            except BaseException as e:  # raised again in the caller, who records it
                raised.append(e)

        t = threading.Thread(target=edge, name="nvml-edge", daemon=True)
        t.start()
        t.join(EDGE_LOCK_TIMEOUT_S + 0.5)
        if t.is_alive():
            self.edge_skips += 1
            return False
        if raised:
            raise raised[0]
        return bool(got and got[0])  # False: the lock was held that long (`sample` counted the skip)

    def begin_window(self, name: str, t_ns: int) -> None:
        self.edge_sample()
        self._open[name] = t_ns

    def end_window(self, name: str, t_ns: int) -> dict[str, Any]:
        t0 = self._open.pop(name, None)
        if t0 is None:  # a point cut short before its measured requests: no window was opened
            return {}
        self.windows[name] = (t0, t_ns)
        # a thread stuck in an NVML call holds the lock: then neither the edge sample nor the columns
        if not self.edge_sample() or not self._lock.acquire(timeout=EDGE_LOCK_TIMEOUT_S):
            return {"gpu_window_skipped": True}  # the GPUs were sampled, this window's columns are unknown
        try:
            return gpu_window_columns(self.series, t0, t_ns)
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
        note = pcie_wrap_note(self.interval_s, self.pcie_wrap_s())
        return [note] if note else []

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
