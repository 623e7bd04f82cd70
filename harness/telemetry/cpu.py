"""CPU telemetry: the engine's process tree (CPU time, RSS), the host, and RAPL package energy.

Sampled on a thread every `interval_s` and at every window edge. Window columns:

- `engine_cpu_pct_mean`: Δ CPU seconds of the engine process tree / window seconds × 100
  (100 = one core busy; the tree's processes add up). A child that exits is counted through its
  parent's reaped-children times (less what was already counted of it), so children that come and go
  between two listings of the tree count too (`tree_cpu_increase`); the tree is listed every 2 s and
  at the end of every window.
- `engine_rss_bytes_max`: highest Σ RSS of the tree sampled in the window.
- `host_cpu_pct_mean`: Δ busy / Δ total of the host's CPU time × 100 (all cores; 100 = all busy), busy
  being neither idle, I/O wait nor steal.
- `host_busy_cores_mean`: Δ busy / window seconds, in cores (2.0 = two cores busy); less the engine's
  and the client's, what other processes used (`flags.other_busy_cores`; warned about over half a
  core on a host over 90 % busy).
- `host_cpu_steal_pct_mean`: Δ steal / Δ total × 100, the share of a virtual machine's CPU time its
  hypervisor gave to others (Linux; absent where the kernel does not report it). A shared cloud VM can
  lose tens of % this way, and everything CPU-bound in the point (a CPU engine, offload, the client's
  timestamps) reads slower than on the same machine alone.
- `host_mem_used_bytes_max`: highest total − available memory sampled in the window.
- `cpu_energy_j`, `cpu_power_w_mean`: Σ over RAPL package domains of the `energy_uj` increase
  (wraps at `max_energy_range_uj` handled) / 1e6, and that over the window seconds.
  Absent, with the reason in the manifest, where /sys/class/powercap is missing or not readable.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.fileio import replaced_whole
from harness.telemetry.base import sampler_overhead, telemetry_file, window_start
from harness.telemetry.window import NS, counter_increase, edge_values

POWERCAP = Path("/sys/class/powercap")
# CPU time and RAPL energy are counters read at every window edge, so the columns do not need fast
# sampling; in between, 2 Hz catches RSS/memory peaks at a fraction of the cost of 10 Hz
MIN_INTERVAL_S = 0.5


@dataclass
class RaplDomain:
    name: str
    path: Path
    max_range_uj: int | None

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def find_rapl(root: Path = POWERCAP) -> tuple[list[RaplDomain], str | None]:
    """Readable RAPL package domains under `root`, or none and the reason why."""
    if not root.is_dir():
        return [], f"{root} does not exist (no powercap/RAPL driver on this host or in this container)"
    doms: list[RaplDomain] = []
    problems: list[str] = []
    for d in sorted(root.glob("intel-rapl:*")):
        if d.name.count(":") != 1:  # sub-domains (core, uncore, dram) are inside the package
            continue
        try:
            name = (d / "name").read_text().strip()
        except OSError as e:
            problems.append(f"{d / 'name'}: {e.strerror}")
            continue
        if not name.startswith("package"):
            continue
        try:
            rng: int | None = int((d / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            rng = None
        dom = RaplDomain(name, d, rng)
        try:
            dom.read_uj()
        except PermissionError:
            problems.append(
                f"{d / 'energy_uj'}: permission denied (root only on kernels patched for CVE-2020-8694)"
            )
            continue
        except (OSError, ValueError) as e:
            problems.append(f"{d / 'energy_uj'}: {e}")
            continue
        doms.append(dom)
    if doms:
        return doms, None
    return [], "; ".join(problems) or f"no intel-rapl package domain under {root}"


ProcKey = tuple[int, float]  # (pid, create_time): a pid reused later is another process


@dataclass(frozen=True)
class ProcCpu:
    """One process of the engine tree at a sample: its own CPU seconds (user + system), those of its
    children it has reaped (children_user + children_system), and its parent's pid."""

    own_s: float
    reaped_s: float
    ppid: int


def tree_cpu_increase(
    prev: dict[ProcKey, ProcCpu], now: dict[ProcKey, ProcCpu], first: bool = False, debt_s: float = 0.0
) -> tuple[float, float]:
    """CPU seconds the process tree used between two samples, and the debt to carry: (increase, debt).

    Processes in both: their own and reaped-children increases. New ones: all of both (a process born
    since the last sample used all of it since; on the first sample nothing counts, it is the origin).
    A child gone since whose parent is still in the tree was reaped by it: the parent's reaped-children
    time grew by all of the child's, of which what `prev` showed was counted already, so that is taken
    off, so children too short-lived to be listed still count once. A parent that has not been seen to
    reap yet (the jump comes later) would make the increase negative: it is carried as `debt_s` into
    the next samples, so the tree's CPU seconds never go down."""
    if first:
        return 0.0, 0.0
    inc = 0.0
    for key, p in now.items():
        q = prev.get(key)
        inc += (p.own_s - q.own_s) + (p.reaped_s - q.reaped_s) if q else p.own_s + p.reaped_s
    alive = {pid for pid, _ in now}
    gone = {key[0]: q for key, q in prev.items() if key not in now}
    for q in gone.values():
        # reaped by a live process of the tree, directly or through parents gone too (whose reaped
        # times held it when they were reaped in turn): what was counted of it is in that jump again
        parent, seen = q.ppid, set()
        while parent in gone and parent not in seen:
            seen.add(parent)
            parent = gone[parent].ppid
        if parent in alive:
            inc -= q.own_s + q.reaped_s
    inc -= debt_s
    return (inc, 0.0) if inc >= 0 else (0.0, -inc)


def host_cpu_seconds(ht: Any, last: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float, float | None]:
    """(busy, total, steal) CPU seconds of the host from psutil's `cpu_times()` fields. Linux counts guest
    time inside user time already (psutil reports both); idle takes iowait and steal. Linux's iowait can
    step backwards (proc(5)), and so can a total that holds it: busy and total are held at their highest
    so far (`last`), so a window's increase is never an unknown negative step."""
    total = sum(ht) - getattr(ht, "guest", 0.0) - getattr(ht, "guest_nice", 0.0)
    steal = getattr(ht, "steal", None)
    idle = ht.idle + getattr(ht, "iowait", 0.0) + (steal or 0.0)
    return max(total - idle, last[0]), max(total, last[1]), steal


class CpuSampler:
    """Process-tree, host and RAPL sampling; `pid` is the engine's process (None: external engine)."""

    name = "cpu"
    TREE_REFRESH_S = 2.0  # new children are found this late at most; their CPU time is counted in full

    def __init__(self, pid: int | None, interval_s: float = 0.1, powercap: Path = POWERCAP) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.powercap = powercap
        self.absent: dict[str, str] = {}
        self.rapl: list[RaplDomain] = []
        self.t_ns: list[int] = []
        self.cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "engine_cpu_s",
                "engine_rss_bytes",
                "host_busy_s",
                "host_steal_s",
                "host_total_s",
                "mem_used",
            )
        }
        self.rapl_uj: list[list[int | None]] = []
        self._last_host = (0.0, 0.0)  # (busy, total) host CPU seconds last sampled
        self._proc: psutil.Process | None = None
        self._seen: dict[ProcKey, ProcCpu] = {}  # what each process of the tree had at the last sample
        self._debt_s = 0.0  # counted ahead of a parent reaping (`tree_cpu_increase`)
        self._tree_cpu_s = 0.0
        self._procs: list[psutil.Process] = []
        self._tree_at = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open: dict[str, int] = {}
        self.windows: dict[str, tuple[int, int]] = {}
        self.thread_cpu_s: float | None = None
        self.loop_error: str | None = None
        self.started_ns = 0
        self.stopped_ns = 0

    def start(self) -> None:
        if self.pid is None:
            self.absent["engine"] = "the engine is not a local process the harness started (external)"
        else:
            try:
                self._proc = psutil.Process(self.pid)
            except psutil.Error as e:
                self.absent["engine"] = f"pid {self.pid}: {type(e).__name__}"
        self.rapl, why = find_rapl(self.powercap)
        if why:
            self.absent["rapl"] = why
        self.rapl_uj = [[] for _ in self.rapl]
        self.started_ns = time.perf_counter_ns()
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._thread.start()

    def _tree(self, refresh: bool = False) -> tuple[float | None, int | None]:
        """Monotone CPU seconds of the engine tree (`tree_cpu_increase` per sample) and its Σ RSS."""
        if self._proc is None:
            return None, None
        now = time.monotonic()
        # listing children scans all of /proc: every TREE_REFRESH_S, and at window edges
        if refresh or now - self._tree_at >= self.TREE_REFRESH_S:
            self._tree_at = now
            try:
                self._procs = [self._proc, *self._proc.children(recursive=True)]
            except psutil.Error:
                self._procs = []
        rss = 0
        seen: dict[ProcKey, ProcCpu] = {}
        for p in self._procs:
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    seen[(p.pid, p.create_time())] = ProcCpu(
                        ct.user + ct.system, ct.children_user + ct.children_system, p.ppid()
                    )
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        inc, self._debt_s = tree_cpu_increase(self._seen, seen, first=not self.t_ns, debt_s=self._debt_s)
        self._tree_cpu_s += inc
        self._seen = seen
        return self._tree_cpu_s, (rss if self._procs else None)

    def sample(self, refresh: bool = False) -> None:
        with self._lock:
            t = time.perf_counter_ns()
            cpu_s, rss = self._tree(refresh)
            busy, total, steal = host_cpu_seconds(psutil.cpu_times(), self._last_host)
            self._last_host = (busy, total)
            vm = psutil.virtual_memory()
            self.t_ns.append(t)
            for k, v in (
                ("engine_cpu_s", cpu_s),
                ("engine_rss_bytes", rss),
                ("host_busy_s", busy),
                ("host_steal_s", steal),
                ("host_total_s", total),
                ("mem_used", vm.total - vm.available),
            ):
                self.cols[k].append(v)
            for dom, series in zip(self.rapl, self.rapl_uj, strict=True):
                try:
                    series.append(dom.read_uj())
                except (OSError, ValueError):
                    series.append(None)

    def _loop(self) -> None:
        nxt = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, nxt - time.monotonic())):
            try:
                self.sample()
            except Exception as e:  # keep sampling; the manifest says what went wrong
                self.loop_error = f"{type(e).__name__}: {e}"
            nxt += self.interval_s
            if nxt < time.monotonic():
                nxt = time.monotonic() + self.interval_s
        self.thread_cpu_s = time.thread_time()

    def begin_window(self, name: str, t_ns: int) -> None:
        # no listing of the tree here: it scans all of /proc holding the GIL while the point's first
        # requests are being timed (the end edge comes after the point's requests)
        self.sample()
        self._open[name] = t_ns

    def edge_sample(self) -> None:
        """A sample the moment a window's measured requests are done, before the client is torn down:
        interpolated across the drop to idle, the window's end would otherwise read low."""
        self.sample()

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        self.sample(refresh=True)
        opened = self._open.pop(name, None)
        if opened is None:  # a point cut short before its measured requests: no window was opened
            return {}
        t0 = window_start(opened, start_ns)
        self.windows[name] = (t0, t_ns)
        with self._lock:
            return self.window_columns(t0, t_ns)

    def window_columns(self, t0: int, t1: int) -> dict[str, Any]:
        t, c = self.t_ns, self.cols
        dur_s = (t1 - t0) / NS
        out: dict[str, Any] = {}
        if dur_s <= 0:
            return out
        if self._proc is not None:
            cpu = counter_increase(t, c["engine_cpu_s"], t0, t1)
            out["engine_cpu_pct_mean"] = None if cpu is None else 100.0 * cpu / dur_s
            # with the values at the edges: a window between two samples has none inside it
            rss = edge_values(t, c["engine_rss_bytes"], t0, t1)
            out["engine_rss_bytes_max"] = max(rss) if rss else None
        busy = counter_increase(t, c["host_busy_s"], t0, t1)
        total = counter_increase(t, c["host_total_s"], t0, t1)
        # busy <= total in every sample interval; their edge-interpolated increases can differ in the
        # last bits (100.00000000006 on a saturated host)
        out["host_cpu_pct_mean"] = min(100.0, 100.0 * busy / total) if busy is not None and total else None
        out["host_busy_cores_mean"] = None if busy is None else busy / dur_s
        steal = counter_increase(t, c["host_steal_s"], t0, t1)
        if steal is not None and total:
            out["host_cpu_steal_pct_mean"] = 100.0 * steal / total
        mem = edge_values(t, c["mem_used"], t0, t1)
        out["host_mem_used_bytes_max"] = max(mem) if mem else None
        if self.rapl:
            incs = [
                counter_increase(t, s, t0, t1, wrap_at=d.max_range_uj)
                for d, s in zip(self.rapl, self.rapl_uj, strict=True)
            ]
            if all(x is not None for x in incs):
                e = sum(x for x in incs if x is not None) / 1e6
                out["cpu_energy_j"] = e
                out["cpu_power_w_mean"] = e / dur_s
        return out

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            self.stopped_ns = time.perf_counter_ns()

    def live(self) -> str:
        with self._lock:
            if len(self.t_ns) < 2 or self.cols["engine_cpu_s"][-1] is None:
                return ""
            dt = (self.t_ns[-1] - self.t_ns[-2]) / NS
            d = self.cols["engine_cpu_s"][-1] - self.cols["engine_cpu_s"][-2]
        return f"engine CPU {100 * d / dt:.0f} %" if dt > 0 else ""

    def manifest(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval_s,
            "engine_pid": self.pid,
            "samples": len(self.t_ns),
            "rapl_domains": [{"name": d.name, "path": str(d.path)} for d in self.rapl],
            "absent": dict(self.absent),
            "loop_error": self.loop_error,
            **sampler_overhead(self.thread_cpu_s, self.started_ns, self.stopped_ns),
        }

    def write(self, run_dir: Path, tag: str = "") -> str:
        import pandas as pd

        with self._lock:
            df = pd.DataFrame({"t_ns": self.t_ns, **self.cols})
            for d, s in zip(self.rapl, self.rapl_uj, strict=True):
                df[f"rapl_{d.name}_uj"] = s
        name = telemetry_file("cpu", "parquet", tag)
        with replaced_whole(Path(run_dir) / name) as tmp:
            df.to_parquet(tmp, index=False)
        return name
