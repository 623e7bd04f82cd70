"""One pydantic error about a value, said for people: what the field takes and what it got.

Shared by the scenario loader (which adds the file and field path, and the names of unknown fields) and
the catalog loaders (hardware, prices, claims files).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# pydantic's type errors for plain values, and what the field takes
EXPECTED = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "string_type": "text",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
}

# pydantic's range errors: the ctx key of the bound, and how it reads
BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


# what reads as a number in exponent form but is text to YAML 1.1 (PyYAML's safe_load): a float there
# needs a dot and a signed exponent (1.5e+3), so 1e3, 1E3, 1e+3, 1.5e3 and 6.02e23 stay strings
_EXPONENT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?[eE]\d+|\d+[eE][+-]\d+)")


# a value given is echoed up to this many characters (a 5,000-character string filled the terminal)
MAX_SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """`repr(value)`, cut to MAX_SHOWN_CHARS with the length it had."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else f"{text[:MAX_SHOWN_CHARS]}... ({len(text):,} characters)"


def expected(kind: str, given: Any) -> str:
    """`expected a whole number (got '1e3')`, with a hint where YAML read the value as another type than
    it looks: a date, or a number in an exponent form that YAML 1.1 reads as text (`_EXPONENT_TEXT`)."""
    got = given.isoformat() if isinstance(given, dt.date) else shown(given)
    msg = f"expected {EXPECTED[kind]} (got {got})"
    if kind == "string_type" and isinstance(given, dt.date):
        return f"expected text (got the date {got}: YAML reads it as one; quote it)"
    if kind == "string_type" and isinstance(given, bool | int | float):
        return f"{msg}: quote it"
    number = kind.startswith(("int", "float"))
    if number and isinstance(given, str) and _EXPONENT_TEXT.fullmatch(given.strip()):
        return f"{msg}: YAML reads {given} as text; write the number out, or with a dot and a signed exponent"
    return msg


# what a list looks like in the fields that take one (a list of numbers is not what extra_args takes)
_LISTS = {
    "concurrency": "a list, e.g. [1, 2, 4]",
    "rates_rps": "a list, e.g. [0.5, 1, 2]",
    "extra_args": "a list of text arguments, one item each",
    "variants": "a list of engine field overrides, e.g. [{n_gpu_layers: 0}, {n_gpu_layers: -1}]",
}


def value_problem(err: Any) -> str:
    """The problem of one pydantic error (an item of `ValidationError.errors()`), without its location."""
    kind, given, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return "field required"
    if kind in ("literal_error", "enum"):
        allowed = f" (allowed: {ctx['expected']})" if "expected" in ctx else ""
        return f"invalid value {shown(given)}{allowed}"
    if kind in ("tuple_type", "list_type"):
        loc = err.get("loc") or ()
        return f"expected {_LISTS.get(str(loc[-1]) if loc else '', 'a list')} (got {shown(given)})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of fields (got {shown(given)})"
    if kind in EXPECTED:
        return expected(kind, given)
    if kind == "finite_number":  # YAML's .nan and .inf
        return f"expected a finite number (got {shown(given)})"
    if kind in BOUNDS and BOUNDS[kind][0] in ctx:
        key, op = BOUNDS[kind]
        bound = ctx[key]
        bound_text = f"{bound:g}" if isinstance(bound, float) else bound
        return f"invalid value {shown(given)} (allowed: {op} {bound_text})"
    return " ".join(str(err["msg"]).removeprefix("Value error, ").split())


def entry_problems(where: str, errors: list[Any]) -> list[str]:
    """`where.field: problem` for each pydantic error of one catalog entry (`ValidationError.errors()`);
    `where: problem` for a check of the whole entry, which has no field."""
    return [f"{where}{''.join(f'.{x}' for x in err['loc'])}: {value_problem(err)}" for err in errors]
