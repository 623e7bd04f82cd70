"""GPU inventory for the manifest and `harness gpu-info`, and matching GPUs to the hardware catalog.

`gpu_inventory()` never raises: without NVML it returns `{"available": False, "reason": ...}`.
Each per-GPU fact the device does not support is None, with the reason under `absent`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from harness.catalog import CatalogError
from harness.catalog.hardware import Device, devices
from harness.telemetry import nvml


def cuda_version(v: int) -> str:
    """NVML's CUDA driver version integer as text: 12040 → "12.4".

    major = v // 1000, minor = v % 1000 // 10.
    """
    return f"{v // 1000}.{v % 1000 // 10}"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class _Facts:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.absent: dict[str, str] = {}

    def get(self, key: str, fn: Callable[[], Any]) -> Any:
        try:
            v = fn()
        except nvml.NvmlError as e:
            self.data[key] = None
            self.absent[key] = str(e)
            return None
        self.data[key] = v
        return v


def _nvlink_active(h: Any) -> int:
    """Active NVLink links: links whose state is 1 (a link the GPU does not have, or cannot say, counts
    as not active; none answering at all is an error: no NVLink)."""
    nv = nvml.binding()
    active = answered = 0
    last: nvml.NvmlError | None = None
    for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            active += int(nvml.call("nvmlDeviceGetNvLinkState", h, link) == 1)
            answered += 1
        except nvml.NvmlError as e:
            last = e
    if not answered and last is not None:
        raise last
    return active


def _mig_devices(h: Any) -> list[dict[str, Any]]:
    """The MIG instances of a GPU in MIG mode: slot, UUID (`MIG-…`, as CUDA_VISIBLE_DEVICES names
    them) and memory; empty slots are left out."""
    out = []
    for slot in range(int(nvml.call("nvmlDeviceGetMaxMigDeviceCount", h))):
        try:
            m = nvml.call("nvmlDeviceGetMigDeviceHandleByIndex", h, slot)
        except nvml.NvmlError:
            continue  # no instance in this slot
        d: dict[str, Any] = {"slot": slot, "uuid": _text(nvml.call("nvmlDeviceGetUUID", m))}
        try:
            d["memory_total_bytes"] = int(nvml.call("nvmlDeviceGetMemoryInfo", m).total)
        except nvml.NvmlError as e:
            d["memory_total_bytes"] = None
            d["absent"] = {"memory_total_bytes": str(e)}
        out.append(d)
    return out


def mig_parents(inventory: dict[str, Any]) -> dict[str, int]:
    """MIG instance UUID → NVML index of the GPU it is part of, from `gpu_inventory()`."""
    return {
        str(m["uuid"]): int(g["index"])
        for g in inventory.get("gpus") or []
        for m in g.get("mig_devices") or []
        if m.get("uuid") and g.get("index") is not None
    }


# why an engine's GPUs cannot be told on a host of several GPU models, and what makes them known: said
# by the sampler (energy) and by the run's label (`rundevice.models_unknown_note`)
ORDER_CAUSE = (
    "CUDA numbers them fastest first (CUDA_DEVICE_ORDER is not PCI_BUS_ID) while NVML numbers them by PCI bus"
)
ORDER_FIX = "set CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPUs by UUID in CUDA_VISIBLE_DEVICES"
ORDER_NOTE = (
    f"this host's GPUs are of several models, and {ORDER_CAUSE}: the GPUs sampled may not be the engine's,"
    f" so energy_j and J/token are left blank ({ORDER_FIX})"
)


def cuda_order_unknown(
    inventory: dict[str, Any], visible: str | None, picked: list[int], order: str | None
) -> bool:
    """Whether the GPUs `picked` for an engine (NVML indices, `gpu_pick.engine_gpus`) may be others than it
    ran on: this host's GPUs are of several models (`inventory`'s names), and CUDA numbers them fastest
    first unless `order` (CUDA_DEVICE_ORDER) is PCI_BUS_ID, while NVML's indices follow the PCI bus; so
    a CUDA index in `visible`, or the first of them where it is unset, may name another GPU than NVML's
    of that number. Not where all GPUs were picked, or `visible` names them by UUID only."""
    gpus = [g for g in inventory.get("gpus") or [] if isinstance(g, dict)]
    names = {g.get("name") for g in gpus}
    if len(names) < 2 or (order or "").strip().upper() == "PCI_BUS_ID" or len(set(picked)) >= len(gpus):
        return False
    return visible is None or any(tok.strip().isdigit() for tok in visible.split(","))


def gpu_info(index: int) -> dict[str, Any]:
    """Facts about one GPU (NVML must be initialised)."""
    h = nvml.call("nvmlDeviceGetHandleByIndex", index)
    f = _Facts()
    f.data["index"] = index
    name = f.get("name", lambda: _text(nvml.call("nvmlDeviceGetName", h)))
    f.get("uuid", lambda: _text(nvml.call("nvmlDeviceGetUUID", h)))
    f.get("pci_bus_id", lambda: _text(nvml.call("nvmlDeviceGetPciInfo", h).busId))
    mem = f.get("memory_total_bytes", lambda: int(nvml.call("nvmlDeviceGetMemoryInfo", h).total))
    # what the driver reserves: version 2 of the memory call only
    f.get("memory_reserved_bytes", lambda: int(nvml.memory_info(h, v2=True).reserved))
    f.get(
        "compute_capability", lambda: ".".join(map(str, nvml.call("nvmlDeviceGetCudaComputeCapability", h)))
    )
    f.get("power_limit_w", lambda: nvml.call("nvmlDeviceGetEnforcedPowerLimit", h) / 1000)
    f.get("power_limit_default_w", lambda: nvml.call("nvmlDeviceGetPowerManagementDefaultLimit", h) / 1000)
    f.get("pcie_gen_max", lambda: nvml.call("nvmlDeviceGetMaxPcieLinkGeneration", h))
    f.get("pcie_gen_current", lambda: nvml.call("nvmlDeviceGetCurrPcieLinkGeneration", h))
    f.get("pcie_width_max", lambda: nvml.call("nvmlDeviceGetMaxPcieLinkWidth", h))
    f.get("pcie_width_current", lambda: nvml.call("nvmlDeviceGetCurrPcieLinkWidth", h))
    f.get("nvlink_active_links", lambda: _nvlink_active(h))
    mig = f.get("mig_mode", lambda: nvml.call("nvmlDeviceGetMigMode", h))
    if mig is not None:
        f.data["mig_mode"] = {"current": int(mig[0]), "pending": int(mig[1])}
        if int(mig[0]) == 1:
            f.get("mig_devices", lambda: _mig_devices(h))
    key = match_catalog(name, mem) if name and mem else None
    f.data["catalog_key"] = key
    f.data["catalog"] = catalog_entry(key) if key else None
    f.data["absent"] = f.absent
    return f.data


def gpu_inventory() -> dict[str, Any]:
    """Driver, CUDA driver version and per-GPU facts; `{"available": False, "reason": ...}` without NVML,
    with `no_gpu: True` where NVML says this host has no NVIDIA GPU an engine could use (no NVIDIA driver,
    none counted)."""
    try:
        n = nvml.init()
    except nvml.NvmlError as e:
        return {
            "available": False,
            "reason": str(e),
            **({"no_gpu": True} if isinstance(e, nvml.NvmlNoGpu) else {}),
        }
    try:
        out: dict[str, Any] = {"available": True, "count": n}
        for key, fn, conv in (
            ("driver_version", "nvmlSystemGetDriverVersion", _text),
            ("nvml_version", "nvmlSystemGetNVMLVersion", _text),
            ("cuda_driver_version", "nvmlSystemGetCudaDriverVersion", cuda_version),
        ):
            try:
                out[key] = conv(nvml.call(fn))
            except nvml.NvmlError as e:
                out[key] = None
                out.setdefault("absent", {})[key] = str(e)
        out["gpus"] = []
        for i in range(n):
            try:
                out["gpus"].append(gpu_info(i))
            except nvml.NvmlError as e:
                out["gpus"].append({"index": i, "error": str(e)})
        return out
    finally:
        nvml.shutdown()


# ---------------------------------------------------------------- catalog
def _catalog_devices() -> Mapping[str, Device]:
    """The hardware catalog's devices; none where it cannot be read (the inventory never raises)."""
    try:
        return devices()
    except CatalogError:
        return {}


def match_catalog(gpu_name: str, mem_bytes: int, catalog: Mapping[str, Device] | None = None) -> str | None:
    """The hardware-catalog key of the GPU NVML calls `gpu_name` with `mem_bytes` of memory, or None.

    A device matches when one of its `nvml_names` equals `gpu_name` (case and surrounding space ignored)
    and its memory (`Device.memory_bytes`: the total NVML reports for it where the catalog has one, else
    the datasheet's) is within 15 % of `mem_bytes`; where several match by name, the nearest in memory.
    `catalog`: the devices to match against (default: the hardware catalog).
    """
    want = gpu_name.strip().lower()
    devs = _catalog_devices() if catalog is None else catalog
    found = [d for d in devs.values() if any(n.strip().lower() == want for n in d.nvml_names)]

    def off(dev: Device) -> float:
        m = dev.memory_bytes
        return abs(m - mem_bytes) / m if m else math.inf

    best = min(found, key=off, default=None)
    return best.key if best is not None and off(best) <= 0.15 else None


def catalog_entry(key: str) -> dict[str, Any] | None:
    """The catalog's facts for `key` (without `key` and `nvml_names`), for the manifest."""
    dev = _catalog_devices().get(key)
    return (
        None
        if dev is None
        else dev.model_dump(mode="json", exclude={"key", "nvml_names"}, exclude_defaults=True)
    )
