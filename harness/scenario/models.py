"""The scenario's pydantic models (strict: unknown fields are errors), its variants, and its points.
Model sources are in `sources.py`, engine sections in `engines.py`.

A scenario names one engine configuration (optionally with `variants` that override engine fields), a
workload and a load sweep. `expand_points` turns it into the ordered list of measurement points.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.scenario.engines import (
    EngineSpec,
)
from harness.scenario.sources import (
    MAX_SEED,
    Strict,
)


# ---------------------------------------------------------------- workload, load, slo
class LengthDist(Strict):
    """A token-length distribution; `fixed` uses `mean` only."""

    dist: Literal["fixed", "uniform", "normal"] = Field(
        "fixed",
        description="fixed: every request `mean`; uniform: whole numbers from min to max; normal: around "
        "mean by stddev, clipped to min and max",
    )
    mean: StrictInt = Field(ge=1, description="the mean length; the tables and the roofline use it")
    min: StrictInt | None = Field(
        None,
        ge=1,
        description="uniform, normal: the shortest (uniform default: as far below mean as max is above)",
    )
    max: StrictInt | None = Field(
        None,
        ge=1,
        description="uniform, normal: the longest (uniform default: as far above mean as min is below, "
        "so mean alone draws 1 to 2 x mean - 1; normal default: no bound)",
    )
    stddev: StrictFloat | None = Field(None, ge=0, description="normal only (default: mean / 4)")

    def lower(self) -> int:
        """The bound lengths are drawn above: `min`; for uniform without it, as far below the mean as
        `max` is above it (1 without either); else 1."""
        if self.min is not None:
            return self.min
        if self.dist == "uniform" and self.max is not None:
            return 2 * self.mean - self.max
        return 1

    def sd(self) -> float:
        """The normal's standard deviation: `stddev`, else a quarter of the mean."""
        return self.stddev if self.stddev is not None else self.mean / 4

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
        sd = self.sd()
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
        """Why no length can be drawn from this distribution, its mean is not `mean`, or a field given
        does not apply to it (it would be ignored); or None."""
        unused = [
            k
            for k in ("min", "max", "stddev")
            if getattr(self, k) is not None
            and (self.dist == "fixed" or (k == "stddev" and self.dist != "normal"))
        ]
        if unused:
            said = " and ".join(unused)
            if self.dist == "fixed":
                default = "" if "dist" in self.model_fields_set else " (the default)"
                return (
                    f"{said} given with dist: fixed{default}, which sends every request its mean: set "
                    f"dist: normal{'' if 'stddev' in unused else ' or uniform'} to draw lengths"
                )
            return f"stddev given with dist: {self.dist}, which does not use it (stddev is for dist: normal)"
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
            sd = self.sd()
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


# the workload fields a dataset's rows replace, so a scenario with a dataset may not give them
DATASET_LENGTHS = ("input_tokens", "output_tokens")


class Workload(Strict):
    api: Literal["completion", "chat"] = Field(
        "completion",
        description="completion: /completions with a prompt; chat: /chat/completions, one message",
    )
    input_tokens: StrictInt | LengthDist = Field(
        128, description="prompt tokens a request: a count, or a distribution (see length distributions)"
    )
    output_tokens: StrictInt | LengthDist = Field(
        64, description="tokens asked of each request (max_tokens): a count, or a distribution"
    )
    ignore_eos: StrictBool = Field(
        True, description="ask the engine to generate every output token asked, past an end of sequence"
    )
    shared_prefix_tokens: StrictInt = Field(
        0,
        ge=0,
        description="tokens of prefix shared by all prompts (0: none); llama.cpp reuses it from a "
        "sliding-window model's cache (Gemma 2 and 3) only with extra_args [--swa-full]",
    )
    dataset: str | None = Field(
        None,
        description="JSONL file: {prompt, output_tokens} or {input_tokens, output_tokens} per line (other "
        "keys are passed over); every point sends the same rows in the same order (prompt rows as written)",
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
    seed: StrictInt = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="seed of the drawn lengths and the prompts (sent with requests only with request_seed)",
    )
    request_seed: StrictBool = Field(
        False,
        description="send seed with every request, so that a sampling engine draws the same tokens each run; "
        "off: real traffic sends none, and vLLM samples seeded requests one by one at temperature > 0, "
        "which slows its decode (TPOT) beside unseeded ones",
    )
    prompt_salt: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="mixed into every synthetic prompt, so that an engine's prompt cache filled by an "
        "earlier run cannot serve this one (default: drawn per run, kept in the manifest's seeds; set it "
        "to send another run's prompts again)",
    )
    request_timeout_s: StrictFloat = Field(
        600.0, gt=0, description="a request not finished after this long is recorded as timed out"
    )

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
    def _lengths_or_dataset(self) -> Workload:
        given = [k for k in DATASET_LENGTHS if k in self.model_fields_set]
        if self.dataset and given:
            raise ValueError(
                f"{' and '.join(given)} given with a dataset, whose rows set every request's lengths: "
                f"remove {'it' if len(given) == 1 else 'them'}, or the dataset"
            )
        return self

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
    mode: Literal["closed", "open"] = Field(
        "closed",
        description="closed: a set number of requests in flight (concurrency); open: requests arrive at a "
        "rate (rates_rps), however many are in flight",
    )
    concurrency: tuple[StrictInt, ...] = Field(
        (1,), description="closed loop: requests in flight, a point each"
    )
    rates_rps: tuple[StrictFloat, ...] = Field(
        (), description="open loop: arrival rates in req/s, a point each"
    )
    arrival: Literal["constant", "poisson", "gamma"] = Field(
        "poisson", description="open loop: how arrivals are spaced (gamma: with burstiness)"
    )
    burstiness: StrictFloat = Field(1.0, gt=0, description="gamma shape; 1.0 is Poisson")
    requests: StrictInt = Field(16, ge=1, le=MAX_REQUESTS, description="measured requests per point")
    duration_s: StrictFloat | None = Field(
        None, gt=0, le=MAX_DURATION_S, description="stop a point after this long (whichever first)"
    )
    warmup_requests: StrictInt = Field(
        1, ge=0, le=MAX_REQUESTS, description="requests sent before a point's measured ones (not measured)"
    )
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

    ttft_s: StrictFloat | None = Field(2.0, gt=0, description="longest time to first token (null: none)")
    tpot_s: StrictFloat | None = Field(
        0.2, gt=0, description="longest time per output token after the first (null: none)"
    )
    e2e_s: StrictFloat | None = Field(None, gt=0, description="longest end-to-end latency (null: none)")
    attainment: StrictFloat = Field(
        0.99, gt=0, le=1, description="share of requests that must meet every SLO (--find-max-goodput)"
    )


class Telemetry(Strict):
    interval_s: StrictFloat = Field(
        0.1, gt=0, le=10, description="sampling interval of the NVML and CPU samplers"
    )
    nvml: StrictBool = Field(True, description="GPU energy, power, clocks, utilization and memory (NVML)")
    cpu: StrictBool = Field(
        True, description="the engine's CPU use and memory, and RAPL energy where readable"
    )
    engine_metrics: StrictBool = Field(
        True, description="the engine's Prometheus /metrics at each point's edges"
    )


class Hardware(Strict):
    """What the scenario expects to run on; used for checks, cost and cloud launches."""

    gpu: str | None = Field(None, description="hardware catalog key, e.g. h100-sxm, a100-80gb-sxm")
    gpus: StrictInt = Field(1, ge=0, le=64, description="GPUs a machine (0: a machine without one)")
    nodes: StrictInt = Field(1, ge=1, le=64, description="machines (multi-node vLLM)")


class Scenario(Strict):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=MAX_NAME_CHARS,
        description="ASCII letters, digits, '_', '.' and '-': names the run directory <UTC time>-<name>, "
        "whose name a file system caps at 255 bytes",
    )
    description: str = Field("", description="free text, shown in reports")
    engine: EngineSpec = Field(description="what serves the model: its type picks the section")
    variants: tuple[dict[str, Any], ...] = Field(
        (), description="engine field overrides; each one is a separate engine configuration"
    )
    workload: Workload = Field(Workload(), description="what each request asks for")
    load: Load = Field(Load(), description="the load points of the sweep")
    slo: Slo = Field(Slo(), description="what a request must meet to count for goodput")
    telemetry: Telemetry = Field(Telemetry(), description="samplers beside the load")
    hardware: Hardware = Field(Hardware(), description="what the scenario is meant to run on")
    on_engine_failure: Literal["stop", "next_variant"] = Field(
        "stop",
        description="when an engine fails to start or dies: stop the run, or go on with the next variant",
    )

    @model_validator(mode="after")
    def _variants_valid(self) -> Scenario:
        seen: dict[str, int] = {}
        for i, override in enumerate(self.variants):
            try:
                engine = engine_with(self.engine, override)
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"variants[{i}].{loc}: {first['msg']}") from None
            # two variants of one engine configuration would measure it twice (and resume one of them);
            # mappings (env, extra_body) in another key order are the same configuration
            canon = json.dumps(engine.model_dump(mode="json"), sort_keys=True)
            same = seen.setdefault(canon, i)
            if same != i:
                raise ValueError(
                    f"variants[{i}]: the same engine configuration as variants[{same}] (allowed: each once)"
                )
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
