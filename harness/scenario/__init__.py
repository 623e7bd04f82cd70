"""Scenario files: YAML loading into the pydantic models with `file: field.path: problem (allowed: ...)`
errors, the checks `harness validate` makes, and the scenario hash that `--resume` compares."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.scenario.checks import combination_errors, combination_warnings, input_file_errors
from harness.scenario.errors import ScenarioError, format_validation_error, merge_variants, variant_errors
from harness.scenario.models import (
    DUMMY_PRECISIONS,
    REQUEST_FIELDS,
    CatalogModel,
    EngineSpec,
    ExternalEngine,
    Hardware,
    LengthDist,
    LlamaBench,
    LlamaCppEngine,
    Load,
    ModelSpec,
    PackageModel,
    PathModel,
    Point,
    Scenario,
    ServedModel,
    Slo,
    Strict,
    SyntheticModel,
    Telemetry,
    VllmEngine,
    Workload,
    engine_configs,
    engine_with,
    expand_points,
)

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
    "merge_variants",
    "parse_scenario",
    "scenario_hash",
]


def parse_scenario(data: Any, file: str = "<scenario>") -> Scenario:
    if data is None:
        raise ScenarioError([f"{file}: the file is empty (expected a scenario: name, engine, load, ...)"])
    if not isinstance(data, dict):
        raise ScenarioError([f"{file}: (top level): expected a mapping of fields, got {type(data).__name__}"])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        raise ScenarioError(variant_errors(file, data) or format_validation_error(file, e)) from None
    msgs = combination_errors(scenario, file)
    if msgs:
        raise ScenarioError(msgs)
    return scenario


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the
    last one silently, so `load:` written twice would drop the first block without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # `? [a, b]`: PyYAML's own error, before the set takes it
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a scalar, not {type(key).__name__}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key once per mapping)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# booleans as YAML 1.2 writes them: true/false only. YAML 1.1 (PyYAML's default) also reads yes/no/on/off
# as booleans, so `ignore_eos: yes` passed as true while the schema refuses anything but a boolean, and a
# free-form value `no` (an env var, an extra_body field) became False
_UniqueKeyLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


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
