"""The claims table (claims.yaml, or a user file of the same shape), loaded and validated."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.catalog import CatalogError, load_yaml, read_user_yaml
from harness.field_errors import entry_problems
from harness.scenario.engines import SERVED_BY


class Side(BaseModel):
    """One configuration of a ratio claim."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    device: str
    devices: int | None = Field(None, ge=1)
    precision: str | None = None


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: str
    source: str
    text: str
    kind: Literal["throughput", "cost", "ratio", "offload"]
    value: float = Field(gt=0)
    value_high: float | None = Field(None, gt=0)
    model: str
    device: str | None = None
    devices: int | None = Field(None, ge=1)
    # an engine as points name it: launched, or declared behind an endpoint; `external`: any endpoint
    engine: Literal[SERVED_BY, "external"] | None = None
    precision: str | None = None
    concurrency: int | None = Field(None, ge=1)
    ttft_p99_s: float | None = Field(None, gt=0)
    tpot_p99_s: float | None = Field(None, gt=0)
    up_to: bool = False
    context_tokens: float | None = Field(None, ge=0)
    usd_per_hour: float | None = Field(None, gt=0)
    tok_s: float | None = Field(None, gt=0)
    numerator: Side | None = None
    denominator: Side | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _by_kind(self) -> Claim:
        if self.kind == "ratio" and (self.numerator is None or self.denominator is None):
            raise ValueError("a ratio claim needs numerator and denominator")
        if self.kind != "ratio" and self.device is None:
            raise ValueError(f"a {self.kind} claim needs device")
        if self.kind == "cost" and (self.usd_per_hour is None or self.tok_s is None):
            raise ValueError("a cost claim needs usd_per_hour and tok_s")
        if self.value_high is not None and self.value_high < self.value:
            raise ValueError("value_high is below value")
        return self

    @property
    def high(self) -> float:
        return self.value_high if self.value_high is not None else self.value


def _precision_problems(c: Claim) -> list[tuple[str, str]]:
    """(field, problem) for each precision the roofline has no bytes per parameter for."""
    from harness.roofline import BYTES_PER_PARAM

    sides = [("precision", c.precision)]
    sides += [
        (f"{k}.precision", s.precision)
        for k, s in (("numerator", c.numerator), ("denominator", c.denominator))
        if s
    ]
    return [
        (field, f"invalid value {p!r} (allowed: {', '.join(BYTES_PER_PARAM)})")
        for field, p in sides
        if p is not None and p.lower() not in BYTES_PER_PARAM
    ]


def parse_claims(data: Any, file: str) -> list[Claim]:
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise CatalogError(f"{file}: (top level): expected a mapping with a `claims:` list")
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise CatalogError(f"{file}: sources: expected a mapping of source id to where it is from")
    out: list[Claim] = []
    ids: set[str] = set()
    problems: list[str] = []  # every mistake in the file, one line each
    for i, entry in enumerate(data["claims"]):
        if not isinstance(entry, dict):
            problems.append(f"{file}: claims[{i}]: expected a mapping of fields")
            continue
        try:
            c = Claim.model_validate(entry)
        except ValidationError as e:
            problems += entry_problems(f"{file}: claims[{i}]", e.errors())
            continue
        problems += [f"{file}: claims[{i}].{field}: {problem}" for field, problem in _precision_problems(c)]
        if c.id in ids:
            problems.append(f"{file}: claims[{i}].id: duplicate id {c.id!r}")
        if sources and c.source not in sources:
            problems.append(
                f"{file}: claims[{i}].source: {c.source!r} is not listed under sources "
                f"(allowed: {', '.join(sources)})"
            )
        ids.add(c.id)
        out.append(c)
    if problems:
        raise CatalogError("\n".join(problems))
    return out


@cache
def claims() -> tuple[Claim, ...]:
    return tuple(parse_claims(load_yaml("claims.yaml"), "claims.yaml"))


def load_claims_file(path: str | Path) -> list[Claim]:
    p = Path(path)
    data = read_user_yaml(p)
    return parse_claims(data, str(p))
