"""Telemetry samplers (GPU via NVML, CPU via psutil, engine /metrics) and the default set for a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from harness.scenario import Scenario
from harness.telemetry.base import Sampler, TelemetrySet


class GpuScope(NamedTuple):
    """What `gpu_pick.engine_gpus` needs to pick an engine's GPUs (`config_gpu_scope`), and the CUDA device
    order it runs with (`inventory.cuda_order_unknown`)."""

    visible: str | None
    gpu_count: int | None
    positions: list[int] | None
    order: str | None


def engine_gpu_scope(engine: Any) -> GpuScope:
    """`config_gpu_scope` of a started engine: its configuration and load log, and this process's
    environment, which it inherits."""
    cfg = getattr(engine, "cfg", None)
    dump = cfg.model_dump(mode="json") if cfg is not None and hasattr(cfg, "model_dump") else {}
    placement = getattr(engine, "placement", None)
    return config_gpu_scope(dump, placement if isinstance(placement, dict) else {}, dict(os.environ))


def config_gpu_scope(cfg: dict[str, Any], placement: dict[str, Any], inherited: dict[str, Any]) -> GpuScope:
    """An engine configuration's `GpuScope`: CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER it runs with (its
    `env`'s, else those of the environment it inherits); how many of the visible GPUs it uses: vLLM TP x
    PP, but for its CPU build (`device: cpu`), whose TP ranks are no GPUs, None: all of them; which of
    them, by position: llama.cpp's CUDA devices with weights (`offload.cuda_devices_with_weights` of its
    load log's `placement`) where its `extra_args` choose among the GPUs (`-sm none`, `-mg`, `-dev`,
    `-ts`), else None: the first `count`."""
    from harness.offload import cuda_devices_with_weights
    from harness.rundevice import chooses_gpus

    env = cfg.get("env")
    env = {**inherited, **(env if isinstance(env, dict) else {})}
    visible, order = env.get("CUDA_VISIBLE_DEVICES"), env.get("CUDA_DEVICE_ORDER")
    count = positions = None
    if cfg.get("type") == "vllm" and cfg.get("device") != "cpu":
        count = int(cfg.get("tensor_parallel_size") or 1) * int(cfg.get("pipeline_parallel_size") or 1)
    if chooses_gpus(cfg):
        positions = cuda_devices_with_weights(placement) or None
    return GpuScope(
        None if visible is None else str(visible), count, positions, None if order is None else str(order)
    )


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
                samplers.append(nvml.NvmlSampler(t.interval_s, *engine_gpu_scope(engine)))
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
