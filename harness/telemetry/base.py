"""The `Sampler` protocol and `TelemetrySet`, which runs samplers without ever failing a run.

A sampler measures something over time (GPU power, CPU usage, engine counters). The runner opens a
window per load point with `begin_window(name)`, closes it with `end_window(name)` and gets a flat
dict of columns for that point's row (e.g. `energy_j`, `gpu_power_w_mean`). Window edges are
`time.perf_counter_ns()` stamps, the clock the request records use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol


class Sampler(Protocol):
    name: str

    def start(self) -> None: ...

    def begin_window(self, name: str, t_ns: int) -> None: ...

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        """The window's columns, over [`window_start`, `t_ns`]."""
        ...

    def stop(self) -> None: ...

    def manifest(self) -> dict[str, Any]:
        """Inventory and capabilities (what is measured, what is absent and why)."""
        ...

    def write(self, run_dir: Path, tag: str = "") -> str | None:
        """Write the raw samples so far into run_dir as `telemetry_file(...)`, replacing the file whole
        (also while sampling: the runner checkpoints after points, see `checkpoint_due`); its name (None:
        nothing written)."""
        ...


def window_start(opened_ns: int, start_ns: int | None) -> int:
    """Where a window's columns start: at `start_ns`, the point's first measured send, where it is given
    (its edge samples were taken before it, at `opened_ns`, and may have taken a while: a stalled NVML
    call, a slow /metrics scrape), so that energy and power cover the same time as tok/s."""
    return max(opened_ns, start_ns) if start_ns else opened_ns


def telemetry_file(name: str, ext: str, tag: str = "") -> str:
    """`telemetry-<name>[-<tag>].<ext>`: the tag tells the engines of one run apart (`v1`, `v0-a1` for the
    first resume of variant 0), so a later one does not overwrite an earlier one's samples."""
    return f"telemetry-{name}{'-' + tag if tag else ''}.{ext}"


def sampler_overhead(thread_cpu_s: float | None, started_ns: int, stopped_ns: int) -> dict[str, Any]:
    """A sampler thread's own cost: CPU seconds and that as % of one core over its running time."""
    wall_s = max(1e-9, ((stopped_ns or time.perf_counter_ns()) - started_ns) / 1e9)
    pct = None if thread_cpu_s is None else round(100 * thread_cpu_s / wall_s, 3)
    return {"sampler_thread_cpu_s": thread_cpu_s, "sampler_cpu_pct_of_core": pct}


def energy_columns(cols: dict[str, Any]) -> dict[str, Any]:
    """`energy_j` and `energy_scope` of a window from the samplers' columns.

    energy_j = every energy measured in the window: the GPUs (NVML) plus the CPU packages (RAPL), so a
    CPU or offload run on a GPU machine counts the CPU that did the work, not only the idle GPU;
    energy_scope says what was summed (`gpu`, `cpu_package` or `gpu+cpu_package`). `gpu_energy_j` and
    `cpu_energy_j` stay as columns of their own. Neither measured: no columns. GPUs sampled but their
    energy unknown for the window (a GPU lost, a window its samples do not cover, a stuck NVML call, the
    GPU sampler failed earlier in the run: `gpu_window_skipped`, see `TelemetrySet`), some of the
    engine's GPUs on other machines (`gpu_engine_count`: a multi-node engine, whose GPUs here are its
    head node's only), some of its GPUs here not sampled (`gpu_unread_count`: NVML could not open
    them), or GPUs sampled that may be others than the engine's (`gpu_order_unknown`): energy_j None,
    scope `incomplete`, never the CPU's share alone, nor that of some of the engine's GPUs, or of other
    GPUs, passed off as the whole.
    """
    gpus = "gpu_count" in cols or cols.get("gpu_window_skipped")
    missing = cols.get("gpu_engine_count") or cols.get("gpu_unread_count") or cols.get("gpu_order_unknown")
    if gpus and (cols.get("gpu_energy_j") is None or missing):
        return {"energy_j": None, "energy_scope": "incomplete"}
    scopes = (("gpu_energy_j", "gpu"), ("cpu_energy_j", "cpu_package"))
    parts: list[tuple[str, float]] = [(sc, float(cols[k])) for k, sc in scopes if cols.get(k) is not None]
    if not parts:
        return {}
    return {"energy_j": sum(v for _, v in parts), "energy_scope": "+".join(sc for sc, _ in parts)}


CHECKPOINT_SHARE = 0.05  # of a run's time, at most, spent rewriting raw telemetry files mid-run


def checkpoint_due(now_s: float, last_end_s: float | None, last_took_s: float) -> bool:
    """Whether to rewrite the raw telemetry files now: always the first time, then once the time since the
    last rewrite ended is at least 1/CHECKPOINT_SHARE times what that rewrite took (hours of 8-GPU NVML
    samples take seconds to write: those are rewritten every few minutes, not after every short point)."""
    return last_end_s is None or now_s - last_end_s >= last_took_s / CHECKPOINT_SHARE


class TelemetrySet:
    """Several samplers; an exception in any of them is recorded and that sampler gives no more windows
    (it is still stopped, and its samples written, at the end).

    `absent` names samplers that were not started, with the reason (e.g. no NVML on this host). One that
    fails to start measured nothing, as if absent; one that fails after it started (`lost`) measured the
    run until then, so windows from then on say what they lack: the GPU sampler's as
    `gpu_window_skipped`, whose energy is then `incomplete` (`energy_columns`), not the CPU's alone.
    """

    def __init__(self, samplers: list[Sampler] | None = None, absent: dict[str, str] | None = None) -> None:
        self.samplers: list[Sampler] = list(samplers or [])
        self.problems: dict[str, str] = {}
        self.absent: dict[str, str] = dict(absent or {})
        self.files: dict[str, str] = {}  # sampler name -> the file its raw samples went to
        self.dropped: list[Sampler] = []  # samplers that raised: no more windows, still stopped and written
        self.lost: set[str] = set()  # names of those dropped after they started
        self.checkpoint_errors: dict[str, str] = {}
        self._last_checkpoint: tuple[float | None, float] = (None, 0.0)  # (when it ended, how long it took)

    def _call(self, s: Sampler, method: str, *args: Any) -> Any:
        try:
            return getattr(s, method)(*args)
        except Exception as e:  # telemetry never kills a run
            self.problems.setdefault(s.name, f"{method}: {type(e).__name__}: {e}")  # the first says why
            if any(x is s for x in self.samplers):
                # no more windows from it, but it is still stopped and its samples written at the end
                self.samplers = [x for x in self.samplers if x is not s]
                self.dropped.append(s)
                if method != "start":
                    self.lost.add(s.name)
            return None

    def start(self) -> None:
        for s in list(self.samplers):
            self._call(s, "start")

    def begin_window(self, name: str, t_ns: int | None = None) -> None:
        t = t_ns if t_ns is not None else time.perf_counter_ns()
        for s in list(self.samplers):
            self._call(s, "begin_window", name, t)

    def end_window(self, name: str, t_ns: int | None = None, start_ns: int | None = None) -> dict[str, Any]:
        """Every sampler's columns of window `name`, from `start_ns` (the first measured send; default
        where the window was opened) to `t_ns` (default now)."""
        t = t_ns if t_ns is not None else time.perf_counter_ns()
        cols: dict[str, Any] = {}
        for s in list(self.samplers):
            got = self._call(s, "end_window", name, t, start_ns)
            if got:
                cols.update(got)
        if "nvml" in self.lost:  # the GPUs were sampled until it failed: their columns here are unknown
            cols["gpu_window_skipped"] = True
        cols.update(energy_columns(cols))
        return cols

    def edge_samples(self) -> None:
        """A sample from each sampler that takes edge samples, the moment a point's measured requests are
        done: the client's teardown (cancelling cooldown requests, joining client processes) takes up to a
        second before `end_window`, during which the engine idles."""
        for s in list(self.samplers):
            if hasattr(s, "edge_sample"):
                self._call(s, "edge_sample")

    def live(self) -> str:
        """A short live reading (e.g. `GPU 312 W 87 % util`) from samplers that have one."""
        parts = []
        for s in list(self.samplers):
            if hasattr(s, "live"):
                got = self._call(s, "live")
                if got:
                    parts.append(got)
        return " · ".join(parts)

    def checkpoint(self, run_dir: Path, tag: str = "") -> bool:
        """Write every running sampler's samples so far (files as `stop` names them), so a run killed
        later keeps its raw telemetry up to here; skipped (False) while `checkpoint_due` says it is too
        soon. A failed write is recorded; the sampler keeps sampling."""
        now_s = time.monotonic()
        if not checkpoint_due(now_s, *self._last_checkpoint):
            return False
        for s in list(self.samplers):
            try:
                name = s.write(run_dir, tag)
            except Exception as e:  # telemetry never kills a run; the next checkpoint or stop tries again
                self.checkpoint_errors[s.name] = f"{type(e).__name__}: {e}"
                continue
            self.checkpoint_errors.pop(s.name, None)
            if name:
                self.files[s.name] = name
        done_s = time.monotonic()
        self._last_checkpoint = (done_s, done_s - now_s)
        return True

    def stop(self, run_dir: Path | None = None, tag: str = "") -> None:
        """Stop every sampler (those dropped after an error too: their threads still run) and write its
        samples into run_dir (file names carry `tag`)."""
        for s in [*self.samplers, *self.dropped]:
            self._call(s, "stop")
            if run_dir is not None:
                name = self._call(s, "write", run_dir, tag)
                if name:
                    self.files[s.name] = name

    def manifest(self) -> dict[str, Any]:
        """Every sampler's manifest entry; read after each point too, so a sampler whose manifest fails is
        not dropped (it is still sampling, and must still be stopped): the error is recorded instead."""
        out: dict[str, Any] = {}
        for s in [*self.samplers, *self.dropped]:
            try:
                m = s.manifest()
            except Exception as e:  # telemetry never kills a run
                out[s.name] = {"error": f"manifest: {type(e).__name__}: {e}"}
                continue
            if m is not None:
                out[s.name] = {**m, **({"file": self.files[s.name]} if s.name in self.files else {})}
        for name, why in self.absent.items():
            out.setdefault(name, {})["absent"] = why
        for name, why in self.problems.items():
            out.setdefault(name, {})["error"] = why
        for name, why in self.checkpoint_errors.items():
            out.setdefault(name, {})["checkpoint_error"] = why
        return out
