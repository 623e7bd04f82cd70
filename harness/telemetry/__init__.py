"""Telemetry samplers (GPU via NVML, CPU via psutil, engine /metrics) and the default set for a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.scenario import Scenario
from harness.telemetry.base import Sampler, TelemetrySet


def engine_gpu_scope(engine: Any) -> tuple[str | None, int | None]:
    """(CUDA_VISIBLE_DEVICES the engine runs with, how many of those GPUs it uses: vLLM TP x PP, but for
    its CPU build (`device: cpu`), whose TP ranks are no GPUs; None: all of them) for `nvml.engine_gpus`."""
    cfg = getattr(engine, "cfg", None)
    env = dict(getattr(cfg, "env", None) or {})
    visible = env.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
    count = None
    if cfg is not None and getattr(cfg, "type", None) == "vllm" and getattr(cfg, "device", None) != "cpu":
        count = int(cfg.tensor_parallel_size or 1) * int(cfg.pipeline_parallel_size or 1)
    return visible, count


def default_samplers(s: Scenario, engine: Any) -> TelemetrySet:
    """The samplers a scenario asks for; each one that cannot run is left out with the reason.

    GPU: live NVML, or the trace named by $HARNESS_NVML_REPLAY (see `harness.telemetry.replay`).
    CPU: the engine's process tree (if the harness started it), host CPU/memory, RAPL where readable;
    sampled every `interval_s` but at most at 2 Hz (its columns come from counters read at the edges).
    Engine metrics: the engine's Prometheus endpoint, if it has one.
    An external endpoint on another host gets neither GPU nor CPU sampling: this machine's GPUs, RAPL
    and load are not the engine's, and energy per token from them would be wrong.
    """
    t = s.telemetry
    samplers: list[Sampler] = []
    absent: dict[str, str] = {}
    remote = getattr(engine, "local", True) is False
    if remote:
        why = f"the endpoint's host {getattr(engine, 'host', '?')!r} is not this machine"
        absent["nvml"] = f"{why}: its GPUs are not visible here"
        absent["cpu"] = f"{why}: host CPU, memory and RAPL here are not the engine's"
    elif t.nvml:
        from harness.telemetry import nvml, replay

        trace = os.environ.get(replay.ENV)
        if trace:
            try:
                samplers.append(replay.ReplayNvmlSampler(Path(trace)))
            except replay.TraceError as e:
                absent["nvml"] = f"${replay.ENV}: {e}"
        else:
            try:
                nvml.probe()
                visible, count = engine_gpu_scope(engine)
                samplers.append(nvml.NvmlSampler(t.interval_s, visible, count))
            except nvml.NvmlError as e:
                absent["nvml"] = str(e)
    else:
        absent["nvml"] = "off in the scenario (telemetry.nvml: false)"
    if t.cpu and not remote:
        from harness.telemetry import cpu
        from harness.telemetry.cpu import CpuSampler

        proc = getattr(engine, "proc", None)
        samplers.append(CpuSampler(getattr(proc, "pid", None), max(t.interval_s, cpu.MIN_INTERVAL_S)))
    elif not t.cpu:
        absent["cpu"] = "off in the scenario (telemetry.cpu: false)"
    if t.engine_metrics:
        url = engine.metrics_url() if hasattr(engine, "metrics_url") else None
        if url:
            from harness.telemetry.prometheus import PrometheusScraper

            samplers.append(PrometheusScraper(url, t.interval_s))
        else:
            absent["engine_metrics"] = f"the {getattr(engine, 'name', '?')} engine has no metrics endpoint"
    else:
        absent["engine_metrics"] = "off in the scenario (telemetry.engine_metrics: false)"
    return TelemetrySet(samplers, absent)
