"""Checks of a launch before anything is rented: launches that cannot work are refused (CloudError, all
reasons at once), wasteful ones warned about (GPUs left idle, a --max-hours the points outlast, PCIe
where SXM was priced, another vendor's GPU)."""

from __future__ import annotations

import re

from harness.catalog.hardware import devices
from harness.cloud import images
from harness.cloud.task import (
    NETWORK_TIERS,
    RUNPOD_SXM_NAMES,
    SHARED_SXM_PCIE_NAMES,
    SXM_ONLY_CLOUDS,
    CloudError,
    LaunchOptions,
    source_tree,
    unsynced,
)
from harness.fileio import user_path
from harness.scenario import LlamaCppEngine, Scenario, VllmEngine, engine_configs
from harness.scenario.checks import where_in


def _has_ray_backend(args: tuple[str, ...]) -> bool:
    joined = " ".join(args).replace("=", " ").split()
    for i, a in enumerate(joined[:-1]):
        if a == "--distributed-executor-backend" and joined[i + 1] == "ray":
            return True
    return False


def check_launch(s: Scenario, file: str, opts: LaunchOptions) -> list[str]:
    """Reject launches that cannot work (raise CloudError); return warnings for wasteful ones.

    Every engine configuration (the engine and each variant) must fit the GPUs rented:
    tensor_parallel_size × pipeline_parallel_size ≤ GPUs per node × nodes.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for i, eng in enumerate(engine_configs(s)):
        where = f"{file}: {where_in(s, [i])}"
        if not isinstance(eng, VllmEngine | LlamaCppEngine):
            errors.append(
                f"{file}: engine.type: {eng.type!r} is not launched by the harness, nothing to rent "
                "(allowed: 'vllm', 'llamacpp')"
            )
            break
        if opts.nodes > 1 and not isinstance(eng, VllmEngine):
            errors.append(
                f"{file}: hardware.nodes: {opts.nodes} nodes need engine.type 'vllm' (Ray) (allowed: 'vllm')"
            )
            break
        if isinstance(eng, VllmEngine):
            _check_vllm(eng, where, opts, errors, warnings)
        else:
            _check_llamacpp(eng, where, opts, errors)
        _check_model_path(eng, where, errors, warnings)
    idle = _idle_gpu_warnings(s, file)
    warnings += idle or _sxm_warnings(s, file, opts)  # which GPU matters not where none is used
    _check_vendor(opts, errors, warnings)
    _check_name(opts, errors)
    _check_fit(s, file, opts, errors, warnings)
    warnings += _max_hours_warnings(s, file, opts.max_hours)
    if opts.network_tier not in NETWORK_TIERS:
        errors.append(
            f"--network-tier: invalid value {opts.network_tier!r} (allowed: {', '.join(NETWORK_TIERS)})"
        )
    if opts.image is not None and opts.image != "none" and not opts.image.startswith("docker:"):
        errors.append(f"--image: invalid value {opts.image!r} (allowed: docker:IMAGE[:TAG], none)")
    if errors:
        raise CloudError(errors)
    return warnings


def _check_vllm(
    eng: VllmEngine, where: str, opts: LaunchOptions, errors: list[str], warnings: list[str]
) -> None:
    """vLLM's parallelism against the GPUs rented, and the Ray executor a multi-node launch needs."""
    acc, nodes = opts.accelerators, opts.nodes
    total = acc.count * nodes
    need = eng.tensor_parallel_size * eng.pipeline_parallel_size
    tp_pp = f"tensor_parallel_size {eng.tensor_parallel_size} × pipeline_parallel_size "
    tp_pp += f"{eng.pipeline_parallel_size}"
    if need > total:
        errors.append(
            f"{where}.tensor_parallel_size: {tp_pp} needs {need} GPUs; "
            f"the launch has {total} ({acc} × {nodes} node{'s' if nodes > 1 else ''})"
        )
    elif need < total:
        warnings.append(f"{where}: {tp_pp} uses {need} of the {total} GPUs rented; the rest sit idle")
    if nodes > 1 and not _has_ray_backend(eng.extra_args):
        errors.append(
            f"{where}.extra_args: a {nodes}-node launch needs vLLM's Ray executor: "
            'add ["--distributed-executor-backend", "ray"]'
        )
    if nodes > 1 and eng.tensor_parallel_size > acc.count:
        warnings.append(
            f"{where}.tensor_parallel_size: {eng.tensor_parallel_size} spans nodes "
            f"({acc.count} GPUs each); vLLM recommends TP = GPUs per node and PP = nodes"
        )


def _check_llamacpp(eng: LlamaCppEngine, where: str, opts: LaunchOptions, errors: list[str]) -> None:
    """The llama.cpp launcher against the image the launch uses: each needs its own build there."""
    if eng.n_gpu_layers != 0 and eng.launcher == "xllamacpp":
        # rented GPUs would sit idle while the CPU runs the model, and the points would carry the GPU
        errors.append(
            f"{where}.launcher: 'xllamacpp' from PyPI is a CPU build, but n_gpu_layers asks for "
            f"the GPU; on the llama.cpp CUDA image use launcher: llama-server, binary: "
            f"{images.LLAMACPP_SERVER_BINARY} (allowed with xllamacpp: n_gpu_layers: 0)"
        )
    if eng.launcher == "llama-server" and opts.image == "none":
        errors.append(
            f"{where}.launcher: 'llama-server' comes with llama.cpp's CUDA image, which "
            "--image none leaves out (allowed: the default image, or --image docker:REF with it)"
        )
    if eng.launcher == "llama-cpp-python" and opts.image in (None, "none"):
        errors.append(
            f"{where}.launcher: 'llama-cpp-python' needs an image with it built for CUDA: "
            "build docker/Dockerfile.llamacpp --target llama-cpp-python, push it, pass --image docker:REF"
        )


def _check_model_path(
    eng: VllmEngine | LlamaCppEngine, where: str, errors: list[str], warnings: list[str]
) -> None:
    """A model file must be on the cluster: an absolute path there, or a relative one the sync carries."""
    model = eng.model
    if model.source != "path":
        return
    if user_path(model.path).is_absolute():
        warnings.append(
            f"{where}.model.path: {model.path} must exist on the cluster "
            "(relative paths resolve inside the synced source tree)"
        )
    elif why := unsynced(model.path, source_tree()):
        errors.append(
            f"{where}.model.path: {model.path} {why}: give the path the model has on the "
            "cluster's disk (absolute), e.g. where the image or a SkyPilot file mount puts it"
        )


def _check_fit(s: Scenario, file: str, opts: LaunchOptions, errors: list[str], warnings: list[str]) -> None:
    """vLLM engines whose weights the rented GPU cannot hold: each stops at start, and the run goes on
    with the others (warned); where none fits, nothing would be measured (refused)."""
    from harness.cloud.cost import catalog_devices
    from harness.scenario.checks import weights_over_memory

    acc = opts.accelerators
    cards = [devices()[k] for k in catalog_devices(acc.name)]
    configs = engine_configs(s)
    never: list[str] = []  # configurations no card of that name holds
    for i, eng in enumerate(configs):
        where = f"{file}: {where_in(s, [i])}"
        over = [why for d in cards if (why := weights_over_memory(eng, d))]
        if over and len(over) == len(cards):
            never.append(f"{where}.tensor_parallel_size: on {acc.name}: {over[0]}")
        elif over:
            warnings.append(
                f"{where}.tensor_parallel_size: where SkyPilot's {acc.name} is that card: {over[0]}"
            )
    if never and len(never) == len(configs):
        errors.extend(never)
    else:
        warnings.extend(f"{w}: its engine will not start (the others run)" for w in never)


def _idle_gpu_warnings(s: Scenario, file: str) -> list[str]:
    """Every engine on the CPU (llama.cpp without GPU layers, vLLM on device cpu, `hardware.gpus: 0`):
    the GPUs rented would sit idle."""
    from harness.scenario.checks import wants_gpu

    if s.hardware.gpus != 0 and any(wants_gpu(e) for e in engine_configs(s)):
        return []
    return [
        f"{file}: every engine configuration runs on the CPU (n_gpu_layers: 0, device: cpu or hardware.gpus: "
        "0): the GPUs rented sit idle"
    ]


def _max_hours_warnings(s: Scenario, file: str, max_hours: float) -> list[str]:
    """`--max-hours` shorter than the scenario's load: the job is stopped there (its finished points kept)."""
    from harness.scenario.timing import counted, load_time

    t = load_time(s)
    limit_s = max_hours * 3600
    over = t.at_least_s if t.at_least_s > limit_s else t.at_most_s
    if over is None or over <= limit_s:
        return []
    load_min, limit_min = _minutes(over, limit_s)
    starts, points = counted(t.engines, "engine start"), counted(t.points, "point")
    stop = f"--max-hours {max_hours:g} ({limit_min} min) stops the run"
    if t.points > 1:
        stop += " before the last points"
        kept = "finished points are kept; raise --max-hours, or set fewer points"
    else:
        stop += " before its point is done"
        kept = "raise --max-hours, or shorten the point"
    if over == t.at_least_s:
        return [
            f"{file}: load: the open-loop arrivals of its {points} alone take {load_min} min, before "
            f"{starts}: {stop} ({kept})"
        ]
    are = "are" if t.points > 1 else "is"
    return [
        f"{file}: load.duration_s: {points} of up to {s.load.duration_s:g} s {are} up to {load_min} min of "
        f"load, before {starts}: {stop} where they run that long ({kept})"
    ]


def _minutes(longer_s: float, shorter_s: float) -> tuple[str, str]:
    """Two spans in minutes, with as many decimals (up to 2) as it takes for the longer not to read as
    the shorter (3601 s against 3600 s: 60.02 and 60)."""
    digits = 0
    while digits < 2 and round(longer_s / 60, digits) <= round(shorter_s / 60, digits):
        digits += 1
    return f"{longer_s / 60:.{digits}f}", f"{round(shorter_s / 60, digits):g}"


def _check_name(opts: LaunchOptions, errors: list[str]) -> None:
    """A count written into the name (`H100x8` for H100:8): SkyPilot would look for a GPU of that name."""
    from harness.cloud.cost import catalog_devices, skypilot_name

    name = opts.accelerators.name
    if (times := re.fullmatch(r"(.+?)[x*](\d+)", name, re.I)) and catalog_devices(
        known := skypilot_name(times.group(1))
    ):
        errors.append(f"--gpus: {name!r} is no accelerator name (did you mean {known}:{times.group(2)}?)")


def _check_vendor(opts: LaunchOptions, errors: list[str], warnings: list[str]) -> None:
    """A GPU of another vendor than NVIDIA: the default images are CUDA builds, and GPU telemetry is
    NVML's."""
    from harness.cloud.cost import catalog_devices

    acc = opts.accelerators
    vendors = {devices()[k].vendor for k in catalog_devices(acc.name)}
    if not vendors or vendors == {"nvidia"}:
        return
    vendor = "/".join(sorted(v.upper() for v in vendors))
    if opts.image in (None, "none"):
        errors.append(
            f"--gpus: {acc.name} is an {vendor} GPU, and the default images are CUDA builds for NVIDIA GPUs "
            "(allowed: an NVIDIA accelerator, or --image docker:REF with a build of the engine for it)"
        )
    else:
        warnings.append(
            f"--gpus: {acc.name} is an {vendor} GPU: GPU telemetry is NVIDIA's NVML, so its points have no "
            "GPU power, energy or J/token"
        )


def _sxm_warnings(s: Scenario, file: str, opts: LaunchOptions) -> list[str]:
    """A scenario written for another GPU than the one rented; or for an SXM part, rented by a SkyPilot
    name some clouds give PCIe cards too."""
    from harness.cloud.cost import catalog_devices, skypilot_name

    acc = opts.accelerators
    name = skypilot_name(acc.name)  # SkyPilot takes any case: h100 is H100
    hw_gpu = s.hardware.gpu or ""
    can_be = catalog_devices(acc.name)
    if hw_gpu and can_be and hw_gpu not in can_be:  # another GPU altogether: that, not SXM or PCIe
        return [
            f"{file}: hardware.gpu: {hw_gpu}, but --gpus rents {acc.name} ({' or '.join(can_be)}): the run "
            "measures the GPU it gets, and its points and tables name that one, not the scenario's"
        ]
    if not can_be:  # a GPU the catalog lacks (a misspelt name: SkyPilot refuses it at launch)
        said = f"hardware.gpu: {hw_gpu}, but " if hw_gpu else ""
        return [
            f"{file}: {said}--gpus rents {acc.name}, which the hardware catalog lacks: the run "
            "measures the GPU it gets, and its points and tables name it by its NVML name (no roofline; cost "
            "and compare price it by that name)" + (", not the scenario's" if hw_gpu else "")
        ]
    cloud_name = (opts.infra or "").split("/")[0].lower()
    if hw_gpu.endswith("-pcie") or name not in SHARED_SXM_PCIE_NAMES or cloud_name in SXM_ONLY_CLOUDS:
        return []
    where_to = f"on {cloud_name}" if cloud_name else "on whichever cloud SkyPilot picks"
    runpod = RUNPOD_SXM_NAMES.get(name)
    on_runpod = f", or --gpus {runpod}:{acc.count} on RunPod" if runpod else ""
    # a scenario for no GPU in particular (an A100 against H100 comparison): the SXM parts are meant
    said = f"hardware.gpu: {hw_gpu}, but " if hw_gpu else ""
    return [
        f"{file}: {said}SkyPilot's {name} also names PCIe cards (Lambda, RunPod, Azure), with less "
        f"memory bandwidth, {where_to}: pass --cloud aws or gcp{on_runpod} for the SXM part; each run's "
        "manifest records the GPU it ran on"
    ]
