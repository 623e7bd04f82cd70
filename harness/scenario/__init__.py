"""Scenario files: YAML loading into the pydantic models with `file: field.path: problem (allowed: ...)`
errors, the checks `harness validate` makes, and the scenario hash that `--resume` compares."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.fileio import read_problem
from harness.scenario.checks import combination_errors, combination_warnings
from harness.scenario.engines import (
    REQUEST_FIELDS,
    EngineSpec,
    ExternalEngine,
    LlamaBench,
    LlamaCppEngine,
    VllmEngine,
)
from harness.scenario.errors import (
    ScenarioError,
    field_path,
    format_validation_error,
    merge_variants,
    variant_errors,
)
from harness.scenario.inputs import input_file_errors
from harness.scenario.machine import machine_warnings
from harness.scenario.models import (
    Hardware,
    LengthDist,
    Load,
    Point,
    Scenario,
    Slo,
    Telemetry,
    Workload,
    engine_configs,
    engine_with,
    expand_points,
)
from harness.scenario.sources import (
    DUMMY_PRECISIONS,
    CatalogModel,
    ModelSpec,
    PackageModel,
    PathModel,
    ServedModel,
    Strict,
    SyntheticModel,
)
from harness.yamlio import strict_yaml

__all__ = [
    "DUMMY_PRECISIONS",
    "REQUEST_FIELDS",
    "CatalogModel",
    "EngineSpec",
    "ExternalEngine",
    "Hardware",
    "LengthDist",
    "LlamaBench",
    "LlamaCppEngine",
    "Load",
    "ModelSpec",
    "PackageModel",
    "PathModel",
    "Point",
    "Scenario",
    "ScenarioError",
    "ServedModel",
    "Slo",
    "Strict",
    "SyntheticModel",
    "Telemetry",
    "VllmEngine",
    "Workload",
    "combination_errors",
    "combination_warnings",
    "engine_configs",
    "engine_with",
    "expand_points",
    "format_validation_error",
    "input_file_errors",
    "load_scenario",
    "machine_warnings",
    "merge_variants",
    "parse_scenario",
    "scenario_hash",
]


def _nul_in(value: Any, loc: tuple[Any, ...] = (), seen: set[int] | None = None) -> tuple[Any, ...] | None:
    """The location (`("workload", "dataset")`) of the first text with a NUL character in it (a YAML
    "\\0"), None if there is none: a path with one fails every file call with a ValueError. A container
    met again through an alias is not walked again."""
    if isinstance(value, str):
        return loc if "\0" in value else None
    seen = set() if seen is None else seen
    if not isinstance(value, dict | list) or id(value) in seen:
        return None
    seen.add(id(value))
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        inner = (*loc, k)
        if isinstance(k, str) and "\0" in k:
            return inner
        if (found := _nul_in(v, inner, seen)) is not None:
            return found
    return None


def parse_scenario(data: Any, file: str = "<scenario>") -> Scenario:
    if data is None:
        raise ScenarioError([f"{file}: the file is empty (expected a scenario: name, engine, load, ...)"])
    if not isinstance(data, dict):
        raise ScenarioError([f"{file}: (top level): expected a mapping of fields, got {type(data).__name__}"])
    if (where := _nul_in(data)) is not None:
        raise ScenarioError(
            [f"{file}: {field_path(where)}: holds a NUL character, which no path or value can"]
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(variant_errors(file, data) or format_validation_error(file, e)) from None
    msgs = combination_errors(scenario, file)
    if msgs:
        raise ScenarioError(msgs)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{p}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError([f"{p}: {read_problem(e)}"]) from None
    try:
        data = strict_yaml(text)
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
