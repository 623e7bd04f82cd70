"""Generated malformed scenario documents are rejected cleanly (ScenarioError with file: field messages)
or accepted as valid scenarios: never another exception."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scenario import Scenario, ScenarioError, expand_points, parse_scenario

VALID: dict[str, Any] = {
    "name": "fuzz",
    "engine": {
        "type": "llamacpp",
        "model": {"source": "synthetic", "layers": 2},
        "parallel": 4,
        "n_gpu_layers": 0,
        "extra_args": ["n_ubatch=256"],
    },
    "variants": [{"n_gpu_layers": -1}],
    "workload": {
        "api": "completion",
        "input_tokens": 128,
        "output_tokens": {"dist": "uniform", "mean": 32, "min": 1, "max": 64},
    },
    "load": {"mode": "closed", "concurrency": [1, 2], "requests": 4},
    "slo": {"ttft_s": 2.0},
    "telemetry": {"interval_s": 0.1},
    "hardware": {"gpu": "h100-sxm", "gpus": 1},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["vllm", "external", "chat", "open", "fp8", "q8_0", "-1", "1e9"]),
)
values = st.recursive(
    scalars,
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple) -> Any:
    if not path:
        return doc
    node = doc
    for p in path[:-1]:
        node = node[p]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, list):
        del node[path[-1]]
    return doc


@st.composite
def malformed(draw: st.DrawFn) -> Any:
    doc: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "add_key"]))
        if action == "replace":
            doc = _set(doc, path, draw(values))
        elif action == "delete":
            doc = _delete(doc, path)
        else:
            node = doc
            for p in path:
                node = node[p]
            if isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return doc


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(malformed())
def test_malformed_documents_are_rejected_cleanly_or_valid(doc: Any) -> None:
    try:
        s = parse_scenario(doc, "gen.yaml")
    except ScenarioError as e:
        assert e.messages, "a rejection must say why"
        for m in e.messages:
            assert m.startswith("gen.yaml: "), m
            assert "\n" not in m and "Traceback" not in m
        return
    assert isinstance(s, Scenario)
    assert expand_points(s)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_never_escapes_as_another_exception(text: str) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    try:
        parse_scenario(data, "gen.yaml")
    except ScenarioError as e:
        assert all(m.startswith("gen.yaml: ") for m in e.messages)


def test_the_scenario_the_fuzzing_starts_from_is_valid() -> None:
    """Otherwise every mutation starts from an error already, and the fuzzing tests little."""
    from harness.scenario import parse_scenario

    assert parse_scenario(copy.deepcopy(VALID), "fuzz.yaml").name == "fuzz"
