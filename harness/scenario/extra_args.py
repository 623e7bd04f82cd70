"""The checks of the extra arguments a scenario passes to its engine (`extra_args`): options the harness
sets itself from scenario fields, vLLM data-parallel flags, flags read as each engine's parser reads them."""

from __future__ import annotations

# options the harness sets from scenario fields, per launcher (aliases included): in extra_args they would
# clash with its own (a second --port) or make the manifest and tables say what did not run
HARNESS_OWN_ARGS = {
    "llama-server": {
        "--threads": "threads",
        "-t": "threads",
        "--threads-batch": "threads",
        "-tb": "threads",
        "--batch-size": "batch_size",
        "-b": "batch_size",
        "--flash-attn": "flash_attn",
        "-fa": "flash_attn",
        "--model": "model",
        "-m": "model",
        "--host": "host",
        "--port": "the harness's own choice",
        "--ctx-size": "ctx_size",
        "-c": "ctx_size",
        "--parallel": "parallel",
        "-np": "parallel",
        "--n-gpu-layers": "n_gpu_layers",
        "--gpu-layers": "n_gpu_layers",
        "-ngl": "n_gpu_layers",
    },
    "llama-cpp-python": {
        "--n_threads": "threads",
        "--n_threads_batch": "threads",
        "--n_batch": "batch_size",
        "--flash_attn": "flash_attn",
        "--model": "model",
        "--host": "host",
        "--port": "the harness's own choice",
        "--n_ctx": "ctx_size",
        "--n_gpu_layers": "n_gpu_layers",
    },
    "xllamacpp": {
        "n_batch": "batch_size",
        "flash_attn_type": "flash_attn",
        "model": "model",
        "hostnames": "host",
        "port": "the harness's own choice",
        "n_ctx": "ctx_size",
        "n_parallel": "parallel",
        "n_gpu_layers": "n_gpu_layers",
    },
    # vLLM takes --max_num_seqs as --max-num-seqs, and keeps the last of a flag given twice
    "vllm": {
        "--model": "model",
        "--host": "host",
        "--port": "the harness's own choice",
        "--served-model-name": "the harness's own choice",
        "--dtype": "precision",
        "--quantization": "precision",
        "-q": "precision",
        "--kv-cache-dtype": "kv_cache_dtype",
        "--tensor-parallel-size": "tensor_parallel_size",
        "-tp": "tensor_parallel_size",
        "--pipeline-parallel-size": "pipeline_parallel_size",
        "-pp": "pipeline_parallel_size",
        "--gpu-memory-utilization": "gpu_memory_utilization",
        "--max-model-len": "max_model_len",
        "--max-num-seqs": "max_num_seqs",
        "--max-num-batched-tokens": "max_num_batched_tokens",
        "--enable-prefix-caching": "enable_prefix_caching",
        "--no-enable-prefix-caching": "enable_prefix_caching",
        "--cpu-offload-gb": "cpu_offload_gb",
        "--enforce-eager": "enforce_eager",
        "--no-enforce-eager": "enforce_eager",
        "--trust-remote-code": "trust_remote_code",
        "--no-trust-remote-code": "trust_remote_code",
        "--device-memory-utilization": "gpu_memory_utilization",  # vLLM's other name for it
        "--enable-prompt-tokens-details": "the harness's own choice",
        "--no-enable-prompt-tokens-details": "the harness's own choice",
    },
}


def _xllamacpp_field_problems(args: tuple[str, ...]) -> list[str]:
    """Each `FIELD=VALUE` item xllamacpp's CommonParams has no field for, or whose field refuses the
    value as the launcher sets it (a YAML scalar); none where xllamacpp is not installed."""
    try:
        import xllamacpp
    except ImportError:
        return []
    from harness.engines.xllamacpp_server import set_field

    params = xllamacpp.CommonParams()
    return [
        f"extra_args {item!r}: {problem} (the launcher would stop at start)"
        for item in args
        if (problem := set_field(params, item))
    ]


def vllm_flag(flag: str) -> str:
    """A vLLM flag as its parser takes it: `--max_num_seqs` is `--max-num-seqs`."""
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def extra_args_problems(launcher: str, args: tuple[str, ...]) -> list[str]:
    """Why a launcher's `extra_args` cannot be used, every reason at once (none: they can): xllamacpp
    takes `FIELD=VALUE` items (fields of its CommonParams), the others command-line options (llama-server
    reads `--ctx_size` as `--ctx-size`); none may set what the harness sets from the scenario's own
    fields."""
    own = HARNESS_OWN_ARGS[launcher]
    problems: list[str] = []
    if launcher == "xllamacpp":
        bad = [a for a in args if a.startswith("-") or "=" not in a or not a.split("=", 1)[0]]
        if bad:
            problems.append(
                f"extra_args {', '.join(map(repr, bad))}: launcher xllamacpp takes FIELD=VALUE items "
                "(fields of xllamacpp's CommonParams, e.g. n_ubatch=256), not command-line options (those "
                "are for launcher llama-server)"
            )
        items = [a for a in args if a not in bad]
        keys = [a.split("=", 1)[0] for a in items]
        # a field the harness sets is said as such below, whatever its value
        problems += _xllamacpp_field_problems(tuple(a for a in items if a.split("=", 1)[0] not in own))
    else:
        keys = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    seen: set[str] = set()
    for key in keys:  # as the launcher reads it (llama-server takes `--ctx_size` as `--ctx-size`)
        flag = llama_server_flag(key) if launcher == "llama-server" else key
        if flag in own and flag not in seen:
            seen.add(flag)
            problems.append(_own_arg(key, own[flag]))
    return problems


def llama_server_flag(flag: str) -> str:
    """A flag as llama-server's parser takes it (common/arg.cpp): `--ctx_size` is `--ctx-size`."""
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def _own_arg(flag: str, field: str) -> str:
    return f"extra_args {flag!r}: the harness sets it itself ({_instead(field)})"


def _instead(field: str) -> str:
    return "the harness picks it" if field.startswith("the harness") else f"set engine.{field} instead"


# vLLM's data-parallel options (its short forms; every `--data-parallel-*` long one is refused too): more
# replicas of the engine, on GPUs the harness would not count
DATA_PARALLEL_FLAGS = ("-dp", "-dpl", "-dpa", "-dpp", "-dpr", "-dpb", "-dpn", "-dph", "-dpe")


def vllm_extra_args_problems(args: tuple[str, ...], catalog_model: bool) -> list[str]:
    """Why vLLM `extra_args` cannot be used, every reason at once (none: they can): a flag the harness
    sets from a field (vLLM keeps the last of a flag given twice, so the manifest would say what did not
    run), in any spelling vLLM's parser takes (`--max_num_seqs`, an alias, a `--no-` form, an abbreviation
    such as `--max-num-seq`); for a catalog model, how it is loaded; `--api-key`; and data parallelism
    (replicas the harness would not count)."""
    flags = dict.fromkeys(vllm_flag(a.split("=", 1)[0]) for a in args if a.startswith("-"))
    return [p for flag in flags if (p := _vllm_flag_problem(flag, catalog_model))]


def _vllm_flag_problem(flag: str, catalog_model: bool) -> str | None:
    """Why one vLLM flag (as its parser takes it) cannot be in `extra_args`, else None."""
    own = HARNESS_OWN_ARGS["vllm"]
    if flag in DATA_PARALLEL_FLAGS or flag.startswith("--data-parallel"):
        return (
            f"extra_args {flag!r}: the harness runs one replica of the engine and counts its GPUs as "
            "tensor_parallel_size x pipeline_parallel_size: energy, $/1M and the roofline would miss the "
            "other replicas (run a data-parallel server yourself and measure it as an external endpoint, "
            "with hardware.gpus its GPU count)"
        )
    if flag == "--api-key":
        return (
            "extra_args '--api-key': the server would refuse the harness's own requests, which carry no"
            " key (a server the harness starts listens on engine.host for it alone)"
        )
    if catalog_model and flag in ("--load-format", "--tokenizer"):
        return (
            f"extra_args {flag!r}: the harness sets it itself for a catalog model (dummy weights, and the"
            " tokenizer written beside its config), while a checkpoint of your own is model.source: path"
        )
    if flag in own:
        return _own_arg(flag, own[flag])
    if flag.startswith("--") and (longer := [o for o in own if o.startswith(flag)]):
        # argparse takes an unambiguous abbreviation; no vLLM flag is itself a prefix of these
        fields = {own[o] for o in longer}
        field = fields.pop() if len(fields) == 1 else "the harness's own choice"
        return (
            f"extra_args {flag!r}: an abbreviation of {' or '.join(longer)}, which the harness sets"
            f" itself ({_instead(field)})"
        )
    return None
