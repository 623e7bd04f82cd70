"""Strict YAML reading: the expanded-values cap at its edge, and YAML's types that JSON has not."""

from __future__ import annotations

import pytest
import yaml

from harness.yamlio import MAX_EXPANDED_VALUES, strict_yaml


def test_the_values_cap_counts_the_list_itself_and_takes_exactly_the_cap() -> None:
    """A list of 99,999 scalars is 100,000 values (the list is one): taken; one scalar more is not."""
    at_cap = "[" + ", ".join(["1"] * (MAX_EXPANDED_VALUES - 1)) + "]"
    assert len(strict_yaml(at_cap)) == MAX_EXPANDED_VALUES - 1
    with pytest.raises(yaml.YAMLError) as e:
        strict_yaml(at_cap[:-1] + ", 1]")
    assert str(e.value) == (
        "it holds 100,001 values with its aliases written out, more than the 100,000 taken (each alias is a "
        "copy of its anchor)"
    )


@pytest.mark.parametrize(
    ("document", "kind"),
    [
        ("!!binary aGVsbG8=", "binary"),
        ("!!set {a: null}", "set"),
        ("!!omap [a: 1]", "omap"),
        ("!!pairs [a: 1]", "pairs"),
    ],
)
def test_yaml_types_that_json_has_not_are_refused_by_name(document: str, kind: str) -> None:
    with pytest.raises(yaml.YAMLError) as e:
        strict_yaml(f"x: {document}\n")
    assert f"{kind} values are not taken (write text, a list or a mapping)" in str(e.value)
    assert "tag:yaml.org" not in str(e.value)
