"""NVML (the nvidia-ml-py binding, module `pynvml`) behind one boundary.

Every NVML call goes through `call()`, which turns `pynvml.NVMLError` into this module's typed
exceptions: `NvmlUnavailable` (binding not installed, no libnvidia-ml, driver not loaded, no GPU),
`NvmlNoGpu` (an NvmlUnavailable that says this host has no usable NVIDIA GPU), `NvmlNotSupported`
(the device or driver does not support a function or field), `NvmlGpuLost`, and `NvmlError` for the
rest. Nothing else in the harness touches pynvml.
"""

from __future__ import annotations

import glob
import threading
from typing import Any

from harness.extras import pip_install


class NvmlError(Exception):
    """An NVML call failed; `code` is NVML's return code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class NvmlUnavailable(NvmlError):
    """No NVML here: binding not installed, no libnvidia-ml, driver not loaded, or no GPU."""


class NvmlNoGpu(NvmlUnavailable):
    """This host has no NVIDIA GPU an engine could use: no libnvidia-ml (no NVIDIA driver), the driver
    not loaded, or NVML counts no GPU. (Another vendor's GPU NVML cannot see; a binding not installed
    says nothing about the GPUs.)"""


class NvmlNotSupported(NvmlError):
    """This device or driver does not support the function or field."""


class NvmlGpuLost(NvmlError):
    """The GPU fell off the bus or needs a reset."""


def binding() -> Any:
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable(f"nvidia-ml-py is not installed ({pip_install('gpu')})") from None
    return pynvml


def convert(e: Exception, what: str = "NVML") -> NvmlError:
    """The typed exception for a `pynvml.NVMLError` (by its return code)."""
    nv = binding()
    code = getattr(e, "value", None)
    msg = f"{what}: {e} (NVML return code {code})"
    by_name = {
        "NVML_ERROR_LIBRARY_NOT_FOUND": NvmlNoGpu,
        "NVML_ERROR_DRIVER_NOT_LOADED": NvmlNoGpu,
        "NVML_ERROR_LIB_RM_VERSION_MISMATCH": NvmlUnavailable,
        "NVML_ERROR_NOT_SUPPORTED": NvmlNotSupported,
        "NVML_ERROR_FUNCTION_NOT_FOUND": NvmlNotSupported,
        # a versioned struct (e.g. nvmlMemory_v2) that this driver does not know
        "NVML_ERROR_ARGUMENT_VERSION_MISMATCH": NvmlNotSupported,
        "NVML_ERROR_DEPRECATED": NvmlNotSupported,  # a call newer drivers no longer serve
        "NVML_ERROR_GPU_NOT_FOUND": NvmlNoGpu,
        "NVML_ERROR_GPU_IS_LOST": NvmlGpuLost,
        "NVML_ERROR_RESET_REQUIRED": NvmlGpuLost,
    }
    if code == getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", None):
        if nodes := device_files():
            # GPUs handed to this container without the driver's "utility" capability, which brings
            # libnvidia-ml: CUDA can use them; which they are, NVML cannot say
            return NvmlUnavailable(
                f"{msg}: libnvidia-ml.so.1 cannot be loaded, though NVIDIA device files are here "
                f"({', '.join(nodes[:2])}): in a container, add the driver's utility capability "
                "(NVIDIA_DRIVER_CAPABILITIES=compute,utility, or all)",
                code,
            )
        msg += ": libnvidia-ml.so.1 cannot be loaded (no NVIDIA driver on this host)"
    for name, cls in by_name.items():
        if hasattr(nv, name) and code == getattr(nv, name):
            return cls(msg, code)
    return NvmlError(msg, code)


# a GPU's device file (/dev/nvidia0 ...; not nvidiactl or nvidia-uvm): present where a GPU is handed in
DEVICE_FILES = "/dev/nvidia[0-9]*"


def device_files() -> list[str]:
    return sorted(glob.glob(DEVICE_FILES))


def call(name: str, *args: Any) -> Any:
    """`pynvml.<name>(*args)` with NVML errors turned into this module's exceptions."""
    nv = binding()
    fn = getattr(nv, name, None)
    if fn is None:
        raise NvmlNotSupported(f"{name}: not in this nvidia-ml-py version")
    try:
        return fn(*args)
    except nv.NVMLError as e:
        raise convert(e, name) from None


_lock = threading.Lock()
_refs = 0


def init() -> int:
    """Initialise NVML (reference counted); returns the number of GPUs. Raises NvmlUnavailable."""
    global _refs
    with _lock:
        try:
            call("nvmlInit")
        except NvmlError as e:
            if type(e) is NvmlError:  # e.g. no permission on /dev/nvidia*: no NVML for us either
                raise NvmlUnavailable(str(e), e.code) from None
            raise
        _refs += 1
    try:
        n = int(call("nvmlDeviceGetCount"))
    except NvmlError:
        shutdown()
        raise
    if n == 0:
        shutdown()
        raise NvmlNoGpu("NVML loaded but sees no GPU (nvmlDeviceGetCount = 0)")
    return n


def shutdown() -> None:
    global _refs
    with _lock:
        if _refs > 0:
            _refs -= 1
            try:
                call("nvmlShutdown")
            except NvmlError:
                pass


def probe() -> int:
    """Number of GPUs NVML sees (raises NvmlUnavailable with the reason when none can be used)."""
    n = init()
    shutdown()
    return n


def field_value(fv: Any) -> float | int:
    """The value of one `c_nvmlFieldValue_t`, by its valueType; raises on its nvmlReturn."""
    return getattr(fv.value, _value_attr(fv))


def field_bits(fv: Any) -> int:
    """Width of a field's value: 32 for the unsigned/signed int types, else 64 (a 32-bit byte
    counter wraps within seconds at PCIe rates)."""
    return 32 if _value_attr(fv) in ("uiVal", "siVal") else 64


def _value_attr(fv: Any) -> str:
    nv = binding()
    if fv.nvmlReturn != nv.NVML_SUCCESS:
        raise convert(nv.NVMLError(fv.nvmlReturn), f"field {fv.fieldId}")
    attr = {
        nv.NVML_VALUE_TYPE_DOUBLE: "dVal",
        nv.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
        nv.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
        nv.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
        nv.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
        nv.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
    }.get(fv.valueType)
    if attr is None:
        raise NvmlNotSupported(f"field {fv.fieldId}: unknown value type {fv.valueType}")
    return attr
