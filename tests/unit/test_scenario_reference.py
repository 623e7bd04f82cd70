"""docs/scenarios.md is written from the scenario's models: it must be the page they write now, and
every field of every section must say what it is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from harness.scenario.models import Scenario
from harness.scenario.reference import SECTIONS, bounds_text, reference_markdown, type_text, undescribed

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_page_is_the_one_the_models_write() -> None:
    page = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    assert page == reference_markdown(), (
        "docs/scenarios.md is out of date: python -m harness.scenario.reference > docs/scenarios.md"
    )


def test_every_field_says_what_it_is() -> None:
    assert undescribed() == []


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    if get_origin(annotation) in (Annotated, Union, tuple, dict) or get_args(annotation):
        return {m for a in get_args(annotation) for m in _models_in(a)}
    return set()


def test_every_section_a_scenario_can_hold_has_its_table() -> None:
    seen: set[type[BaseModel]] = set()
    todo = [Scenario]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for f in m.model_fields.values():
            todo.extend(_models_in(f.annotation))
    assert seen == {model for _, _, model in SECTIONS}


def test_types_and_bounds_read_as_a_scenario_writes_them() -> None:
    fields = dict(Scenario.model_fields)
    assert type_text(fields["on_engine_failure"].annotation) == "`stop` \\| `next_variant`"
    from harness.scenario.models import Load, Workload

    assert type_text(Load.model_fields["concurrency"].annotation) == "list of integer"
    assert type_text(Load.model_fields["duration_s"].annotation) == "number or null"
    assert bounds_text(Load.model_fields["workers"].metadata) == ">= 1, <= 64"
    assert type_text(Workload.model_fields["input_tokens"].annotation) == "integer or length distribution"
    # a description's <...> is not taken for an HTML tag
    assert "directory &lt;UTC time&gt;-&lt;name&gt;" in reference_markdown()


def test_the_vllm_memory_share_default_is_the_one_the_checks_and_roofline_assume() -> None:
    """The weights-fit check and the roofline's KV-cache cap take vLLM's default share of GPU memory as
    DEFAULT_GPU_MEMORY_UTILIZATION (0.92); the field's reference said vLLM's default was 0.9."""
    from harness.engines.vllm_flags import DEFAULT_GPU_MEMORY_UTILIZATION
    from harness.scenario.engines import VllmEngine

    text = VllmEngine.model_fields["gpu_memory_utilization"].description or ""
    said = f"default: vLLM's, {DEFAULT_GPU_MEMORY_UTILIZATION:g} in the pinned release"
    assert said in text and said in reference_markdown()
