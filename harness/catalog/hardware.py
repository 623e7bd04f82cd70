"""The hardware catalog (hardware.yaml): GPUs and server CPUs with datasheet numbers and sources."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from harness.catalog import CatalogError, load_yaml
from harness.field_errors import entry_problems

GIB = 1024**3


class Device(BaseModel):
    """One accelerator or CPU socket. Bandwidths in 1e9 B/s, compute in 1e12 FLOP/s (dense)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    kind: Literal["gpu", "cpu"]
    vendor: Literal["nvidia", "amd", "intel", "other"]
    name: str
    architecture: str
    form_factor: Literal["sxm", "pcie", "nvl", "oam", "superchip"] | None = None
    nvml_names: tuple[str, ...] = ()
    nvml_note: str | None = None
    cpu_match: tuple[str, ...] = ()
    memory_gib: float | None = None
    nvml_memory_mib: int | None = None
    memory_type: str
    bandwidth_gbs: float
    bf16_tflops: float | None = None
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    tdp_w: float
    nvlink_gbs: float | None = None
    nvlink_note: str | None = None
    host_link: str | None = None
    host_link_gbs: float | None = None
    source: str
    note: str | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> Device:
        if self.kind == "gpu":
            missing = [f for f in ("form_factor", "memory_gib", "bf16_tflops") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"a gpu entry needs {', '.join(missing)}")
        elif not self.cpu_match:
            raise ValueError("a cpu entry needs cpu_match (substrings of /proc/cpuinfo model name)")
        return self

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.bandwidth_gbs * 1e9

    @property
    def memory_bytes(self) -> float | None:
        """What the engines allocate from: the total NVML reports where the catalog has it (an "80GB" H100
        has 81,559 MiB, 79.6 GiB), else the datasheet's capacity read as GiB."""
        if self.nvml_memory_mib is not None:
            return self.nvml_memory_mib * 2**20
        return None if self.memory_gib is None else self.memory_gib * GIB

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak FLOP/s for the math a precision runs in: fp8 on parts with fp8 tensor cores;
        int8 (W8A8: int8 weights and activations) on int8 tensor cores, A100 included; else bf16
        (weight-only fp8/int4 kernels on Ampere dequantize to bf16). Any case: `FP8` is fp8."""
        precision = precision.lower()
        if precision == "int8" and self.int8_tops:
            return self.int8_tops * 1e12
        if precision in ("fp8", "int8") and self.fp8_tflops:
            return self.fp8_tflops * 1e12
        return None if self.bf16_tflops is None else self.bf16_tflops * 1e12


@cache
def devices() -> dict[str, Device]:
    out: dict[str, Device] = {}
    seen_names: dict[str, str] = {}
    for key, entry in load_yaml("hardware.yaml").items():
        if not isinstance(entry, dict):
            raise CatalogError(f"hardware.yaml: {key}: expected a mapping of fields")
        try:
            dev = Device(key=key, **entry)
        except ValidationError as e:
            raise CatalogError(entry_problems(f"hardware.yaml: {key}", e.errors()[:1])[0]) from None
        for n in dev.nvml_names:
            if n in seen_names:
                raise CatalogError(f"hardware.yaml: {key}.nvml_names: {n!r} already used by {seen_names[n]}")
            seen_names[n] = key
        out[key] = dev
    return out


def get_device(key: str) -> Device:
    d = devices()
    if key not in d:
        raise CatalogError(
            f"hardware {key!r} is not in the hardware catalog ({did_you_mean(key, d)}allowed: "
            f"{', '.join(sorted(d))})"
        )
    return d[key]


def did_you_mean(key: str, keys: Iterable[str]) -> str:
    """`did you mean 'h100-sxm' or 'h100-pcie'? ` for a key the catalog lacks: the keys it begins (a GPU
    named without its form factor), else the closest spellings; empty when none is close."""
    import difflib

    key, known = key.strip().lower(), sorted(keys)
    if not key:
        return ""
    close = [k for k in known if k.startswith(key)] or difflib.get_close_matches(key, known, n=2)
    return f"did you mean {' or '.join(repr(k) for k in close)}? " if close else ""


def gpus() -> dict[str, Device]:
    return {k: v for k, v in devices().items() if v.kind == "gpu"}


def match_nvml(name: str) -> Device | None:
    """The catalog GPU one of whose `nvml_names` equals `name` (case and surrounding space ignored)."""
    want = name.strip().lower()
    for dev in devices().values():
        if any(n.lower() == want for n in dev.nvml_names):
            return dev
    return None


def match_cpu(model_name: str | None) -> Device | None:
    """The catalog CPU whose `cpu_match` substring occurs in a /proc/cpuinfo model name, or None."""
    if not model_name:
        return None
    for dev in devices().values():
        if dev.kind == "cpu" and any(m in model_name for m in dev.cpu_match):
            return dev
    return None
