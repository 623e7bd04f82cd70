"""YAML as the harness reads every file: safe, each key once per mapping, and booleans as YAML 1.2
writes them (`true`/`false` only)."""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from harness.fileio import parse_problem


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


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    kind = node.tag.rsplit(":", 1)[-1]
    what = f"{kind} values are not taken (write text, a list or a mapping)"
    raise yaml.constructor.ConstructorError(None, None, what, node.start_mark)


# YAML's other types, which JSON has not: bytes, sets and ordered pairs passed as text or lists
for _tag in ("binary", "set", "omap", "pairs"):
    _UniqueKeyLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


# values a document may hold once its aliases are written out: each alias is a copy of its anchor to
# what reads the data (pydantic copies it), so 30 levels of anchors each used twice are a billion values
MAX_EXPANDED_VALUES = 100_000


def strict_yaml(text: str) -> Any:
    """The data of a YAML document; a duplicate key, a value that holds itself (`&a [*a]`), aliases that
    expand to more than MAX_EXPANDED_VALUES values, nesting deeper than Python recurses or an integer over
    its 4300 digits raise `yaml.YAMLError`."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
        values = _expanded_values(data, set(), {})
    except (RecursionError, ValueError) as e:  # no YAML errors: Python's limits, a date of no day
        raise yaml.YAMLError(parse_problem(e)) from None
    except _Endless:
        raise yaml.YAMLError("a value holds itself (an alias inside its own anchor): it has no end") from None
    if values > MAX_EXPANDED_VALUES:
        raise yaml.YAMLError(
            f"it holds {values:,} values with its aliases written out, more than the "
            f"{MAX_EXPANDED_VALUES:,} taken (each alias is a copy of its anchor)"
        )
    return data


class _Endless(Exception):
    """A list or mapping that contains itself."""


def _expanded_values(value: Any, open_ids: set[int], sizes: dict[int, int]) -> int:
    """How many values `value` holds, itself included, with every alias written out as a copy; raises
    _Endless where a list or mapping contains itself (YAML aliases can make such a value; JSON cannot).
    Each container is walked once: an alias used many times (or aliases of aliases) costs no more."""
    if not isinstance(value, list | dict):
        return 1
    if id(value) in sizes:
        return sizes[id(value)]
    if id(value) in open_ids:
        raise _Endless
    open_ids.add(id(value))
    items = value.values() if isinstance(value, dict) else value
    n = 1 + sum(_expanded_values(v, open_ids, sizes) for v in items)
    open_ids.discard(id(value))
    sizes[id(value)] = n
    return n
