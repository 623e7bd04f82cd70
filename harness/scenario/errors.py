"""Pydantic errors as `file: field.path: problem (allowed: ...)`, one line each, variants merged."""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from harness.field_errors import shown, value_problem
from harness.scenario.engines import EngineSpec
from harness.scenario.models import Scenario, engine_with
from harness.scenario.sources import ModelSpec


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
        if isinstance(part, int) or part in _BRANCHES:
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
    if err.get("type") == "union_tag_not_found":  # pydantic names no tags when the field is missing
        tags = _UNION_TAG_LISTS.get(str(ctx.get("discriminator", "")).strip("'"))
        return f" (allowed: {', '.join(tags)})" if tags else ""
    return ""


def _other_engines(err: Any) -> str:
    """For an engine field the scenario's engine type does not have: which types have it (a vLLM
    setting given to llama.cpp), and for a precision given to llama.cpp, where its precision comes from."""
    raw = tuple(err["loc"])
    # engine.<type>.<field>, or variants.<i>.<type>.<field>; not a field of a section inside the engine
    # (model, llama_bench)
    at = 1 if raw[:1] == ("engine",) else 2 if raw[:1] == ("variants",) else None
    if at is None or len(raw) != at + 2 or raw[at] not in _ENGINE_FIELDS:
        return ""
    tag, name = str(raw[at]), str(raw[-1])
    if tag == "llamacpp" and name in ("precision", "quantization", "dtype"):
        return (
            " for type llamacpp: it runs the GGUF's own precision (a path model: the file's, as Q8_0 or "
            "Q4_K_M; a synthetic one: model.dtype)"
        )
    others = [t for t, names in _ENGINE_FIELDS.items() if t != tag and name in names]
    return f" for type {tag}: a field of type {' and '.join(others)}" if others else ""


# each engine type's fields (engine.type -> its field names)
_ENGINE_FIELDS = {tag: set(m.model_fields) for m in get_args(get_args(EngineSpec)[0]) for tag in _tags(m)}


def field_path(loc: tuple[Any, ...]) -> str:
    """A field's location as a message names it: `load.concurrency[0]`; a key with odd characters
    (spaces, a newline) quoted as Python writes it, so that the message stays on one line."""
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
    ctx = err.get("ctx") or {}
    if err["type"] == "union_tag_not_found":  # a missing discriminator: the field itself (engine.type)
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        return f"{file}: {field_path(loc)}: field required{_allowed(err)}"
    if err["type"] == "union_tag_invalid":
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        return f"{file}: {field_path(loc)}: invalid value {shown(ctx.get('tag'))}{_allowed(err)}"
    if err["type"] == "extra_forbidden":
        return f"{file}: {field_path(loc)}: unknown field{_other_engines(err)}{_allowed(err)}"
    if err["type"] == "invalid_key":  # a YAML key that is a number, a boolean, null or a date
        names = fields_at(tuple(err["loc"])[:-1])
        allowed = f" (allowed: {', '.join(names)})" if names else ""
        return f"{file}: {field_path(loc[:-1])}: field name {shown(err.get('input'))} is not text{allowed}"
    if err["type"] == "string_pattern_mismatch" and loc == ("name",):
        return (
            f"{file}: name: invalid value {shown(err.get('input'))} (allowed: ASCII letters, digits, '_', "
            "'.' and '-', starting with a letter or digit: it names the run directory)"
        )
    if err["type"] == "string_too_long" and loc == ("name",):
        return (
            f"{file}: name: {len(err.get('input') or '')} characters is too long (allowed: at most "
            f"{ctx.get('max_length')}: it names the run directory)"
        )
    problem = value_problem(err)
    if not loc and problem.startswith("variants["):  # a check across the variants names them itself
        return f"{file}: {problem}"
    return f"{file}: {field_path(loc)}: {problem}"


# discriminator values pydantic puts into error locations (engine.llamacpp.parallel), and the branch names of
# `int | LengthDist` fields: left out of the located field
_BRANCHES = {"int", "LengthDist"}
# the values of each discriminator, in the order the unions list them (engine.type, engine.model.source)
_UNION_TAG_LISTS = {
    name: [tag for m in get_args(get_args(union)[0]) for tag in sorted(_tags(m))]
    for name, union in (("type", EngineSpec), ("source", ModelSpec))
}
_UNION_TAGS = {
    tag for union in (EngineSpec, ModelSpec) for m in get_args(get_args(union)[0]) for tag in _tags(m)
} | _BRANCHES


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


def variant_errors(file: str, data: dict[str, Any]) -> list[str]:
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
            msgs.append(f"{file}: variants[{i}]: expected a mapping of engine fields (got {shown(override)})")
            continue
        try:
            engine_with(base.engine, override)
        except ValidationError as e:
            for err in e.errors():
                msgs.append(_format_one(file, {**err, "loc": ("variants", i, tag, *err["loc"])}))
    return merge_variants(msgs)
