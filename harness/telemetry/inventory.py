"""GPU inventory for the manifest and `harness gpu-info`, and matching GPUs to the hardware catalog.

`gpu_inventory()` never raises: without NVML it returns `{"available": False, "reason": ...}`.
Each per-GPU fact the device does not support is None, with the reason under `absent`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.telemetry import nvml

CATALOG = Path(__file__).resolve().parent.parent / "catalog" / "hardware.yaml"


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


def gpu_info(index: int, catalog: Path | None = None) -> dict[str, Any]:
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
    key = match_catalog(name, mem, catalog) if name and mem else None
    f.data["catalog_key"] = key
    f.data["catalog"] = catalog_entry(key, catalog) if key else None
    f.data["absent"] = f.absent
    return f.data


def gpu_inventory(catalog: Path | None = None) -> dict[str, Any]:
    """Driver, CUDA driver version and per-GPU facts; `{"available": False, "reason": ...}` without NVML."""
    try:
        n = nvml.init()
    except nvml.NvmlError as e:
        return {"available": False, "reason": str(e)}
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
                out["gpus"].append(gpu_info(i, catalog))
            except nvml.NvmlError as e:
                out["gpus"].append({"index": i, "error": str(e)})
        return out
    finally:
        nvml.shutdown()


# ---------------------------------------------------------------- catalog
def _devices(catalog: Path | None) -> dict[str, dict[str, Any]]:
    path = catalog or CATALOG
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, dict):
        return {}
    for section in ("gpus", "devices", "hardware"):
        if isinstance(data.get(section), dict):
            data = data[section]
            break
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def match_catalog(gpu_name: str, mem_bytes: int, catalog: Path | None = None) -> str | None:
    """The hardware-catalog key of the GPU NVML calls `gpu_name` with `mem_bytes` of memory, or None.

    The catalog (harness/catalog/hardware.yaml) maps keys to devices; a device matches when one of
    its `nvml_names` equals `gpu_name` (case and surrounding space ignored). Where several match
    (one NVML name for two memory sizes), the one whose memory is closest to mem_bytes wins (the total
    NVML reports for it, `nvml_memory_mib`, where the catalog has one, else the datasheet's
    `memory_gib`, a little more), and it must be within 15 % of it. No catalog file, no name match, or
    no memory match: None.
    """
    want = gpu_name.strip().lower()
    found: list[tuple[str, dict[str, Any]]] = []
    for key, dev in _devices(catalog).items():
        names = dev.get("nvml_names") or []
        if isinstance(names, str):
            names = [names]
        if any(isinstance(n, str) and n.strip().lower() == want for n in names):
            found.append((key, dev))
    if not found:
        return None
    gib = mem_bytes / 2**30

    def mem_gib(dev: dict[str, Any]) -> float | None:
        for field, scale in (("nvml_memory_mib", 1 / 1024), ("memory_gib", 1.0)):
            m = dev.get(field)
            if isinstance(m, int | float) and m > 0:
                return float(m) * scale
        return None

    def off(dev: dict[str, Any]) -> float:
        m = mem_gib(dev)
        return abs(m - gib) / m if m is not None else float("inf")

    with_mem = [(k, d) for k, d in found if mem_gib(d) is not None]
    if not with_mem:
        return found[0][0] if len(found) == 1 else None
    key, dev = min(with_mem, key=lambda kd: off(kd[1]))
    return key if off(dev) <= 0.15 else None


def catalog_entry(key: str, catalog: Path | None = None) -> dict[str, Any] | None:
    """The catalog's facts for `key` (without `nvml_names`)."""
    dev = _devices(catalog).get(key)
    return None if dev is None else {k: v for k, v in dev.items() if k != "nvml_names"}
