from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.scenario import (
    ScenarioError,
    SyntheticModel,
    expand_points,
    load_scenario,
    parse_scenario,
    scenario_hash,
)
from tests.conftest import run_harness

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.yaml"))


def test_there_are_scenarios() -> None:
    assert any(p.name == "quickstart-cpu.yaml" for p in SCENARIOS)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_scenario_file_validates(path: Path) -> None:
    s = load_scenario(path)
    assert expand_points(s), f"{path} expands to no points"


GPU_VLLM = [p for p in SCENARIOS if p.parent.name in ("article", "cloud") and "type: vllm" in p.read_text()]


@pytest.mark.parametrize("path", GPU_VLLM, ids=lambda p: str(p.relative_to(ROOT)))
def test_gpu_vllm_scenarios_fix_the_scheduler_settings_vllm_picks_by_gpu(path: Path) -> None:
    """vLLM sets max_num_batched_tokens and max_num_seqs from the GPU when they are unset (8192 / 1024 on
    an H100, 2048 / 256 on an A100): a scenario run on both must set them, or its ratio compares those."""
    for p in expand_points(load_scenario(path)):
        assert p.engine.max_num_batched_tokens and p.engine.max_num_seqs, p.point_id
        assert p.engine.max_num_seqs >= (p.concurrency or 0), p.point_id  # no point queues in the client


def test_quickstart_expands_to_three_concurrency_points() -> None:
    s = load_scenario(ROOT / "scenarios" / "quickstart-cpu.yaml")
    assert [p.point_id for p in expand_points(s)] == ["v0-c1", "v0-c2", "v0-c4"]
    assert s.workload.input_tokens == 128 and s.workload.output_tokens == 64


BASE = {"name": "t", "engine": {"type": "llamacpp", "model": {"source": "synthetic"}}}


def messages(data: dict, file: str = "f.yaml") -> list[str]:
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(data, file)
    return ei.value.messages


def test_bad_enum_names_file_field_and_allowed_values() -> None:
    data = {**BASE, "workload": {"api": "grpc"}}
    assert messages(data) == ["f.yaml: workload.api: invalid value 'grpc' (allowed: 'completion' or 'chat')"]


def test_a_missing_engine_type_or_model_source_lists_the_values_it_takes() -> None:
    """pydantic names no tags for a missing discriminator: `engine.model.source: field required` had said
    nothing of what to write there."""
    assert messages({**BASE, "engine": {"model": {"source": "synthetic"}}}) == [
        "f.yaml: engine.type: field required (allowed: llamacpp, vllm, external)"
    ]
    external = {"type": "external", "base_url": "http://host:8000", "model": {"name": "m"}}
    assert messages({**BASE, "engine": external}) == [
        "f.yaml: engine.model.source: field required (allowed: path, package, synthetic, catalog, served)"
    ]


def test_a_long_value_is_echoed_cut_short_with_its_length() -> None:
    """A 5,000-character value filled the terminal: the message shows 80 characters and the length."""
    data = {**BASE, "workload": {"api": "g" * 5000}}
    shown = repr("g" * 5000)[:80]
    assert messages(data) == [
        f"f.yaml: workload.api: invalid value {shown}... (5,002 characters) (allowed: 'completion' or 'chat')"
    ]


def test_unknown_key_is_an_error_with_the_allowed_names_and_a_close_match() -> None:
    data = {**BASE, "load": {"concurency": [1]}}
    (msg,) = messages(data)
    assert msg.startswith("f.yaml: load.concurency: unknown field (did you mean 'concurrency'? allowed: ")
    assert "arrival, burstiness, concurrency, cooldown_requests, duration_s" in msg
    # inside a union branch: the branch's own fields (llama.cpp engine, synthetic model)
    data = {**BASE, "engine": {"type": "llamacpp", "model": {"source": "synthetic", "layerz": 2}}}
    assert messages(data) == [
        "f.yaml: engine.model.layerz: unknown field (did you mean 'layers'? allowed: context, dtype, ffn, "
        "heads, hidden, kv_heads, layers, seed, source, vocab)"
    ]
    # nothing close: only the allowed names
    (msg,) = messages({**BASE, "engine": {**BASE["engine"], "zzz": 1}})
    assert msg.startswith("f.yaml: engine.zzz: unknown field (allowed: batch_size, binary, ")

    # a length distribution's fields (the message had no allowed names: its location has a branch name)
    assert messages({**BASE, "workload": {"input_tokens": {"mean": 8, "value": 3}}}) == [
        "f.yaml: workload.input_tokens.value: unknown field (allowed: dist, max, mean, min, stddev)"
    ]


def test_a_variant_repeating_another_is_refused() -> None:
    """It ran the same engine configuration twice over, as a repeated concurrency would (refused)."""
    data = {**BASE, "variants": [{"n_gpu_layers": 0}, {"threads": 2}, {"n_gpu_layers": 0}]}
    assert messages(data) == [
        "f.yaml: variants[2]: the same engine configuration as variants[0] (allowed: each once)"
    ]
    # an override that sets the base's own value is the base again
    data = {
        **BASE,
        "engine": {**BASE["engine"], "threads": 2},
        "variants": [{"threads": 1}, {}, {"threads": 2}],
    }
    assert messages(data) == [
        "f.yaml: variants[2]: the same engine configuration as variants[1] (allowed: each once)"
    ]
    # a mapping in another key order is the same configuration
    data = {
        **BASE,
        "engine": {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}},
        "variants": [{"env": {"A": "1", "B": "2"}}, {"env": {"B": "2", "A": "1"}}],
    }
    assert messages(data) == [
        "f.yaml: variants[1]: the same engine configuration as variants[0] (allowed: each once)"
    ]


def test_a_field_of_another_engine_type_says_whose_it_is() -> None:
    """tensor_parallel_size on llama.cpp was only an unknown field, precision too."""
    (msg,) = messages({**BASE, "engine": {**BASE["engine"], "tensor_parallel_size": 2}})
    assert msg.startswith(
        "f.yaml: engine.tensor_parallel_size: unknown field for type llamacpp: a field of type vllm "
        "(allowed: batch_size, "
    )
    (msg,) = messages({**BASE, "engine": {**BASE["engine"], "precision": "fp8"}})
    assert msg.startswith(
        "f.yaml: engine.precision: unknown field for type llamacpp: it runs the GGUF's own precision (a path "
        "model: the file's, as Q8_0 or Q4_K_M; a synthetic one: model.dtype) (allowed: "
    )
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    (msg,) = messages({"name": "t", "engine": {**vllm, "n_gpu_layers": 3}})
    assert msg.startswith(
        "f.yaml: engine.n_gpu_layers: unknown field for type vllm: a field of type llamacpp ("
    )
    (msg,) = messages({**BASE, "variants": [{"max_num_seqs": 4}]})
    assert msg.startswith(
        "f.yaml: variants[0].max_num_seqs: unknown field for type llamacpp: a field of type"
    )
    # a field of no engine type, or inside the model: as before
    (msg,) = messages({**BASE, "engine": {**BASE["engine"], "model": {"source": "synthetic", "parallel": 2}}})
    assert msg.startswith("f.yaml: engine.model.parallel: unknown field (allowed: ")


def test_a_key_that_is_not_text_is_named_with_the_fields_allowed_there() -> None:
    """YAML reads `1:` or `true:` as a number or a boolean; pydantic's own text was "[1]: Keys should be
    strings", as if an item of a list."""
    assert messages({**BASE, 1: "x"}) == [
        "f.yaml: (top level): field name 1 is not text (allowed: description, engine, hardware, load, name, "
        "on_engine_failure, slo, telemetry, variants, workload)"
    ]
    (msg,) = messages({**BASE, "load": {True: [1]}})
    assert msg.startswith("f.yaml: load: field name True is not text (allowed: arrival, burstiness, ")


def test_a_nul_character_is_located_on_one_line_under_an_odd_key() -> None:
    """A NUL under a key with a newline in it had split the message over two lines."""
    assert messages({**BASE, "\n": [{"\0": None}]}) == [
        "f.yaml: ['\\n'][0]['\\x00']: holds a NUL character, which no path or value can"
    ]
    assert messages({**BASE, "workload": {"dataset": "a\0b"}}) == [
        "f.yaml: workload.dataset: holds a NUL character, which no path or value can"
    ]


def test_every_variant_error_is_reported_where_it_is() -> None:
    data = {**BASE, "variants": [{"n_gpu_layers": -7}, {"threads": 2}, {"bogus": 1, "parallel": "x"}]}
    msgs = messages(data)
    assert msgs[0] == "f.yaml: variants[0].n_gpu_layers: invalid value -7 (allowed: >= -1)"
    assert msgs[1] == "f.yaml: variants[2].parallel: expected a whole number (got 'x')"
    assert msgs[2].startswith("f.yaml: variants[2].bogus: unknown field (allowed: batch_size, ")
    assert len(msgs) == 3
    assert messages({**BASE, "variants": ["n_gpu_layers: 0"]}) == [
        "f.yaml: variants[0]: expected a mapping of engine fields (got 'n_gpu_layers: 0')"
    ]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "name: 2026-01-01",
            "f.yaml: name: expected text (got the date 2026-01-01: YAML reads it as one; quote it)",
        ),
        (
            "name: tést",
            "f.yaml: name: invalid value 'tést' (allowed: ASCII letters, digits, '_', '.' and '-', "
            "starting with a letter or digit: it names the run directory)",
        ),
        (
            "name: my run",
            "f.yaml: name: invalid value 'my run' (allowed: ASCII letters, digits, '_', '.' and '-', "
            "starting with a letter or digit: it names the run directory)",
        ),
        (
            "load: {requests: 1e3}",
            "f.yaml: load.requests: expected a whole number (got '1e3'): YAML reads 1e3 as text; write the "
            "number out, or with a dot and a signed exponent",
        ),
        ("load: {concurrency: [1, x]}", "f.yaml: load.concurrency[1]: expected a whole number (got 'x')"),
        ("engine: {host: 5}", "f.yaml: engine.host: expected text (got 5): quote it"),
        ("engine: {threads: 2.5}", "f.yaml: engine.threads: expected a whole number (got 2.5)"),
        ("engine: {flash_attn: maybe}", "f.yaml: engine.flash_attn: expected true or false (got 'maybe')"),
        ("slo: {ttft_s: abc}", "f.yaml: slo.ttft_s: expected a number (got 'abc')"),
        # a dot and a signed exponent make a YAML 1.1 float: no hint, the value is taken
        ("slo: {ttft_s: 1.5e+0}", None),
        ("engine: {flash_attn: 1e3}", "f.yaml: engine.flash_attn: expected true or false (got '1e3')"),
        (
            "load: {concurrency: [2026-01-01]}",
            "f.yaml: load.concurrency[0]: expected a whole number (got 2026-01-01)",
        ),
    ],
)
def test_values_of_the_wrong_type_say_what_the_field_takes(yaml_text: str, message: str | None) -> None:
    import yaml

    data = {**BASE, "engine": dict(BASE["engine"])}
    for key, value in yaml.safe_load(yaml_text).items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and key in data else value
    if message is None:
        parse_scenario(data, "f.yaml")
    else:
        assert messages(data) == [message]


def test_wrong_shapes_say_what_was_expected() -> None:
    assert messages({**BASE, "load": {"concurrency": 4}}) == [
        "f.yaml: load.concurrency: expected a list, e.g. [1, 2, 4] (got 4)"
    ]
    # each list as its field takes it: extra_args and variants are no lists of numbers
    assert messages({**BASE, "engine": {**BASE["engine"], "extra_args": "--kv-unified"}}) == [
        "f.yaml: engine.extra_args: expected a list of text arguments, one item each (got '--kv-unified')"
    ]
    assert messages({**BASE, "variants": {"n_gpu_layers": [0, 4]}}) == [
        "f.yaml: variants: expected a list of engine field overrides, e.g. [{n_gpu_layers: 0}, "
        "{n_gpu_layers: -1}] (got {'n_gpu_layers': [0, 4]})"
    ]
    assert messages({"name": "t", "engine": "llamacpp"}) == [
        "f.yaml: engine: expected a mapping of fields (got 'llamacpp')"
    ]
    assert messages(None) == ["f.yaml: the file is empty (expected a scenario: name, engine, load, ...)"]  # type: ignore[arg-type]
    assert messages({**BASE, "load": {"concurrency": [2, -2, 0]}}) == [
        "f.yaml: load.concurrency: every concurrency must be >= 1 ([1] is -2, [2] is 0)"
    ]


def test_unknown_catalog_model_is_a_scenario_error() -> None:
    data = {"name": "t", "engine": {"type": "vllm", "model": {"source": "catalog", "name": "llama-9000"}}}
    data["hardware"] = {"gpus": 1}
    (msg,) = messages(data)
    assert msg.startswith("f.yaml: engine.model.name: 'llama-9000' is not in the model catalog (allowed: ")
    assert "llama-3.1-70b" in msg


def test_discriminated_engine_type() -> None:
    msgs = messages({"name": "t", "engine": {"type": "tgi"}})
    assert len(msgs) == 1
    assert msgs[0].startswith("f.yaml: engine.type: invalid value 'tgi' (allowed: ")
    assert "'llamacpp'" in msgs[0] and "'vllm'" in msgs[0] and "'external'" in msgs[0]


def test_range_errors_name_the_bound_in_engine_and_variants() -> None:
    assert messages({**BASE, "engine": {**BASE["engine"], "parallel": 0}}) == [
        "f.yaml: engine.parallel: invalid value 0 (allowed: >= 1)"
    ]
    assert messages({**BASE, "variants": [{"parallel": 2}, {"parallel": -3}]}) == [
        "f.yaml: variants[1].parallel: invalid value -3 (allowed: >= 1)"
    ]
    assert messages({**BASE, "load": {"workers": 65, "duration_s": 0}}) == [
        "f.yaml: load.duration_s: invalid value 0 (allowed: > 0)",
        "f.yaml: load.workers: invalid value 65 (allowed: <= 64)",
    ]


def test_variants_override_engine_fields_and_multiply_points() -> None:
    data = {**BASE, "variants": [{"n_gpu_layers": 0}, {"n_gpu_layers": -1}], "load": {"concurrency": [1, 8]}}
    s = parse_scenario(data)
    pts = expand_points(s)
    assert [p.point_id for p in pts] == ["v0-c1", "v0-c8", "v1-c1", "v1-c8"]
    assert [p.engine.n_gpu_layers for p in pts] == [0, 0, -1, -1]


def test_open_loop_needs_rates() -> None:
    msgs = messages({**BASE, "load": {"mode": "open"}})
    assert msgs == ["f.yaml: load: open mode needs at least one rate in rates_rps"]


def test_hash_ignores_key_order_and_defaults_but_not_values() -> None:
    a = parse_scenario({"engine": BASE["engine"], "name": "t"})
    b = parse_scenario(BASE)
    assert scenario_hash(a) == scenario_hash(b)
    # a default written out is the same scenario (and so is one read by a harness with more fields)
    written = parse_scenario({**BASE, "workload": {"seed": 0, "ignore_eos": True}, "load": {"requests": 16}})
    assert scenario_hash(written) == scenario_hash(b)
    assert scenario_hash(parse_scenario({**BASE, "workload": {"seed": 1}})) != scenario_hash(b)
    assert scenario_hash(parse_scenario({**BASE, "load": {"requests": 17}})) != scenario_hash(b)


run_cli = run_harness


def test_validate_cli_bad_file_exit_2_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nengine:\n  type: llamacpp\n  model: {source: synthetic}\n  launcher: ollama\n"
        "load:\n  concurrency: [0]\n"
    )
    res = run_cli("validate", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (
        f"{bad}: engine.launcher: invalid value 'ollama' "
        "(allowed: 'xllamacpp', 'llama-server' or 'llama-cpp-python')"
    )
    assert lines[1] == f"{bad}: load.concurrency: every concurrency must be >= 1 ([0] is 0)"


def test_validate_cli_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nengine: [\n")
    res = run_cli("validate", str(broken), str(tmp_path / "missing.yaml"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert f"{broken}: line 3: invalid YAML" in res.stderr
    assert f"{tmp_path / 'missing.yaml'}: file not found" in res.stderr


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text(
        "name: t\nengine:\n  type: llamacpp\n  model: {source: synthetic}\nload: {concurrency: [1]}\n"
        "load: {concurrency: [2]}\n"
    )
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    assert ei.value.messages == [
        f"{f}: line 6: invalid YAML: duplicate key 'load' (each key once per mapping)"
    ]
    # a merge key's fields may be overridden: that is not a duplicate
    f.write_text(
        "x: &e {type: llamacpp, model: {source: synthetic}, parallel: 2}\nname: t\n"
        "engine: {<<: *e, parallel: 4}\n"
    )
    with pytest.raises(ScenarioError, match="x: unknown field"):  # parsed; only the helper key is extra
        load_scenario(f)
    f.write_text("name: t\nengine: {type: llamacpp, type: vllm}\n")
    with pytest.raises(ScenarioError, match="line 2: invalid YAML: duplicate key 'type'"):
        load_scenario(f)


def test_validate_cli_reports_missing_inputs_and_unknown_gpus(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: t\nengine:\n  type: llamacpp\n  model: {source: path, path: /nonexistent/m.gguf}\n"
        "workload: {dataset: /nonexistent/d.jsonl}\nhardware: {gpu: rtx-9090, gpus: 1}\n"
    )
    res = run_cli("validate", str(f))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{f}: engine.model.path: file not found: /nonexistent/m.gguf" in res.stderr
    assert f"{f}: workload.dataset: /nonexistent/d.jsonl: file not found" in res.stderr
    f.write_text(
        "name: t\nengine:\n  type: llamacpp\n  model: {source: synthetic}\nhardware: {gpu: rtx-9090}\n"
    )
    res = run_cli("validate", str(f))
    assert res.returncode == 0, res.stderr
    assert (
        "hardware.gpu: 'rtx-9090' is not in the hardware catalog: no roofline or catalog price" in res.stderr
    )


def test_validate_cli_good_file_exit_0() -> None:
    res = run_cli("validate", str(ROOT / "scenarios" / "quickstart-cpu.yaml"))
    assert res.returncode == 0, res.stderr
    assert "ok (3 points, 1 engine)" in res.stdout


def test_gpu_offload_on_cpu_only_hardware_is_rejected() -> None:
    data = {**BASE, "engine": {**BASE["engine"], "n_gpu_layers": -1}, "hardware": {"gpus": 0}}
    assert messages(data) == [
        "f.yaml: engine.n_gpu_layers: offloading -1 layer(s) to a GPU needs a GPU, but hardware.gpus is 0 "
        "(allowed: 0 on a CPU-only machine)"
    ]


def test_max_completion_tokens_is_taken_for_chat_on_engines_that_read_it() -> None:
    """OpenAI's reasoning models refuse max_tokens and any temperature but their own: a scenario can
    send max_completion_tokens and no temperature, where the API and the server read the field."""
    chat = {"api": "chat", "max_tokens_field": "max_completion_tokens", "temperature": None}
    s = parse_scenario({**BASE, "workload": chat}, "f.yaml")
    assert (s.workload.max_tokens_field, s.workload.temperature) == ("max_completion_tokens", None)
    assert messages({**BASE, "workload": {**chat, "api": "completion"}}) == [
        "f.yaml: workload.max_tokens_field: max_completion_tokens is a chat field, and workload.api is "
        "completion (allowed: max_tokens, or workload.api: chat)"
    ]
    lcp = {**BASE["engine"], "launcher": "llama-cpp-python"}
    said = (
        "launcher: llama-cpp-python's server reads only max_tokens and would pass over the "
        "max_completion_tokens workload.max_tokens_field sends (allowed: xllamacpp or llama-server, or "
        "max_tokens_field: max_tokens)"
    )
    assert messages({**BASE, "engine": lcp, "workload": chat}) == [f"f.yaml: engine.{said}"]
    # in one variant of several: that variant is named
    two = {**BASE, "workload": chat, "variants": [{}, {"launcher": "llama-cpp-python"}]}
    assert messages(two) == [f"f.yaml: variants[1].{said}"]
    # nor can extra_body send it beside the field the client sets
    ext = {"type": "external", "base_url": "http://127.0.0.1:9", "extra_body": {"max_completion_tokens": 8}}
    (msg,) = messages({**BASE, "engine": ext})
    assert msg.startswith("f.yaml: engine.extra_body: ") and "max_completion_tokens" in msg


def test_requests_longer_than_a_llamacpp_slot_are_rejected() -> None:
    """ctx_size is split between the server's slots: 4096 over 4 is 1024 a request."""
    eng = {**BASE["engine"], "ctx_size": 4096, "parallel": 4}
    data = {**BASE, "engine": eng, "workload": {"input_tokens": 1000, "output_tokens": 64}}
    assert messages(data) == [
        "f.yaml: engine.ctx_size: 4096 tokens over 4 slot(s) is 1024 per request, but the workload asks for "
        "up to 1064 (input + output tokens): llama.cpp would refuse or cut them short (allowed: ctx_size >= "
        "4256 with parallel 4, fewer slots, or one KV cache shared by all slots: extra_args "
        "[kv_unified=true])"
    ]
    # a distribution counts by its max; a unified KV cache gives each slot all of it
    data["workload"] = {"input_tokens": {"dist": "uniform", "mean": 500, "max": 999}, "output_tokens": 64}
    assert len(messages(data)) == 1
    data["engine"] = {**eng, "launcher": "llama-server", "extra_args": ["--kv-unified"]}
    assert parse_scenario(data, "f.yaml").engine.ctx_size == 4096
    data["engine"] = {
        **eng,
        "extra_args": ["kv_unified=true"],
    }  # xllamacpp's spelling (its launcher's default)
    assert parse_scenario(data, "f.yaml").engine.ctx_size == 4096
    data["engine"] = {**eng, "extra_args": ["kv_unified=yes"]}  # YAML 1.1's true, as xllamacpp reads it
    assert parse_scenario(data, "f.yaml").engine.ctx_size == 4096
    data["engine"] = {**eng, "parallel": 1}
    assert parse_scenario(data, "f.yaml").engine.ctx_size == 4096


def test_requests_longer_than_vllms_max_model_len_are_rejected() -> None:
    """max_model_len 1024 with 1024 + 256 tokens a request validated; vLLM refuses every such request."""
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}, "max_model_len": 1024}
    data = {"name": "t", "engine": eng, "workload": {"input_tokens": 1024, "output_tokens": 256}}
    assert messages(data) == [
        "f.yaml: engine.max_model_len: 1024 tokens, but the workload asks for up to 1280 (input + output "
        "tokens): vLLM would refuse those requests (allowed: max_model_len >= 1280, or shorter lengths)"
    ]
    # a variant's own cap is checked as the variant's
    data["variants"] = [{"max_model_len": 2048}, {"max_model_len": 1200}]
    (m,) = messages(data)
    assert m.startswith(
        "f.yaml: variants[1].max_model_len: 1200 tokens, but the workload asks for up to 1280"
    )
    data["variants"] = [{"max_model_len": 2048}]
    assert parse_scenario(data, "f.yaml").engine.max_model_len == 1024
    # a distribution counts by its longest draw
    data["workload"] = {"input_tokens": {"dist": "uniform", "mean": 700, "min": 600}, "output_tokens": 256}
    data["variants"] = []
    assert "up to 1056" in messages(data)[0]
    # past the catalog model's own context: vLLM refused it at start
    tiny = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}, "max_model_len": 8192}
    assert messages({"name": "t", "engine": tiny}) == [
        "f.yaml: engine.max_model_len: 8192 tokens is longer than tiny-llama's context (4096), which vLLM "
        "refuses at start (allowed: max_model_len <= 4096, or env VLLM_ALLOW_LONG_MAX_MODEL_LEN: '1')"
    ]
    allowed = {**tiny, "env": {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}}  # vLLM takes it then
    assert parse_scenario({"name": "t", "engine": allowed}).engine.max_model_len == 8192
    spelled = {**tiny, "env": {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": " TRUE"}}  # as vLLM reads it
    assert parse_scenario({"name": "t", "engine": spelled}).engine.max_model_len == 8192
    # a normal length without max counts 3 standard deviations above its mean: 128 + 3 x 32
    normal = {"input_tokens": {"dist": "normal", "mean": 128}, "output_tokens": 16}
    short = {**tiny, "max_model_len": 160}
    assert (
        "asks for up to 240 (input + output tokens)"
        in messages({"name": "t", "engine": short, "workload": normal})[0]
    )


def test_tensor_parallel_larger_than_the_gpus_present_is_rejected() -> None:
    data = {
        "name": "t",
        "engine": {
            "type": "vllm",
            "model": {"source": "catalog", "name": "llama-3.1-70b"},
            "tensor_parallel_size": 8,
        },
        "hardware": {"gpu": "h100-sxm", "gpus": 4},
    }
    assert messages(data) == [
        "f.yaml: engine.tensor_parallel_size: tensor x pipeline parallel = 8 GPUs, but hardware has 4 "
        "(hardware.gpus x hardware.nodes; allowed: <= 4)"
    ]
    data["hardware"]["nodes"] = 2
    assert parse_scenario(data).engine.tensor_parallel_size == 8


def test_vllm_cpu_offload_with_cpu_device_is_rejected() -> None:
    data = {
        "name": "t",
        "engine": {
            "type": "vllm",
            "model": {"source": "catalog", "name": "tiny-llama"},
            "device": "cpu",
            "cpu_offload_gb": 4,
        },
    }
    (msg,) = messages(data)
    assert msg.startswith("f.yaml: engine.cpu_offload_gb: offloading weights to the CPU needs a GPU engine")


def test_run_with_missing_model_file_exits_2_before_starting_anything(tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(
        "name: s\nengine:\n  type: llamacpp\n  model: {source: path, path: /nonexistent/m.gguf}\n"
    )
    res = run_cli("run", str(scen), "--results", str(tmp_path / "results"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"{scen}: engine.model.path: file not found: /nonexistent/m.gguf"
    assert not (tmp_path / "results").exists()


def test_more_client_processes_than_open_loop_max_concurrency_is_refused() -> None:
    # each worker holds at least one request; in closed loop a point below `workers` uses fewer processes
    assert parse_scenario({**BASE, "load": {"concurrency": [1, 4], "workers": 2}}).load.workers == 2
    open_loop = {"mode": "open", "rates_rps": [5], "max_concurrency": 1, "workers": 2}
    (msg,) = messages({**BASE, "load": open_loop})
    assert "max_concurrency must be >= 2 (allowed: workers <= 1)" in msg
    assert parse_scenario({**BASE, "load": {"concurrency": [2, 4], "workers": 2}}).load.workers == 2


def test_closed_loop_concurrency_above_the_request_count_is_refused() -> None:
    # 16 requests at concurrency 64 would run at most 16 in flight under a label of 64
    assert messages({**BASE, "load": {"concurrency": [1, 64], "requests": 16}}) == [
        "f.yaml: load: requests 16 + cooldown_requests 0: a closed-loop point never has more requests in "
        "flight than it sends, so they must add up to at least every concurrency (highest is 64)"
    ]
    assert parse_scenario({**BASE, "load": {"concurrency": [1, 64], "requests": 64}}).load.requests == 64
    # cooldown requests keep the point at its concurrency while the 16 measured ones run
    with_cooldown = {"concurrency": [64], "requests": 16, "cooldown_requests": 48}
    assert parse_scenario({**BASE, "load": with_cooldown}).load.cooldown_requests == 48
    # open loop has no such bound: arrivals come at their rate
    assert (
        parse_scenario({**BASE, "load": {"mode": "open", "rates_rps": [100], "requests": 4}}).load.requests
        == 4
    )


def test_workload_lengths_that_cannot_be_drawn_are_refused() -> None:
    def msg(w: dict) -> list[str]:
        return messages({**BASE, "workload": w})

    assert msg({"input_tokens": -5}) == ["f.yaml: workload.input_tokens: must be >= 1 token (got -5)"]
    assert msg({"output_tokens": 0}) == ["f.yaml: workload.output_tokens: must be >= 1 token (got 0)"]
    assert msg({"output_tokens": {"dist": "uniform", "mean": 100, "min": 200, "max": 50}}) == [
        "f.yaml: workload.output_tokens: min 200 is above max 50: no length can be drawn"
    ]
    assert msg({"output_tokens": {"dist": "uniform", "mean": 10, "min": 30}}) == [
        "f.yaml: workload.output_tokens: mean 10 is outside [min, max] = [30, none]"
    ]
    # a uniform distribution is drawn around its mean: one bound gives the other, both must agree with it
    # (drawn from [min, 2 x mean] before: {mean 100, min 80} averaged 141)
    assert msg({"output_tokens": {"dist": "uniform", "mean": 100, "min": 80, "max": 200}}) == [
        "f.yaml: workload.output_tokens: uniform from 80 to 200 has mean 140, not 100: the tables and the "
        "roofline would use 100 (set mean: 140, or bounds around it)"
    ]
    assert msg({"output_tokens": {"dist": "uniform", "mean": 100, "max": 250}}) == [
        "f.yaml: workload.output_tokens: a uniform distribution of mean 100 up to max 250 would start at "
        "-50: set min (allowed: max <= 199 without min)"
    ]
    ok = {"dist": "normal", "mean": 100, "min": 30, "max": 200}
    out = parse_scenario({**BASE, "workload": {"output_tokens": ok}}).workload.output_tokens
    assert not isinstance(out, int) and out.mean == 100


def test_a_binary_named_by_path_must_exist(tmp_path: Path) -> None:
    from harness.models import make_gguf
    from harness.scenario import input_file_errors

    model = make_gguf(tmp_path / "m.gguf", dtype="f16")
    data = {
        "name": "s",
        "engine": {
            "type": "llamacpp",
            "launcher": "llama-server",
            "binary": str(tmp_path / "nope" / "llama-server"),
            "model": {"source": "path", "path": str(model)},
        },
    }
    assert input_file_errors(parse_scenario(data), "f.yaml") == [
        f"f.yaml: engine.binary: file not found: {tmp_path / 'nope' / 'llama-server'}"
    ]
    del data["engine"]["binary"]  # llama-server from PATH: found (or not) when the engine starts
    assert input_file_errors(parse_scenario(data), "f.yaml") == []


def test_a_relative_path_not_found_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.models import make_gguf
    from harness.scenario import input_file_errors

    (tmp_path / "scenarios").mkdir()
    make_gguf(tmp_path / "scenarios" / "m.gguf", dtype="f16")
    (tmp_path / "scenarios" / "d.jsonl").write_text('{"input_tokens": 8, "output_tokens": 4}\n')
    monkeypatch.chdir(tmp_path)
    data = {
        "name": "s",
        "engine": {"type": "llamacpp", "model": {"source": "path", "path": "m.gguf"}},
        "workload": {"dataset": "d.jsonl"},
    }
    errors = input_file_errors(parse_scenario(data), "scenarios/s.yaml")
    cwd = f"relative paths resolve from the current directory, {tmp_path}"
    assert errors[0] == (
        f"scenarios/s.yaml: engine.model.path: file not found: m.gguf ({cwd}; the scenario's folder has it: "
        "scenarios/m.gguf)"
    )
    assert errors[1].startswith("scenarios/s.yaml: workload.dataset: d.jsonl: file not found")
    assert errors[1].endswith(f"({cwd}; the scenario's folder has it: scenarios/d.jsonl)")
    # a file found nowhere gets no pointer; a dataset that reads but is wrong gets no hint
    data["engine"]["model"]["path"] = "missing.gguf"
    (tmp_path / "scenarios" / "d.jsonl").write_text("not json\n")
    errors = input_file_errors(parse_scenario(data), "scenarios/s.yaml")
    assert errors[0] == f"scenarios/s.yaml: engine.model.path: file not found: missing.gguf ({cwd})"
    assert (
        errors[1]
        == "scenarios/s.yaml: workload.dataset: d.jsonl: file not found (" + cwd
        + "; the scenario's "
        "folder has it: scenarios/d.jsonl)"
    )
    (tmp_path / "d.jsonl").write_text("not json\n")
    assert "relative paths" not in input_file_errors(parse_scenario(data), "scenarios/s.yaml")[1]
    (tmp_path / "d.jsonl").unlink()
    (tmp_path / "scenarios" / "d.jsonl").write_text('{"input_tokens": 8, "output_tokens": 4}\n')
    data["engine"]["model"]["path"] = "m.gguf"
    # from the scenario's folder the same file validates; a path found nowhere gets no pointer
    monkeypatch.chdir(tmp_path / "scenarios")
    assert input_file_errors(parse_scenario(data), "s.yaml") == []
    data["engine"]["model"]["path"] = "other.gguf"
    assert input_file_errors(parse_scenario(data), "s.yaml") == [
        f"s.yaml: engine.model.path: file not found: other.gguf (relative paths resolve from the current "
        f"directory, {tmp_path / 'scenarios'})"
    ]


def test_the_same_problem_in_several_variants_is_said_once() -> None:
    from harness.scenario import input_file_errors

    engine = {"type": "llamacpp", "model": {"source": "path", "path": "/nonexistent/70b.gguf"}}
    data = {
        "name": "s",
        "engine": engine,
        "variants": [{"n_gpu_layers": 0}, {"n_gpu_layers": 40}, {"n_gpu_layers": 20}],
    }
    assert input_file_errors(parse_scenario(data), "f.yaml") == [
        "f.yaml: variants[0, 1, 2].model.path: file not found: /nonexistent/70b.gguf"
    ]
    data["variants"] = [{"model": {"source": "path", "path": "/nonexistent/a.gguf"}}, {}]
    assert input_file_errors(parse_scenario(data), "f.yaml") == [
        "f.yaml: variants[0].model.path: file not found: /nonexistent/a.gguf",
        "f.yaml: variants[1].model.path: file not found: /nonexistent/70b.gguf",
    ]


def test_run_says_in_one_line_when_results_cannot_be_written(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("name: t\nengine: {type: external, base_url: 'http://127.0.0.1:9'}\n")
    (tmp_path / "afile").write_text("")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")  # had said "cannot create it: File exists"
    for results, why in (
        ("afile", "exists and is not a directory"),
        ("afile/sub", "cannot create it: Not a directory"),
        ("dangling", f"a link to {tmp_path / 'gone'}, which does not exist"),
    ):
        res = run_cli("run", str(f), "--results", str(tmp_path / results), "--no-progress")
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert res.stderr.strip().splitlines()[-1] == f"--results {tmp_path / results}: {why}"


def test_a_load_level_given_twice_is_refused() -> None:
    # points are named by level: [1, 2, 1] made two v0-c1 points, and a resume ran only one of them
    assert messages({**BASE, "load": {"concurrency": [1, 2, 1]}}) == [
        "f.yaml: load.concurrency: concurrency 1 given more than once (allowed: each once)"
    ]
    assert messages({**BASE, "load": {"mode": "open", "rates_rps": [0.5, 2, 0.5, 2]}}) == [
        "f.yaml: load.rates_rps: rate 0.5, 2 given more than once (allowed: each once)"
    ]
    # as the point ids show them: one point
    assert messages({**BASE, "load": {"mode": "open", "rates_rps": [0.1, 0.1000001]}}) == [
        "f.yaml: load.rates_rps: rate 0.1 given more than once (allowed: each once)"
    ]


def test_a_tensor_parallel_size_the_heads_do_not_split_over_is_refused(tmp_path) -> None:
    import json

    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "fp8"}
    data = {
        "name": "t",
        "engine": {**eng, "tensor_parallel_size": 3},
        "hardware": {"gpu": "h100-sxm", "gpus": 8},
    }
    assert messages(data) == [
        "f.yaml: engine.tensor_parallel_size: 64 attention heads do not split evenly over 3 GPUs: vLLM would "
        "refuse it (allowed: 1, 2, 4, 8, 16, 32, 64)"
    ]
    # a checkpoint's own config.json says its heads
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 40, "num_key_value_heads": 8}))
    path = {"type": "vllm", "model": {"source": "path", "path": str(tmp_path)}, "tensor_parallel_size": 4}
    data = {"name": "t", "engine": path, "hardware": {"gpu": "h100-sxm", "gpus": 8}}
    assert parse_scenario(data, "f.yaml").engine.tensor_parallel_size == 4  # 40 / 4 and 8 / 4: fine
    data["engine"] = {**path, "tensor_parallel_size": 5}
    assert messages(data) == [
        "f.yaml: engine.tensor_parallel_size: 8 KV heads do not split evenly over 5 GPUs (nor 5 over them): "
        "vLLM would refuse it (allowed: 1, 2, 4, 8, 40)"
    ]
    # head counts no checkpoint has: vLLM says what is wrong with its config (this had said "(allowed: )")
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 40, "num_key_value_heads": -8}))
    assert parse_scenario(data, "f.yaml").engine.tensor_parallel_size == 5


def test_yaml_booleans_and_quoted_numbers_are_not_taken_as_numbers() -> None:
    """`concurrency: [true]` ran at concurrency 1, `requests: true` as 1 request, `input_tokens: "128"`
    and `ignore_eos: "yes"` were taken silently."""
    for load, field, got in (
        ({"concurrency": [True]}, "load.concurrency[0]", "True"),
        ({"requests": True}, "load.requests", "True"),
        ({"requests": 8.0}, "load.requests", "8.0"),
    ):
        assert messages({**BASE, "load": load}) == [f"f.yaml: {field}: expected a whole number (got {got})"]
    assert messages({**BASE, "workload": {"input_tokens": "128"}})[0].startswith(
        "f.yaml: workload.input_tokens"
    )
    assert messages({**BASE, "workload": {"ignore_eos": "yes"}}) == [
        "f.yaml: workload.ignore_eos: expected true or false (got 'yes')"
    ]
    # an int where a number is asked for is fine
    assert parse_scenario({**BASE, "load": {"burstiness": 2}}).load.burstiness == 2


def test_yaml_reads_only_true_and_false_as_booleans(tmp_path: Path) -> None:
    """YAML 1.1 also reads yes/no/on/off as booleans: `ignore_eos: yes` passed as true, and a free-form
    `no` (an extra_body value) was sent as false."""
    f = tmp_path / "s.yaml"
    text = (
        "name: y\n"
        "engine: {type: external, base_url: 'http://127.0.0.1:9', extra_body: {flag: no, on: off}}\n"
        "workload: {input_tokens: 16, output_tokens: 8, ignore_eos: %s}\n"
    )
    f.write_text(text % "yes")
    with pytest.raises(ScenarioError) as ei:
        load_scenario(f)
    assert ei.value.messages == [f"{f}: workload.ignore_eos: expected true or false (got 'yes')"]
    for word, value in (("true", True), ("False", False), ("TRUE", True)):
        f.write_text(text % word)
        s = load_scenario(f)
        assert s.workload.ignore_eos is value
        assert s.engine.extra_body == {"flag": "no", "on": "off"}


def test_a_shared_prefix_as_long_as_the_inputs_is_refused() -> None:
    """input_tokens 20 with a 30-token prefix made 31-token prompts, planned and counted as such, with
    nothing said about the 20 asked for."""
    assert messages({**BASE, "workload": {"input_tokens": 20, "shared_prefix_tokens": 30}}) == [
        "f.yaml: workload: shared_prefix_tokens 30 leaves no room for a request's own words in its "
        "input_tokens (shortest 20; allowed: shared_prefix_tokens < 20)"
    ]
    short = {"dist": "uniform", "mean": 100, "min": 40}
    assert (
        "(shortest 40;"
        in messages({**BASE, "workload": {"input_tokens": short, "shared_prefix_tokens": 40}})[0]
    )
    assert parse_scenario({**BASE, "workload": {"input_tokens": 64, "shared_prefix_tokens": 32}})


def test_a_served_model_name_is_one_printable_line() -> None:
    """It names the run in tables, report.md and plots: a line break had split report.md's rows."""

    def scenario(name: str) -> dict:
        model = {"source": "served", "name": name}
        return {"name": "e", "engine": {"type": "external", "base_url": "http://h:1", "model": model}}

    def served(name: str) -> list[str]:
        return messages(scenario(name))

    for bad in ("line1\n| injected |", "a\tb", "  ", "x\x1b[31m", "a\u200bb", "a\u202eb"):
        (m,) = served(bad)
        assert m.startswith("f.yaml: engine.model.name: invalid value "), m
        assert m.endswith("(allowed: a name without line breaks or control characters)"), m
    assert (
        parse_scenario(scenario("org/模型 name|<i>x</i> 🚀")).engine.model.name == "org/模型 name|<i>x</i> 🚀"
    )


def test_vllm_extra_args_may_not_set_what_the_harness_sets() -> None:
    """vLLM keeps the last of a flag given twice: a second --quantization had run while the manifest said
    the precision field's."""
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    for args, field in (
        (["--quantization", "awq"], "precision"),
        (["-q", "awq"], "precision"),
        (["--max_num_seqs=64"], "max_num_seqs"),  # vLLM's parser takes underscores as dashes
        (["--enable-prefix-caching"], "enable_prefix_caching"),
        (["-tp", "2"], "tensor_parallel_size"),
    ):
        (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": args}})
        assert m.endswith(f"the harness sets it itself (set engine.{field} instead)"), m
    # the other spellings vLLM's parser takes: an alias, the --no- forms, abbreviations
    for args, said in (
        (["--device-memory-utilization", "0.5"], "itself (set engine.gpu_memory_utilization instead)"),
        (["--no-enforce-eager"], "the harness sets it itself (set engine.enforce_eager instead)"),
        (["--no-enable-prompt-tokens-details"], "the harness sets it itself (the harness picks it)"),
        (["--max-num-seq", "4"], "an abbreviation of --max-num-seqs, which the harness sets itself (set"),
        (["--gpu-memory", "0.5"], "an abbreviation of --gpu-memory-utilization, which the harness sets"),
        (["--max-num", "4"], "an abbreviation of --max-num-seqs or --max-num-batched-tokens, which the"),
        (["--load-format", "auto"], "the harness sets it itself for a catalog model (dummy weights"),
        (["--tokenizer", "/t"], "the harness sets it itself for a catalog model (dummy weights"),
    ):  # fmt: skip
        (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": args}})
        assert said in m, m
    (m,) = messages({"name": "v", "engine": {**vllm, "env": {"VLLM_API_KEY": "k"}}})
    assert "env VLLM_API_KEY: the server would refuse the harness's own requests" in m
    (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": ["--port", "9000"]}})
    assert m.endswith("extra_args '--port': the harness sets it itself (the harness picks it)"), m
    (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": ["--api-key", "k"]}})
    assert "extra_args '--api-key': the server would refuse the harness's own requests" in m
    # data parallelism runs replicas on GPUs that energy, $/1M and the roofline would not count
    for args in (["--data-parallel-size", "2"], ["-dp", "4"], ["--data_parallel_size_local=2"]):
        (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": args}})
        assert "the harness runs one replica of the engine and counts its GPUs as" in m, m
    # an abbreviation of two flags set from two fields names no one field
    (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": ["--max-num", "4"]}})
    assert m.endswith("which the harness sets itself (the harness picks it)"), m
    # a value that starts with a dash is no flag, nor an abbreviation of one
    from harness.scenario.extra_args import vllm_extra_args_problems

    assert vllm_extra_args_problems(("--chat-template", "-"), False) == []
    # as many batched tokens as sequences is what vLLM takes
    assert parse_scenario({"name": "v", "engine": {**vllm, "max_num_batched_tokens": 64, "max_num_seqs": 64}})
    (m,) = messages({"name": "v", "engine": {**vllm, "max_num_batched_tokens": 64, "max_num_seqs": 256}})
    assert m == (
        "f.yaml: engine: max_num_batched_tokens 64 is less than max_num_seqs 256, which vLLM refuses at start"
        " (allowed: max_num_batched_tokens >= 256)"
    )
    # a checkpoint of one's own may be loaded with dummy weights
    own = {**vllm, "model": {"source": "path", "path": "/models/x"}, "extra_args": ["--load-format", "dummy"]}
    assert parse_scenario({"name": "v", "engine": own})
    ok = ["--distributed-executor-backend", "ray", "--max-num-partial-prefills", "2"]
    assert parse_scenario({"name": "v", "engine": {**vllm, "extra_args": ok}})


def test_extra_args_may_not_set_threads_batch_or_flash_attention_either() -> None:
    eng = {**BASE["engine"], "launcher": "llama-server", "threads": 2, "extra_args": ["-t", "8"]}
    assert messages({**BASE, "engine": eng}) == [
        "f.yaml: engine: extra_args '-t': the harness sets it itself (set engine.threads instead)"
    ]
    py = {**BASE["engine"], "launcher": "llama-cpp-python", "extra_args": ["--n_batch", "64"]}
    assert "set engine.batch_size instead" in messages({**BASE, "engine": py})[0]
    x = {**BASE["engine"], "extra_args": ["flash_attn_type=1"]}
    assert "set engine.flash_attn instead" in messages({**BASE, "engine": x})[0]
    # a shared prefix over inputs drawn from a normal distribution needs a floor under the draws
    normal = {"dist": "normal", "mean": 2000, "stddev": 50}
    assert (
        "set input_tokens.min (allowed: min > 256)"
        in messages({**BASE, "workload": {"input_tokens": normal, "shared_prefix_tokens": 256}})[0]
    )
    roomy = {**BASE["engine"], "ctx_size": 16384}
    workload = {"input_tokens": {**normal, "min": 1000}, "shared_prefix_tokens": 256}
    assert parse_scenario({**BASE, "engine": roomy, "workload": workload})


def test_a_one_slot_server_is_told_only_to_take_a_larger_context() -> None:
    eng = {**BASE["engine"], "launcher": "llama-cpp-python", "ctx_size": 512}
    assert messages({**BASE, "engine": eng, "workload": {"input_tokens": 1024, "output_tokens": 8}}) == [
        "f.yaml: engine.ctx_size: 512 tokens over 1 slot(s) is 512 per request, but the workload asks for up "
        "to 1032 (input + output tokens): llama.cpp would refuse or cut them short (allowed: ctx_size >= "
        "1032)"
    ]
    # the README's xllamacpp example validates
    x = {**BASE["engine"], "extra_args": ["kv_unified=true", "n_ubatch=256"]}
    assert parse_scenario({**BASE, "engine": x}).engine.extra_args == ("kv_unified=true", "n_ubatch=256")


def test_a_normal_length_clipped_on_one_side_is_refused_for_its_drifting_mean() -> None:
    """{normal, mean 100, stddev 50, min 80} averaged about 111.6 while the tables used 100."""
    one_sided = {"dist": "normal", "mean": 100, "stddev": 50, "min": 80}
    assert messages({**BASE, "workload": {"output_tokens": one_sided}}) == [
        "f.yaml: workload.output_tokens: normal of mean 100 and stddev 50 clipped to [80, none] averages "
        "about 111.5, not 100: the tables and the roofline would use 100 (set bounds as far below the mean "
        "as above it, or further from it)"
    ]
    even = {"dist": "normal", "mean": 100, "stddev": 50, "min": 20, "max": 180}
    assert parse_scenario({**BASE, "workload": {"output_tokens": even}})


def test_a_length_field_its_distribution_does_not_use_is_refused() -> None:
    """{mean: 128, stddev: 30} validated and sent 128 tokens every time: dist is fixed by default."""

    def said(length: dict[str, object]) -> list[str]:
        return messages({**BASE, "workload": {"input_tokens": length}})

    assert said({"mean": 128, "stddev": 30}) == [
        "f.yaml: workload.input_tokens: stddev given with dist: fixed (the default), which sends every "
        "request its mean: set dist: normal to draw lengths"
    ]
    assert said({"dist": "fixed", "mean": 128, "min": 10, "max": 200}) == [
        "f.yaml: workload.input_tokens: min and max given with dist: fixed, which sends every request its "
        "mean: set dist: normal or uniform to draw lengths"
    ]
    assert said({"dist": "uniform", "mean": 128, "min": 10, "stddev": 3}) == [
        "f.yaml: workload.input_tokens: stddev given with dist: uniform, which does not use it (stddev is "
        "for dist: normal)"
    ]
    for fine in ({"mean": 128}, {"dist": "uniform", "mean": 128, "min": 28}, {"dist": "normal", "mean": 9}):
        assert parse_scenario({**BASE, "workload": {"input_tokens": fine}}).workload.input_tokens


def test_lengths_given_beside_a_dataset_are_refused(tmp_path: Path) -> None:
    """They were passed over: the dataset's rows set every request's lengths."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"input_tokens": 9, "output_tokens": 4}\n')
    assert messages({**BASE, "workload": {"dataset": str(data), "input_tokens": 128}}) == [
        "f.yaml: workload: input_tokens given with a dataset, whose rows set every request's lengths: remove "
        "it, or the dataset"
    ]
    both = {"dataset": str(data), "input_tokens": 128, "output_tokens": 8}
    assert "input_tokens and output_tokens given with a dataset" in messages({**BASE, "workload": both})[0]
    assert parse_scenario({**BASE, "workload": {"dataset": str(data)}}).workload.dataset == str(data)


def test_a_synthetic_model_q8_0_cannot_write_is_refused_by_validate() -> None:
    """`dtype: q8_0` with `hidden: 48` validated, then `harness model prepare` and `run` stopped on it (q8_0
    quantizes blocks of 32 weights); heads that did not divide were said without their numbers."""
    q8 = {"source": "synthetic", "dtype": "q8_0", "hidden": 48, "heads": 4, "kv_heads": 3}
    assert messages({**BASE, "engine": {**BASE["engine"], "model": q8}}) == [
        "f.yaml: engine.model: heads 4 is not divisible by kv_heads 3 (allowed: kv_heads 1, 2, 4); "
        "hidden 48 is not a multiple of 32, as dtype q8_0 needs (allowed: hidden 64 or another multiple of "
        "32, or dtype f16)"
    ]
    odd = {"source": "synthetic", "hidden": 96, "heads": 5, "kv_heads": 5}
    assert messages({**BASE, "engine": {**BASE["engine"], "model": odd}}) == [
        "f.yaml: engine.model: hidden 96 is not divisible by heads 5 (allowed: heads 1, 2, 3, 4, 6, 8, 12, "
        "16, 24, 32, 48, 96)"
    ]
    # f16 takes a width that is no multiple of 32
    f16 = {"source": "synthetic", "hidden": 48, "heads": 4, "kv_heads": 2, "ffn": 100}
    got = parse_scenario({**BASE, "engine": {**BASE["engine"], "model": f16}}).engine.model
    assert got == SyntheticModel(**f16)


def test_chat_template_kwargs_in_extra_body_must_be_a_mapping() -> None:
    """Written as text, they validated; vLLM then refuses every request, and llama-server renders its
    template without them (a warning in its log alone)."""
    ext = {"type": "external", "base_url": "http://127.0.0.1:9"}
    bad = {**ext, "extra_body": {"chat_template_kwargs": "enable_thinking=false"}}
    assert messages({"name": "e", "engine": bad}) == [
        "f.yaml: engine.extra_body: chat_template_kwargs: expected a mapping of the chat template's "
        "variables, got 'enable_thinking=false' (e.g. chat_template_kwargs: {enable_thinking: false})"
    ]
    ok = {**ext, "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    assert parse_scenario({"name": "e", "engine": ok}).engine.extra_body == ok["extra_body"]


def test_every_extra_args_entry_the_harness_sets_is_said_at_once() -> None:
    """`-c` and `--threads-batch` were said one per `harness validate`: the second only after the first
    was fixed."""
    eng = {**BASE["engine"], "launcher": "llama-server", "extra_args": ["-c", "8192", "--threads-batch", "2"]}
    assert messages({**BASE, "engine": eng}) == [
        "f.yaml: engine: extra_args '-c': the harness sets it itself (set engine.ctx_size instead); "
        "extra_args '--threads-batch': the harness sets it itself (set engine.threads instead)"
    ]
    # a flag given twice is said once
    eng["extra_args"] = ["--port", "1", "--port", "2"]
    assert messages({**BASE, "engine": eng}) == [
        "f.yaml: engine: extra_args '--port': the harness sets it itself (the harness picks it)"
    ]
    # xllamacpp: every item that is no FIELD=VALUE in one message, then each field the harness sets
    x = {**BASE["engine"], "extra_args": ["--foo", "n_ctx=8192", "bar", "n_batch=64"]}
    assert messages({**BASE, "engine": x}) == [
        "f.yaml: engine: extra_args '--foo', 'bar': launcher xllamacpp takes FIELD=VALUE items (fields of "
        "xllamacpp's CommonParams, e.g. n_ubatch=256), not command-line options (those are for launcher "
        "llama-server); extra_args 'n_ctx': the harness sets it itself (set engine.ctx_size instead); "
        "extra_args 'n_batch': the harness sets it itself (set engine.batch_size instead)"
    ]
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    args = ["--max_num_seqs=8", "--api-key", "k", "--max-model", "9", "--max-num-seqs", "4"]
    (m,) = messages({"name": "v", "engine": {**vllm, "extra_args": args}})
    assert m == (
        "f.yaml: engine: extra_args '--max-num-seqs': the harness sets it itself (set engine.max_num_seqs "
        "instead); extra_args '--api-key': the server would refuse the harness's own requests, which carry "
        "no key (a server the harness starts listens on engine.host for it alone); extra_args '--max-model': "
        "an abbreviation of --max-model-len, which the harness sets itself (set engine.max_model_len instead)"
    )


def test_llama_server_extra_args_are_read_as_its_parser_reads_them() -> None:
    """llama-server reads `--ctx_size` as `--ctx-size` and keeps the last of a flag given twice: extra_args
    [--ctx_size, 2048] validated and, after the harness's own `--ctx-size 1024`, gave the server 2048
    (`llama-server --ctx-size 1024 --ctx_size 2048` says n_ctx 2048 in /props), the manifest 1024."""
    eng = {
        **BASE["engine"],
        "launcher": "llama-server",
        "extra_args": ["--ctx_size", "2048", "--n_gpu_layers", "0"],
    }
    assert messages({**BASE, "engine": eng}) == [
        "f.yaml: engine: extra_args '--ctx_size': the harness sets it itself (set engine.ctx_size instead); "
        "extra_args '--n_gpu_layers': the harness sets it itself (set engine.n_gpu_layers instead)"
    ]
    # a value may start with a dash; llama-cpp-python's own flags are written with underscores
    ok = ["--n-predict", "10", "--override-kv", "a=int:1", "--seed", "-1", "--swa_full"]
    assert parse_scenario({**BASE, "engine": {**eng, "extra_args": ok}}).engine.extra_args == tuple(ok)
    py = {**BASE["engine"], "launcher": "llama-cpp-python", "extra_args": ["--rope_freq_base", "10000"]}
    assert parse_scenario({**BASE, "engine": py})


def test_xllamacpp_fields_and_batch_threads_are_checked() -> None:
    x = {**BASE["engine"], "extra_args": ["n_threads=8"]}
    assert "CommonParams has no such field" in messages({**BASE, "engine": x})[0]
    # a value of the wrong type validated, then stopped the launcher with a traceback in the engine log
    x = {**BASE["engine"], "extra_args": ["n_batch_size_is_no_field=1", "n_ubatch=abc"]}
    (m,) = messages({**BASE, "engine": x})
    assert m.startswith(
        "f.yaml: engine: extra_args 'n_batch_size_is_no_field=1': xllamacpp's CommonParams has no such field"
        " (n_batch_size_is_no_field) (the launcher would stop at start); extra_args 'n_ubatch=abc': "
        "xllamacpp's CommonParams.n_ubatch does not take 'abc'"
    ), m
    # a field the harness sets is said as such, whatever its value
    x = {**BASE["engine"], "extra_args": ["n_batch=abc"]}
    assert messages({**BASE, "engine": x}) == [
        "f.yaml: engine: extra_args 'n_batch': the harness sets it itself (set engine.batch_size instead)"
    ]
    # a list of the wrong length: xllamacpp's own assertion, said as a value the field does not take
    x = {**BASE["engine"], "extra_args": ["tensor_split=[]"]}
    (m,) = messages({**BASE, "engine": x})
    assert m.startswith(
        "f.yaml: engine: extra_args 'tensor_split=[]': xllamacpp's CommonParams.tensor_split "
    )
    tb = {**BASE["engine"], "launcher": "llama-server", "extra_args": ["-tb", "8"]}
    assert "set engine.threads instead" in messages({**BASE, "engine": tb})[0]


def test_external_urls_that_cannot_be_requested_are_refused() -> None:
    """They validated, then crashed the run at start with httpx's InvalidURL traceback."""

    def ext(**engine: object) -> dict:
        return {"name": "e", "engine": {"type": "external", "base_url": "http://h:8000", **engine}}

    for url, said in (
        ("http://[::1", "base_url is not a URL (Invalid IPv6 URL)"),
        ("http://h:8000 x", "base_url is not a URL (Port could not be cast to integer value as '8000 x')"),
        ("http://h:99999", "base_url is not a URL (Port out of range 0-65535)"),
        ("http://:8000", "base_url needs a host and no spaces"),
        ("http://h:8000/v1?key=1", "base_url takes no ?query or #fragment"),
        ("https://me:s3cret@h/v1", "base_url takes no user:password@ (the URL is written into the run's"),
        ("https://token@h/v1", "base_url takes no user:password@"),
        ("http://[::1]]:80", "base_url is not a URL (Invalid IPv6 address"),
        ("http://h:8000/v1\x01", "base_url is not a URL (Invalid non-printable ASCII character in URL"),
        ("ftp://h", "base_url must start with http:// or https:// (e.g. http://host:8000/v1)"),
        # a server's own `listening on 127.0.0.1:8000`, copied as it is
        ("127.0.0.1:8000/v1", "base_url must start with http:// or https:// (e.g. http://127.0.0.1:8000/v1)"),
        # validated, then every request went to /v1/chat/completions/completions: HTTP 404
        (
            "http://h:8000/v1/chat/completions",
            "base_url ends in the API's route /chat/completions, which the harness adds itself (from "
            "workload.api): give the API's base, http://h:8000/v1",
        ),
        ("http://h:8000/v1/completions/", "base_url ends in the API's route /completions"),
    ):
        (m,) = messages(ext(base_url=url))
        assert m.startswith("f.yaml: engine.base_url: " + said), m
    (m,) = messages(ext(health_path="health"))
    assert m.startswith("f.yaml: engine.health_path: health_path is a path on the endpoint and starts with /")
    assert m.endswith("(e.g. /health)")
    for url in ("http://[::1]:8000", "https://host/v1/", "http://10.0.0.2:8000/v1"):
        assert parse_scenario(ext(base_url=url)).engine.base_url == url.rstrip("/")


def test_values_past_any_sensible_bound_are_refused() -> None:
    """They validated, then overflowed: duration_s 1e300 and rates of 1e-300 req/s in the schedule's
    nanoseconds, a uniform length of 1e22 tokens in numpy's int64."""
    (m,) = messages({**BASE, "load": {"duration_s": 1e300}})
    assert m.startswith("f.yaml: load.duration_s: ") and "604800" in m
    for field in ("warmup_requests", "cooldown_requests", "max_concurrency"):  # each request is planned
        (m,) = messages({**BASE, "load": {field: 10**9}})
        assert m == f"f.yaml: load.{field}: invalid value 1000000000 (allowed: <= 1000000)"
    (m,) = messages({**BASE, "load": {"mode": "open", "rates_rps": [1e-300]}})
    assert m == "f.yaml: load.rates_rps: rate 1e-300 req/s is out of range (allowed: 1e-06 to 1e+06)"
    huge = {"dist": "uniform", "mean": 5 * 10**21, "min": 1, "max": 10**22 - 1}
    (m,) = messages({**BASE, "workload": {"output_tokens": huge}})
    assert m.startswith(
        "f.yaml: workload.output_tokens: 9999999999999999999999 tokens is more than any model's"
    )
    ext = {"name": "e", "engine": {"type": "external", "base_url": "http://h:8000"}}
    assert parse_scenario({**ext, "workload": {"input_tokens": 128_000}}).workload.input_tokens == 128_000
    # a 260-character name failed the run with "File name too long"; seeds past int64 reached the request
    assert messages({**BASE, "name": "a" * 201}) == [
        "f.yaml: name: 201 characters is too long (allowed: at most 200: it names the run directory)"
    ]
    assert parse_scenario({**BASE, "name": "a" * 200}).name == "a" * 200
    assert messages({**BASE, "workload": {"seed": 2**63}}) == [
        "f.yaml: workload.seed: invalid value 9223372036854775808 (allowed: <= 9223372036854775807)"
    ]
    assert parse_scenario({**BASE, "load": {"seed": 2**63 - 1}}).load.seed == 2**63 - 1
    # a billion requests validated, then the run spent its memory planning them before the first send
    assert messages({**BASE, "load": {"requests": 10**9}}) == [
        "f.yaml: load.requests: invalid value 1000000000 (allowed: <= 1000000)"
    ]
    assert parse_scenario({**BASE, "load": {"requests": 10**6}}).load.requests == 10**6


def test_requests_past_the_models_trained_context_are_refused() -> None:
    """llama-server caps every slot at the model's trained context ('the slot context (768) exceeds the
    training context of the model (512) - capping'): a ctx_size that validate asked for still failed
    every request with HTTP 400."""
    eng = {"type": "llamacpp", "model": {"source": "synthetic", "context": 512}, "ctx_size": 1264}
    data = {**BASE, "engine": {**eng, "parallel": 2}, "workload": {"input_tokens": 600, "output_tokens": 32}}
    assert messages(data) == [
        "f.yaml: engine.ctx_size: the model's trained context is 512 tokens, which llama.cpp caps every "
        "slot at, but the workload asks for up to 632 (input + output tokens): llama.cpp would refuse or "
        "cut them short (allowed: shorter lengths, or a model trained on a longer context)"
    ]
    data["workload"] = {"input_tokens": 400, "output_tokens": 32}
    assert parse_scenario(data, "f.yaml").engine.ctx_size == 1264


def test_with_context_shift_only_the_prompt_must_fit_a_slot_and_the_shift_is_warned_of() -> None:
    from harness.scenario import combination_warnings

    eng = {**BASE["engine"], "launcher": "llama-server", "ctx_size": 512, "parallel": 1}
    eng["extra_args"] = ["--context-shift"]
    data = {**BASE, "engine": eng, "workload": {"input_tokens": 400, "output_tokens": 300}}
    (warned,) = [w for w in combination_warnings(parse_scenario(data), "f.yaml") if "context-shift" in w]
    assert warned.startswith("f.yaml: engine.extra_args: --context-shift lets requests run past a slot's")
    data["workload"] = {"input_tokens": 600, "output_tokens": 8}
    (msg,) = messages(data)
    assert "asks for up to 601 (input tokens, with --context-shift)" in msg


def test_vllm_without_max_model_len_is_held_to_the_catalog_models_context() -> None:
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama", "weights": "dummy"}}
    data = {**BASE, "engine": eng, "workload": {"input_tokens": 5000, "output_tokens": 8}}
    assert messages(data) == [
        "f.yaml: engine.max_model_len: unset, it is tiny-llama's context (4096 tokens), but the workload "
        "asks for up to 5008 (input + output tokens): vLLM would refuse those requests (allowed: shorter "
        "lengths)"
    ]


def test_dataset_rows_and_a_gguf_files_context_are_checked_once_read(tmp_path: Path) -> None:
    """Lengths only the files tell: validate said `ok`, and the run's requests failed with HTTP 400."""
    from harness.models import make_gguf
    from harness.scenario import input_file_errors

    data = tmp_path / "rows.jsonl"
    rows = [{"input_tokens": 900, "output_tokens": 300}, {"input_tokens": 200, "output_tokens": 50}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eng = {**BASE["engine"], "ctx_size": 1024, "parallel": 1}
    s = parse_scenario({**BASE, "engine": eng, "workload": {"dataset": str(data)}})
    assert input_file_errors(s, "f.yaml") == [
        "f.yaml: engine.ctx_size: 1024 tokens over 1 slot(s) is 1024 per request, but the workload asks for "
        "up to 1200 (input + output tokens): llama.cpp would refuse or cut them short (allowed: ctx_size >= "
        f"1200) (rows of workload.dataset {data})"
    ]
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}, "max_model_len": 1024}
    s = parse_scenario({**BASE, "engine": vllm, "workload": {"dataset": str(data)}})
    (msg,) = input_file_errors(s, "f.yaml")
    assert msg.startswith("f.yaml: engine.max_model_len: 1024 tokens, but the workload asks for up to 1200")
    # a GGUF trained on 256 tokens, served with a context of 4096
    gguf = make_gguf(tmp_path / "m.gguf", layers=1, hidden=64, heads=2, kv_heads=2, ffn=128, context=256)
    eng = {
        "type": "llamacpp",
        "model": {"source": "path", "path": str(gguf)},
        "ctx_size": 4096,
        "parallel": 1,
    }
    s = parse_scenario({**BASE, "engine": eng, "workload": {"input_tokens": 1000, "output_tokens": 8}})
    (msg,) = input_file_errors(s, "f.yaml")
    assert "the model's trained context is 256 tokens" in msg


def test_a_normal_length_without_a_max_whose_long_draws_would_not_fit_is_warned_of() -> None:
    """mean 300, stddev 60 against 512 tokens a slot: validate's mean + 3 sd (496 with the output) fits,
    and a draw of 573 failed with HTTP 400, the point's latencies then covering the shorter ones."""
    from harness.scenario import combination_warnings

    eng = {**BASE["engine"], "ctx_size": 1024, "parallel": 2}
    normal = {"dist": "normal", "mean": 300, "stddev": 60}
    data = {**BASE, "engine": eng, "workload": {"input_tokens": normal, "output_tokens": 16}}
    (w,) = [w for w in combination_warnings(parse_scenario(data), "f.yaml") if "without a max" in w]
    assert w == (
        "f.yaml: workload: a normal length without a max draws past mean + 3 standard deviations about once "
        "in 740, up to 616 tokens (input + output) at 5, which engine would refuse (a failed request, and "
        "latencies that leave the long ones out): give input_tokens / output_tokens a max"
    )
    data["workload"] = {"input_tokens": {**normal, "min": 200, "max": 400}, "output_tokens": 16}
    assert not [w for w in combination_warnings(parse_scenario(data), "f.yaml") if "without a max" in w]


def test_the_trained_context_caps_only_launchers_that_cap_slots_and_only_unstretched() -> None:
    """llama-cpp-python serves past the trained context (3000 + 100 tokens on a model trained at 2048);
    rope scaling on the command line stretches what llama.cpp takes as trained."""
    eng = {"type": "llamacpp", "model": {"source": "synthetic", "context": 512}, "ctx_size": 4096}
    work = {"input_tokens": 1000, "output_tokens": 32}
    lcp = {**eng, "launcher": "llama-cpp-python"}
    assert parse_scenario({**BASE, "engine": lcp, "workload": work}).engine.launcher == "llama-cpp-python"
    yarn = {**eng, "launcher": "llama-server", "parallel": 1, "extra_args": ["--rope-scaling", "yarn"]}
    assert parse_scenario({**BASE, "engine": yarn, "workload": work})
    assert (
        "trained context is 512" in messages({**BASE, "engine": {**eng, "parallel": 1}, "workload": work})[0]
    )


def test_context_shift_is_read_in_each_launchers_spelling_the_last_one_counting() -> None:
    from harness.scenario.checks import context_shift

    def shift(launcher: str, *args: str) -> bool:
        eng = {**BASE["engine"], "launcher": launcher, "extra_args": list(args)}
        return context_shift(parse_scenario({**BASE, "engine": eng}).engine)

    assert shift("llama-server", "--context-shift") and shift("xllamacpp", "ctx_shift=true")
    assert not shift("llama-server", "--context-shift", "--no-context-shift")
    assert not shift("xllamacpp", "ctx_shift=true", "ctx_shift=false") and not shift("llama-server")


def test_only_the_dataset_rows_a_point_sends_are_held_to_the_context(tmp_path: Path) -> None:
    """Rows are taken from the first on, one a request: a long row 900 of 1000, never reached by 20
    requests a point, refused a scenario that runs."""
    from harness.scenario import input_file_errors

    data = tmp_path / "rows.jsonl"
    rows = [{"input_tokens": 100, "output_tokens": 10}] * 1000
    rows[900] = {"input_tokens": 5000, "output_tokens": 10}
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eng = {**BASE["engine"], "ctx_size": 1024, "parallel": 1}
    load = {"concurrency": [1], "requests": 20, "warmup_requests": 2}
    s = parse_scenario({**BASE, "engine": eng, "workload": {"dataset": str(data)}, "load": load})
    assert input_file_errors(s, "f.yaml") == []
    s = parse_scenario(
        {**BASE, "engine": eng, "workload": {"dataset": str(data)}, "load": {**load, "requests": 950}}
    )
    (msg,) = input_file_errors(s, "f.yaml")
    assert "asks for up to 5010 (input + output tokens)" in msg
