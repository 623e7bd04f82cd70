"""Which GPU a manifest says the run had: the inventory's catalog match by name and memory, the names
in any section of the manifest where there is no inventory, the first named GPU the catalog lacks, and
an inventory that is not a mapping; an external endpoint is not said to have run on this CPU."""

from __future__ import annotations

import pytest

from harness.rundevice import MachineGpu, detected_gpu, machine_gpu, nvml_key, ran_on_cpu, run_gpu

H100_NVML = "NVIDIA H100 80GB HBM3"


def test_an_inventoried_catalog_gpu_with_its_memory_is_that_gpu() -> None:
    m = {
        "hardware": {
            "gpu": {
                "available": True,
                "gpus": [{"name": H100_NVML, "memory_total_bytes": 85520809984, "catalog_key": "h100-sxm"}],
            }
        }
    }
    found = detected_gpu(m)
    assert found is not None and found.key == "h100-sxm"
    assert machine_gpu(m) == MachineGpu("h100-sxm", False)
    assert run_gpu(m, "a100-80gb-sxm", "vllm") == "h100-sxm"  # not the scenario's


def test_without_an_inventory_a_gpu_name_in_any_section_is_found() -> None:
    """After other strings of the hardware section, or in the telemetry or host section."""
    later = {"hardware": {"cpu": {"model": "AMD EPYC 9654 96-Core Processor"}, "gpu": {"name": H100_NVML}}}
    found = detected_gpu(later)
    assert found is not None and found.key == "h100-sxm"
    cpu_only = {"cpu": {"model": "AMD EPYC 9654 96-Core Processor"}}
    for section in ("telemetry", "host"):
        found = detected_gpu({"hardware": cpu_only, section: {"gpu": H100_NVML}})
        assert found is not None and found.key == "h100-sxm", section


def test_a_gpu_the_catalog_lacks_goes_by_the_first_inventoried_name() -> None:
    """An entry without a name is passed over; of two named GPUs, the first names the machine."""
    l4 = {"name": "NVIDIA L4", "memory_total_bytes": 23034462208, "catalog_key": None}
    a10 = {"name": "NVIDIA A10", "memory_total_bytes": 24146608128, "catalog_key": None}
    m = {"hardware": {"gpu": {"available": True, "gpus": [{"name": None}, l4, a10]}}}
    assert machine_gpu(m) == MachineGpu("nvidia-l4", False)
    assert run_gpu(m, "h100-sxm", "llamacpp") == "nvidia-l4"


def test_an_inventory_that_is_not_a_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError) as e:
        machine_gpu({"hardware": {"gpu": ["NVIDIA L4"]}})
    assert str(e.value) == "hardware.gpu is a list, not a mapping"


def test_an_nvml_name_without_letters_or_digits_goes_by_gpu() -> None:
    assert nvml_key("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert nvml_key("(!)") == "gpu"


def test_an_external_endpoint_is_not_said_to_have_run_on_the_cpu() -> None:
    assert ran_on_cpu({"type": "external"}, {"gpus": 1}, {}, False) is False


def test_no_gpu_here_carries_the_inventorys_reason_and_none_where_it_gives_none() -> None:
    said = {"available": False, "reason": "nvmlInit: driver not loaded", "no_gpu": True}
    assert machine_gpu({"hardware": {"gpu": said}}) == MachineGpu(None, True, "nvmlInit: driver not loaded")
    assert machine_gpu({"hardware": {"gpu": {"available": False, "no_gpu": True}}}) == MachineGpu(
        None, True, ""
    )
    assert machine_gpu({}) == MachineGpu(None, False, "")


A100_NVML = "NVIDIA A100-SXM4-80GB"


def _mixed_host(engine_env: dict[str, str] | None = None) -> dict[str, object]:
    """A host with an A100 80GB SXM at NVML index 0 and an H100 SXM at index 1, as the inventory
    records them."""
    gpus = [
        {"index": 0, "name": A100_NVML, "uuid": "GPU-a100aaaa", "memory_total_bytes": 85899345920,
         "catalog_key": "a100-80gb-sxm"},
        {"index": 1, "name": H100_NVML, "uuid": "GPU-h100bbbb", "memory_total_bytes": 85520809984,
         "catalog_key": "h100-sxm"},
    ]  # fmt: skip
    return {
        "hardware": {"gpu": {"available": True, "count": 2, "gpus": gpus}},
        "host": {"engine_env": engine_env or {}},
        "scenario": {"hardware": {"gpu": "h100-sxm", "gpus": 1}},
    }


def test_on_a_host_with_two_gpu_models_the_engines_gpu_names_the_run() -> None:
    """An engine given the H100 of an A100 + H100 host (CUDA_VISIBLE_DEVICES=1, CUDA numbering the GPUs
    as NVML does) was labelled, priced and rooflined as the A100, the inventory's first GPU."""
    from harness.rundevice import device_of, engine_gpu_indices

    m = _mixed_host()
    vllm = {"type": "vllm", "env": {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}
    assert engine_gpu_indices(m, vllm) == [1]
    assert device_of(m, vllm, {}) == ("h100-sxm", 1)
    assert device_of(m, {**vllm, "env": {"CUDA_VISIBLE_DEVICES": "0"}}, {}) == ("a100-80gb-sxm", 1)
    # the harness's own environment, by UUID, where the engine's env does not set it
    uuid_env = _mixed_host({"CUDA_VISIBLE_DEVICES": "GPU-h100bbbb"})
    llama = {"type": "llamacpp", "n_gpu_layers": 99}
    assert engine_gpu_indices(uuid_env, llama) == [1]
    assert device_of(uuid_env, llama, {}) == ("h100-sxm", 1)
    # the engine's env wins over the harness's
    assert device_of(uuid_env, {**llama, "env": {"CUDA_VISIBLE_DEVICES": "0"}}, {}) == ("a100-80gb-sxm", 1)
    # a GPU the catalog lacks among the engine's goes by its NVML name, not by the catalog GPU beside it
    l4 = _mixed_host()
    l4["hardware"]["gpu"]["gpus"][1].update(name="NVIDIA L4", catalog_key=None)  # type: ignore[index]
    assert run_gpu(l4, "h100-sxm", "vllm", engine_gpu_indices(l4, vllm)) == "nvidia-l4"
    # an external endpoint: the harness launched nothing, its GPUs are not known here
    assert engine_gpu_indices(m, {"type": "external", "env": {"CUDA_VISIBLE_DEVICES": "1"}}) is None


def test_a_points_gpu_is_that_of_its_variants_engine_on_a_mixed_host() -> None:
    from harness.point import gpu_key, gpu_mismatch
    from harness.scenario import Scenario, expand_points

    eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}}
    s = Scenario.model_validate(
        {
            "name": "t",
            "engine": eng,
            "variants": [{"env": {"CUDA_VISIBLE_DEVICES": "1"}}],
            "hardware": {"gpu": "h100-sxm"},
        }
    )
    variant = expand_points(s)[0].engine
    m = _mixed_host()
    assert gpu_key(s, {}, m, variant) == "h100-sxm"
    assert gpu_mismatch(s, {}, m, variant) is None
    # the scenario's own engine, without the variant's env: NVML's GPU 0
    assert gpu_key(s, {}, m) == "a100-80gb-sxm"
    assert gpu_mismatch(s, {}, m) is not None


def test_llama_cpp_told_to_use_some_gpus_runs_on_those_it_put_weights_on() -> None:
    """`-ts 0,1,1` on a 3-GPU box whose scenario says `gpus: 3`: the run was labelled 3x and priced for
    three GPUs, while llama.cpp put its weights on CUDA1 and CUDA2 alone."""
    from harness.engines.llamacpp import load_placement
    from harness.rundevice import device_of, engine_gpu_indices

    from .test_telemetry_nvml import THREE_GPU_LOG

    gpus = [
        {"index": i, "name": H100_NVML, "uuid": f"GPU-{i}", "memory_total_bytes": 85520809984,
         "catalog_key": "h100-sxm"}
        for i in range(3)
    ]  # fmt: skip
    m = {
        "hardware": {"gpu": {"available": True, "count": 3, "gpus": gpus}},
        "scenario": {"hardware": {"gpu": "h100-sxm", "gpus": 3}},
    }
    cfg = {"type": "llamacpp", "n_gpu_layers": 99, "extra_args": ["-ts", "0,1,1"]}
    engine = {"placement": load_placement(THREE_GPU_LOG)}
    assert engine_gpu_indices(m, cfg, engine) == [1, 2]
    assert device_of(m, cfg, engine) == ("h100-sxm", 2)
    # a log that does not tell: the scenario's count stands
    assert device_of(m, cfg, {}) == ("h100-sxm", 3)
