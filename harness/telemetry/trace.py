"""GPU sample series, their window columns, and the NVML trace file format.

Trace file (`telemetry-nvml-v<N>[-a<K>].jsonl.gz` in a run directory, or any file
`harness gpu-info --record` writes): gzip-compressed JSON lines.

- line 1, the header: `{"format": "llm-harness/nvml-trace", "version": 1, "interval_s": 0.1,
  "recorded_utc": ..., "inventory": {...as in the manifest...}, "sampled_gpus": [0], "gpu_selection": ...,
  "power_source": {"0": "field:POWER_INSTANT"}, "energy_source": {...}, "memory_source": {...},
  "absent": {"0": {...}}, "fields": [...], "windows": {"v0-c1": [t0_ns, t1_ns], ...}}`
- every other line, one sample of one GPU: `{"gpu": 0, "t_ns": 123, "energy_mj": ..., "power_w": ...}`
  with the names in `FIELDS`; a field that could not be read is null or left out.

`t_ns` and `windows` are nanoseconds since the first sample (the live sampler's `perf_counter_ns`
minus that origin). `energy_mj` is NVML's total energy counter (mJ since driver load); `power_w` the
source named in `power_source` (`field:POWER_INSTANT`, else `nvmlDeviceGetPowerUsage`, which is a
1 s average on H100 and near-instantaneous on A100); `power_avg_w` NVML's `POWER_AVERAGE` field;
`clocks_event_reasons` the raw bit mask of `nvmlDeviceGetCurrentClocksEventReasons`; `pcie_*_bytes`
cumulative PCIe byte counters (field values; 32-bit ones unwrapped by the sampler), `pcie_*_kb_s` the
throughput NVML measured over ~20 ms, once a second, where only that exists (drivers before R555): those
readings are samples of their own, with the other fields left out.
"""

from __future__ import annotations

import bisect
import gzip
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.fileio import parse_problem, replaced_whole
from harness.telemetry.window import (
    NS,
    clip_series,
    counter_increase,
    edge_values,
    held_seconds,
    integrate,
    time_weighted_mean,
    window_values,
)

FORMAT = "llm-harness/nvml-trace"
VERSION = 1
FIELDS = (
    "energy_mj",
    "power_w",
    "power_avg_w",
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_bytes",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "temp_c",
    "clocks_event_reasons",
    "pcie_tx_bytes",
    "pcie_rx_bytes",
    "pcie_tx_kb_s",
    "pcie_rx_kb_s",
)

# nvmlClocksEventReason* bits (nvml.h; board_limit and reliability only from the older
# nvmlDeviceGetCurrentClocksThrottleReasons); the throttling ones slow the GPU below what it was asked for
CLOCKS_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x200 | 0x400
NOT_THROTTLE = 0x1 | 0x2 | 0x10 | 0x100  # idle, application clocks, sync boost, display: not slowdowns


def decode_reasons(mask: int) -> list[str]:
    """Names of the bits set in a clocks-event-reasons mask (unknown bits as hex)."""
    names = [n for bit, n in CLOCKS_EVENT_REASONS.items() if mask & bit]
    rest = mask & ~sum(CLOCKS_EVENT_REASONS)
    if rest:
        names.append(hex(rest))
    return names


@dataclass
class GpuSeries:
    """Samples of one GPU as parallel columns (t_ns plus one list per field)."""

    index: int
    t_ns: list[int] = field(default_factory=list)
    cols: dict[str, list[Any]] = field(default_factory=lambda: {f: [] for f in FIELDS})

    def append(self, t_ns: int, sample: dict[str, Any]) -> None:
        """Add a sample, kept in time order (a slow reading may come in after a later one)."""
        if not self.t_ns or t_ns >= self.t_ns[-1]:
            self.t_ns.append(t_ns)
            for f in FIELDS:
                self.cols[f].append(sample.get(f))
            return
        i = bisect.bisect_right(self.t_ns, t_ns)
        self.t_ns.insert(i, t_ns)
        for f in FIELDS:
            self.cols[f].insert(i, sample.get(f))

    def last(self, lookback: int = 8) -> dict[str, Any]:
        """Each field's latest value among the last `lookback` samples (None if none has it)."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            col = self.cols[f]
            out[f] = next((x for x in reversed(col[-lookback:]) if x is not None), None)
        return out if self.t_ns else {}

    def __len__(self) -> int:
        return len(self.t_ns)

    def copy(self) -> GpuSeries:
        """A copy that later appends do not change (to write while the sampler goes on)."""
        return GpuSeries(self.index, list(self.t_ns), {f: list(v) for f, v in self.cols.items()})


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


# samples this long before and after a window are enough for its edges (interpolation, counters, the
# once-a-second PCIe readings); the rest of an hours-long series is not scanned for it
WINDOW_SLACK_NS = 30_000_000_000


def gpu_window(s: GpuSeries, t0: int, t1: int) -> dict[str, Any]:
    """One GPU's statistics over [t0, t1] (see `gpu_window_columns` for the definitions)."""
    lo = bisect.bisect_left(s.t_ns, t0 - WINDOW_SLACK_NS)
    hi = bisect.bisect_right(s.t_ns, t1 + WINDOW_SLACK_NS)
    t = s.t_ns[lo:hi]
    c = {k: v[lo:hi] for k, v in s.cols.items()}
    energy_mj = counter_increase(t, c["energy_mj"], t0, t1)
    power_j = integrate(t, c["power_w"], t0, t1)
    if energy_mj == 0 and power_j:
        # a counter that did not move under power drawn: it updates every 20-100 ms, and a window that
        # short fell between two updates (0 J would read as 0 J/token)
        energy_mj = None
    energy_j: float | None
    if energy_mj is not None:
        energy_j, source = energy_mj / 1000.0, "counter"
    else:
        energy_j, source = power_j, "power_integral"
        if energy_j is None:
            source = "none"
    dur_s = (t1 - t0) / NS
    out: dict[str, Any] = {"energy_j": energy_j, "energy_source": source}
    out["power_integral_j"] = power_j
    out["power_w_mean"] = time_weighted_mean(t, c["power_w"], t0, t1)
    pw = edge_values(t, c["power_w"], t0, t1)
    out["power_w_max"] = max(pw) if pw else None
    for name in ("util_gpu_pct", "util_mem_pct", "sm_clock_mhz"):
        out[name + "_mean"] = time_weighted_mean(t, c[name], t0, t1)
    sm = edge_values(t, c["sm_clock_mhz"], t0, t1)
    out["sm_clock_mhz_min"] = min(sm) if sm else None
    for name in ("mem_used_bytes", "temp_c"):
        vs = edge_values(t, c[name], t0, t1)
        out[name + "_max"] = max(vs) if vs else None
    # samples without a mask (PCIe-only readings) neither set nor clear a reason: left out
    mt = [(ts, int(m)) for ts, m in zip(t, c["clocks_event_reasons"], strict=True) if m is not None]
    flags = [bool(m & THROTTLE_MASK) for _, m in mt]
    out["throttle_s"] = held_seconds([ts for ts, _ in mt], flags, t0, t1) if mt else None
    # the reasons of the samples inside the window and of the one before it, whose state held into it
    before = [m for ts, m in mt if ts <= t0]
    seen = before[-1] if before else 0
    for ts, m in mt:
        if t0 <= ts <= t1:
            seen |= m
    out["throttle_reasons"] = decode_reasons(seen & ~NOT_THROTTLE)  # unknown bits shown as hex
    for d in ("tx", "rx"):
        inc = counter_increase(t, c[f"pcie_{d}_bytes"], t0, t1)
        if inc is not None and dur_s > 0:
            out[f"pcie_{d}_bytes_s"] = inc / dur_s
        else:  # readings once a second: their mean within the window (none in a window under ~1 s)
            kb = _mean(window_values(t, c[f"pcie_{d}_kb_s"], t0, t1))
            out[f"pcie_{d}_bytes_s"] = kb * 1000.0 if kb is not None else None
    out["samples"] = len(clip_series(*_present(t, c["power_w"]), t0, t1)[0])
    return out


def _present(t: list[int], v: list[Any]) -> tuple[list[int], list[float]]:
    pts = [(a, float(b)) for a, b in zip(t, v, strict=True) if b is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _sum(xs: list[Any]) -> float | None:
    return None if not xs or any(x is None for x in xs) else float(sum(xs))


def gpu_window_columns(series: list[GpuSeries], t0: int, t1: int) -> dict[str, Any]:
    """Point-row columns for all GPUs over the window [t0, t1] (perf_counter_ns).

    - `gpu_energy_j`: Σ over GPUs of the energy counter increase (mJ / 1000), else of ∫ power dt
      (trapezoid) where a GPU has no counter, or one that did not move while power was drawn (a window
      between two of its updates); `gpu_energy_source` says which (`counter`,
      `power_integral`, `mixed`). None if any GPU has neither.
    - `gpu_power_integral_j`: Σ over GPUs of ∫ power dt, next to the counter as a cross-check (on
      GPUs whose power reading is a 1 s average it lags the counter at load steps).
    - `gpu_power_w_mean`: Σ over GPUs of the time-weighted mean power; `gpu_power_w_max`: the highest
      single-GPU power sample in the window.
    - `gpu_util_pct_mean`, `gpu_mem_util_pct_mean`, `gpu_sm_clock_mhz_mean`: mean over GPUs of the
      time-weighted means; `gpu_sm_clock_mhz_min`: lowest SM clock sampled on any GPU.
    - `gpu_mem_used_bytes_max`, `gpu_temp_c_max`: highest single-GPU sample.
    - `gpu_throttle_s`: the longest time any GPU spent with a throttling clocks-event reason set
      (power cap, thermal, HW slowdown, power brake); `gpu_throttle_reasons`: names seen on any GPU.
    - `gpu_pcie_tx_bytes_s` / `gpu_pcie_rx_bytes_s`: Σ over GPUs of the mean PCIe byte rate.
    - `gpu_count`, `gpu_samples` (samples within the window, edges included).
    """
    if not series:
        return {}
    per = [gpu_window(s, t0, t1) for s in series]

    def vals(k: str) -> list[Any]:
        return [p[k] for p in per]

    def present(k: str) -> list[float]:
        return [p[k] for p in per if p[k] is not None]

    sources = set(vals("energy_source"))
    cols: dict[str, Any] = {
        "gpu_count": len(series),
        "gpu_samples": sum(vals("samples")),
        "gpu_energy_j": _sum(vals("energy_j")),
        "gpu_energy_source": sources.pop() if len(sources) == 1 else "mixed",
        "gpu_power_integral_j": _sum(vals("power_integral_j")),
        "gpu_power_w_mean": _sum(vals("power_w_mean")),
        "gpu_power_w_max": max(present("power_w_max"), default=None),
        "gpu_util_pct_mean": _mean(present("util_gpu_pct_mean")),
        "gpu_mem_util_pct_mean": _mean(present("util_mem_pct_mean")),
        "gpu_sm_clock_mhz_mean": _mean(present("sm_clock_mhz_mean")),
        "gpu_sm_clock_mhz_min": min(present("sm_clock_mhz_min"), default=None),
        "gpu_mem_used_bytes_max": max(present("mem_used_bytes_max"), default=None),
        "gpu_temp_c_max": max(present("temp_c_max"), default=None),
        # unknown on any GPU: unknown, as energy is (another GPU's time would pass for the longest)
        "gpu_throttle_s": None if None in vals("throttle_s") else max(present("throttle_s"), default=None),
        "gpu_throttle_reasons": ",".join(sorted({n for p in per for n in p["throttle_reasons"]})),
        "gpu_pcie_tx_bytes_s": _sum(vals("pcie_tx_bytes_s")),
        "gpu_pcie_rx_bytes_s": _sum(vals("pcie_rx_bytes_s")),
    }
    if cols["gpu_energy_j"] is None:
        cols["gpu_energy_source"] = "none"
    return cols


# ---------------------------------------------------------------- files
class TraceError(Exception):
    """A trace file that cannot be read; the message names the file and the problem."""


def write_trace(
    path: Path, header: dict[str, Any], series: list[GpuSeries], windows: dict[str, tuple[int, int]]
) -> Path:
    """Write `series` (absolute perf_counter_ns) as a trace, times relative to the first sample."""
    starts = [s.t_ns[0] for s in series if s.t_ns]
    origin = min(starts) if starts else 0
    head = {"format": FORMAT, "version": VERSION, **header, "fields": list(FIELDS)}
    head["windows"] = {k: [a - origin, b - origin] for k, (a, b) in windows.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: json.dumps makes one per call
    by_index = {s.index: s for s in series}
    rows = [(t, s.index, i) for s in series for i, t in enumerate(s.t_ns)]
    # level 6: a third of level 9's time for a few % more bytes (the runner rewrites traces during a run)
    with replaced_whole(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as f:
        f.write(json.dumps(head, default=str) + "\n")
        for t, gi, i in sorted(rows):
            s = by_index[gi]
            row: dict[str, Any] = {"gpu": gi, "t_ns": t - origin}
            row.update({k: s.cols[k][i] for k in FIELDS if s.cols[k][i] is not None})
            f.write(encode(row) + "\n")
    return path


def _number(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _header_problem(head: dict[str, Any]) -> str | None:
    """What is wrong with the parts of a trace header that are read back (windows, inventory)."""
    windows = head.get("windows")
    if windows is not None:
        if not isinstance(windows, dict):
            return "windows: expected a mapping of name to [t0_ns, t1_ns]"
        for name, span in windows.items():
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(t, int) for t in span)):
                return f"windows: {name}: {span!r} is not [t0_ns, t1_ns]"
    inventory = head.get("inventory")
    if inventory is not None and not (
        isinstance(inventory, dict) and isinstance(inventory.get("gpus", []), list)
    ):
        return "inventory: expected a mapping with a list of gpus"
    return None


def read_trace(path: Path) -> tuple[dict[str, Any], list[GpuSeries]]:
    """Header and per-GPU series (times relative to the first sample) of a trace file."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TraceError(f"{path}: cannot read trace: {e}") from None
    if not lines:
        raise TraceError(f"{path}: empty trace")
    try:
        head = json.loads(lines[0])
    except (ValueError, RecursionError) as e:  # JSONDecodeError, or one of Python's own limits
        raise TraceError(f"{path}: line 1: not JSON: {parse_problem(e)}") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise TraceError(f"{path}: line 1: format: not an NVML trace (expected {FORMAT!r})")
    if head.get("version") != VERSION:
        raise TraceError(f"{path}: line 1: version: {head.get('version')!r} (allowed: {VERSION})")
    if problem := _header_problem(head):
        raise TraceError(f"{path}: line 1: {problem}")
    by_gpu: dict[int, GpuSeries] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            gi, t = int(row["gpu"]), int(row["t_ns"])
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as e:
            raise TraceError(f"{path}: line {n}: bad sample ({type(e).__name__}: {e})") from None
        bad = next((f for f in FIELDS if not _number(row.get(f))), None)
        if bad is not None:
            raise TraceError(f"{path}: line {n}: {bad}: {row[bad]!r} is not a number")
        s = by_gpu.setdefault(gi, GpuSeries(gi))
        if s.t_ns and t < s.t_ns[-1]:
            raise TraceError(f"{path}: line {n}: t_ns goes backwards for gpu {gi}")
        s.append(t, row)
    return head, [by_gpu[k] for k in sorted(by_gpu)]
