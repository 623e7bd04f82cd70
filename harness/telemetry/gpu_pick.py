"""Which of the machine's GPUs (NVML indices) an engine runs on: `CUDA_VISIBLE_DEVICES` read as CUDA
reads it, the engine's GPU count, and the GPUs llama.cpp's load log put weights on."""

from __future__ import annotations


def engine_gpus(
    visible: str | None,
    uuids: list[str],
    count: int | None = None,
    mig: dict[str, int] | None = None,
    positions: list[int] | None = None,
) -> tuple[list[int], str]:
    """NVML indices of the GPUs an engine runs on, and how that was decided.

    NVML sees every GPU of the machine; the engine sees those `CUDA_VISIBLE_DEVICES` lists (indices, or
    UUIDs / their prefixes; unset: all; read as `visible_gpus` says) and uses the first `count` of them
    (vLLM: TP x PP; None: all, as llama.cpp splits layers over every visible GPU), or those at
    `positions` among them (llama.cpp told to use some: the CUDA devices its load log put weights on;
    positions it does not see are left out, and where none is left, all it sees stay). Where `count` is
    more than this machine gives it (a multi-node engine: TP 8 x PP 2 over two 8-GPU nodes), only those
    here are sampled, said so (`gpus_elsewhere`).
    """
    if visible is None:
        picked, how = list(range(len(uuids))), "all GPUs (CUDA_VISIBLE_DEVICES not set)"
    elif not visible.strip():
        return [], "none (CUDA_VISIBLE_DEVICES is empty: the engine sees no GPU)"
    else:
        picked, how = visible_gpus(visible, uuids, mig or {})
    if used := [picked[k] for k in positions or [] if 0 <= k < len(picked)]:
        names = ", ".join(f"CUDA{k}" for k in positions or [] if 0 <= k < len(picked))
        picked, how = used, f"{how}, of those {names} (the GPUs llama.cpp's load log put weights on)"
    if count is not None and count < len(picked):
        picked, how = picked[:count], f"{how}, the first {count} (the engine's GPU count)"
    if elsewhere := gpus_elsewhere(len(picked), count):
        how += (
            f"; only {len(picked)} of the engine's {count} GPUs are on this machine (the other {elsewhere}"
            f" are not sampled): the power, utilization, clock and memory columns are these {len(picked)}"
            " GPUs' only (the head node's), and energy_j and J/token are left blank (energy_scope"
            " incomplete)"
        )
    return picked, how


def gpus_elsewhere(here: int, count: int | None) -> int:
    """How many of an engine's `count` GPUs (vLLM: TP x PP) are not among the `here` it has on this
    machine: a multi-node engine's GPUs on its other nodes, which NVML here cannot see. 0 where `count`
    is not known or no GPU is here (the engine sees none)."""
    return max(0, count - here) if count and here else 0


def visible_gpus(visible: str, uuids: list[str], mig: dict[str, int]) -> tuple[list[int], str]:
    """NVML indices of the GPUs a non-empty `CUDA_VISIBLE_DEVICES` lists, and how that was decided.

    Indices are taken in NVML (PCI bus) order, which is CUDA's order too on machines with one GPU model.
    Like CUDA, the list ends at its first invalid entry, said so: an index out of range, an empty entry
    (`2,3,`), or one naming a GPU listed before (`0,0`, an index and its own UUID), which would otherwise
    add that GPU's energy and power twice. A MIG instance (`MIG-…`, found in `mig`: its UUID → the index
    of the GPU it is part of) counts as that whole GPU, once however many of its instances are listed,
    said so: NVML's power, energy, clocks and PCIe counters are the whole GPU's. An entry that names no
    single GPU (a UUID prefix of none or of several): all GPUs, said so.
    """
    picked: list[int] = []
    parts: list[str] = []
    stop = ""
    for tok in (t.strip() for t in visible.split(",")):
        match = _entry_gpus(tok, uuids, mig) if tok else []
        if len(match) != 1 and tok and not tok.lstrip("-").isdigit():
            why = f"CUDA_VISIBLE_DEVICES entry {tok!r} names no single GPU here"
            return list(range(len(uuids))), f"all GPUs ({why})"
        mig_entry = tok.startswith("MIG-")
        if not match or (match[0] in picked and not mig_entry):
            why = "empty" if not tok else f"GPU {match[0]} again" if match else "no such GPU index here"
            stop = f" (CUDA stops at its first invalid entry, {tok!r}: {why})"
            break
        if mig_entry:
            parts.append(f"{tok} is part of GPU {match[0]}")
        if match[0] not in picked:
            picked.append(match[0])
    how = f"CUDA_VISIBLE_DEVICES={visible}{stop}"
    if parts:
        how += (
            f" ({'; '.join(parts)}: power, energy, clocks and PCIe are the whole GPU's,"
            " shared with its other MIG instances)"
        )
    return picked, how


def _entry_gpus(tok: str, uuids: list[str], mig: dict[str, int]) -> list[int]:
    """The NVML indices one non-empty `CUDA_VISIBLE_DEVICES` entry can name: an index (none out of
    range), the GPU of the MIG instances its prefix matches, or the GPUs whose UUID it starts (with or
    without `GPU-`)."""
    if tok.lstrip("-").isdigit():
        return [int(tok)] if 0 <= int(tok) < len(uuids) else []
    if tok.startswith("MIG-"):
        return sorted({i for u, i in mig.items() if u.startswith(tok)})
    return [i for i, u in enumerate(uuids) if u and u.startswith((tok, "GPU-" + tok))]
