"""Facts about the machine and software a run happened on (for the manifest)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil


def cpu_model() -> str | None:
    """The CPU's name: Linux's /proc/cpuinfo, macOS's `machdep.cpu.brand_string` ("Apple M2 Max", where
    `platform.processor()` says only "arm"), else what `platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            name = ""
        if name:
            return name
    return platform.processor() or None


# instruction-set extensions that decide CPU inference speed (llama.cpp picks kernels by them)
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
    "sve2",
)


def cpu_inventory(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model, sockets, cores, threads, NUMA nodes, ISA extensions and memory size.

    Sockets are distinct `physical id`s in /proc/cpuinfo (1 where the file has none, e.g. some VMs
    and Arm hosts); cores are psutil's physical count.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    sockets: set[str] = set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key == "physical id":
            sockets.add(val.strip())
        elif key in ("flags", "Features") and not flags:
            flags = set(val.split())
    nodes = sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))
    return {
        "model": cpu_model(),
        "sockets": len(sockets) or 1,
        "cores": psutil.cpu_count(logical=False),
        "threads": psutil.cpu_count(logical=True),
        "usable_threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numa_nodes": len(nodes) or None,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "mem_total_bytes": psutil.virtual_memory().total,
        "arch": platform.machine(),
    }


def host() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_logical": psutil.cpu_count(logical=True),
        "cpu_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
    }


def git_sha() -> str | None:
    """Commit of the harness source tree, if it runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    if not sha:
        return None
    return sha + ("-dirty" if dirty.stdout.strip() else "")


# files a client process holds besides its connections: logs, telemetry files, pipes, its interpreter's
OPEN_FILES_MARGIN = 64


def open_files_limits() -> tuple[int, int] | None:
    """This process's (soft, hard) limits on open files (a hard limit without one as a large number);
    None where the platform has none to read (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # what "unlimited" amounts to for one process: Linux's default fs.nr_open, macOS's OPEN_MAX
    cap = 10240 if sys.platform == "darwin" else 1 << 20
    return (cap if soft == resource.RLIM_INFINITY else soft), (
        cap if hard == resource.RLIM_INFINITY else hard
    )


def raise_open_files_limit() -> int | None:
    """Raise this process's soft limit on open files to its hard one (macOS: at most OPEN_MAX, 10240), as
    the client processes it starts inherit it: each request in flight holds a socket, and shells often
    start with a soft limit of 1024 (256 on macOS) far under the hard one. The soft limit in force after;
    None where there is none."""
    limits = open_files_limits()
    if limits is None:
        return None
    import resource

    soft, hard = limits
    # macOS refuses a soft limit above its per-process maximum (OPEN_MAX, 10240) with an unlimited hard one
    for want in (hard, min(hard, 10240)):
        if soft >= want:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            soft = want
            break
        except (ValueError, OSError):
            continue
    return soft


# variables the engines read from the environment they inherit: llama.cpp's server options and ggml's,
# vLLM's, CUDA's, NCCL's, the thread pools' and Hugging Face's
ENGINE_ENV_PREFIXES = (
    "LLAMA_", "GGML_", "VLLM_", "CUDA_", "NCCL_", "OMP_", "MKL_", "HF_", "TORCH_", "PYTORCH_",
    "TRANSFORMERS_",
)  # fmt: skip


def engine_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of `env` (default this process's) that launched engines inherit and read
    (`ENGINE_ENV_PREFIXES`), sorted by name; secrets are for the caller to redact."""
    env = dict(os.environ) if env is None else env
    return {k: env[k] for k in sorted(env) if k.upper().startswith(ENGINE_ENV_PREFIXES)}
