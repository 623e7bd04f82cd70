"""Record NVML traces on a real GPU; replay them through the sampler API where there is none.

`record_trace(out, seconds)` runs the live `NvmlSampler` for a while and writes its trace (format:
see `harness.telemetry.trace`); every GPU run also leaves them in its run directory
(`telemetry-nvml-v<N>[-a<K>].jsonl.gz`, one per engine started). `ReplayNvmlSampler(trace)` is a sampler with
the live one's API whose
samples come from such a file: trace time 0 (plus `offset_s`) is the moment `start()` is called, so
windows opened during a run cover the same stretch of the trace, and the window columns, J/token
and report columns come out of the very code the live sampler uses. `harness run` uses it instead
of live NVML when the environment variable `HARNESS_NVML_REPLAY` names a trace.

`replay_windows(trace)` recomputes the columns of the windows stored in a trace's header.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.telemetry.base import window_start
from harness.telemetry.trace import GpuSeries, TraceError, gpu_window_columns, read_trace

__all__ = ["ENV", "ReplayNvmlSampler", "TraceError", "record_trace", "replay_windows"]

ENV = "HARNESS_NVML_REPLAY"


class ReplayNvmlSampler:
    """Plays a recorded NVML trace back with the `Sampler` API (name `nvml`, same columns)."""

    name = "nvml"

    def __init__(self, trace: Path, offset_s: float = 0.0) -> None:
        self.trace = Path(trace)
        self.offset_s = offset_s
        self.header, self._rel = read_trace(self.trace)  # raises TraceError with file and line
        self.series: list[GpuSeries] = []
        self._open: dict[str, int] = {}
        self.windows: dict[str, tuple[int, int]] = {}
        self.origin_ns = 0

    @property
    def duration_s(self) -> float:
        ends = [s.t_ns[-1] for s in self._rel if s.t_ns]
        return max(ends) / 1e9 if ends else 0.0

    def start(self) -> None:
        self.origin_ns = time.perf_counter_ns() - int(self.offset_s * 1e9)
        self.series = []
        for s in self._rel:
            shifted = GpuSeries(s.index, [t + self.origin_ns for t in s.t_ns], s.cols)
            self.series.append(shifted)

    def begin_window(self, name: str, t_ns: int) -> None:
        self._open[name] = t_ns

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        opened = self._open.pop(name, None)
        if opened is None:  # a point cut short before its measured requests: no window was opened
            return {}
        t0 = window_start(opened, start_ns)
        self.windows[name] = (t0, t_ns)
        return gpu_window_columns(self.series, t0, t_ns)

    def stop(self) -> None:
        return None

    def live(self) -> str:
        return "GPU (replayed trace)"

    def manifest(self) -> dict[str, Any]:
        return {
            "replayed_from": str(self.trace),
            "offset_s": self.offset_s,
            "trace_duration_s": round(self.duration_s, 3),
            "trace_recorded_utc": self.header.get("recorded_utc"),
            "power_source": self.header.get("power_source"),
            "energy_source": self.header.get("energy_source"),
            "memory_source": self.header.get("memory_source"),
            "inventory": self.header.get("inventory"),
            "windows_s": {
                k: [round((a - self.origin_ns) / 1e9, 3), round((b - self.origin_ns) / 1e9, 3)]
                for k, (a, b) in self.windows.items()
            },
        }

    def write(self, run_dir: Path, tag: str = "") -> str | None:
        return None  # the trace itself is the raw data; the manifest names it


def replay_windows(trace: Path) -> dict[str, dict[str, Any]]:
    """Window columns of every window stored in the trace header, recomputed from its samples."""
    return trace_windows(*read_trace(Path(trace)))


def trace_windows(head: dict[str, Any], series: list[GpuSeries]) -> dict[str, dict[str, Any]]:
    """Window columns of the windows a trace header names, from that trace's series."""
    return {
        name: gpu_window_columns(series, int(t0), int(t1))
        for name, (t0, t1) in (head.get("windows") or {}).items()
    }


def record_trace(out: Path, seconds: float, interval_s: float = 0.1) -> Path:
    """Sample every GPU for `seconds` with the live sampler and write the trace to `out`.

    The whole recording is stored as one window named `record`. Raises nvml.NvmlUnavailable
    when there is no GPU to record.
    """
    from harness.telemetry.nvml import NvmlSampler

    s = NvmlSampler(interval_s)
    s.start()
    try:
        t0 = time.perf_counter_ns()
        s.begin_window("record", t0)
        time.sleep(seconds)
        s.end_window("record", time.perf_counter_ns())
    finally:
        s.stop()
    return out.parent / s.write(out.parent, filename=out.name)
