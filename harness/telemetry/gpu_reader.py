"""One GPU read through NVML: what it supports, probed once (`GpuReader.probe`), then each sample's
energy counter, power, utilization, memory, clocks, temperature, clocks-event reasons and PCIe bytes."""

from __future__ import annotations

import time
from typing import Any

from harness.telemetry.nvml_api import (
    NvmlError,
    NvmlNotSupported,
    binding,
    call,
    field_bits,
    field_value,
)
from harness.telemetry.window import unwrap_reading

COUNTER_FIELDS = ("energy_mj", "pcie_tx_bytes", "pcie_rx_bytes")
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
