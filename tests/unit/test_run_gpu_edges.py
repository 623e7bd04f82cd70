"""Which GPU a manifest says the run had: the inventory's catalog match by name and memory, the names
in any section of the manifest where there is no inventory, the first named GPU the catalog lacks, and
an inventory that is not a mapping; an external endpoint is not said to have run on this CPU."""

from __future__ import annotations

from pathlib import Path

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
    assert run_gpu(m, "h100-sxm", "llamacpp", [0, 1, 2]) == "nvidia-l4"  # llama.cpp splits over all


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
    pci_0 = {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert device_of(m, {**vllm, "env": pci_0}, {}) == ("a100-80gb-sxm", 1)
    # the harness's own environment, by UUID, where the engine's env does not set it
    uuid_env = _mixed_host({"CUDA_VISIBLE_DEVICES": "GPU-h100bbbb"})
    llama = {"type": "llamacpp", "n_gpu_layers": 99}
    assert engine_gpu_indices(uuid_env, llama) == [1]
    assert device_of(uuid_env, llama, {}) == ("h100-sxm", 1)
    # the engine's env wins over the harness's
    assert device_of(uuid_env, {**llama, "env": pci_0}, {}) == ("a100-80gb-sxm", 1)
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
    m = _mixed_host({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert gpu_key(s, {}, m, variant) == "h100-sxm"
    assert gpu_mismatch(s, {}, m, variant) is None
    # the scenario's own engine, without the variant's env: NVML's GPU 0
    assert gpu_key(s, {}, m) == "a100-80gb-sxm"
    assert gpu_mismatch(s, {}, m) is not None


def test_on_a_mixed_host_in_cuda_order_the_engines_gpu_is_not_taken_by_nvml_index() -> None:
    """vLLM TP 1 on an A100 (NVML 0) + H100 (NVML 1) host, no CUDA_* set: CUDA numbers the GPUs fastest
    first, so its device 0 is likely the H100; the run was labelled, priced, rooflined and matched to
    claims as the A100, NVML's GPU 0, without a doubt."""
    from harness.point import gpu_key, gpu_mismatch
    from harness.rundevice import device_as_declared, device_of, engine_gpu_indices
    from harness.scenario import Scenario

    m, vllm = _mixed_host(), {"type": "vllm"}
    assert engine_gpu_indices(m, vllm) is None  # not known, rather than NVML's GPU 0
    # the scenario's hardware.gpu, one of the host's models, stands, and is marked as only declared
    assert device_of(m, vllm, {}) == ("h100-sxm", 1) and device_as_declared(m, vllm, {}, "h100-sxm")
    a100 = {**m, "scenario": {"hardware": {"gpu": "a100-80gb-sxm"}}}
    assert device_of(a100, vllm, {}) == ("a100-80gb-sxm", 1)
    # a GPU that is none of the host's, or none declared: unknown, nothing priced or matched as a GPU
    for other in ({"gpu": "l40s"}, {}):
        odd = {**m, "scenario": {"hardware": other}}
        assert device_of(odd, vllm, {}) == ("unknown", 1)
        assert not device_as_declared(odd, vllm, {}, "unknown")
    # CUDA's index 1 in its own order: as unknown as its index 0
    assert device_of(m, {**vllm, "env": {"CUDA_VISIBLE_DEVICES": "1"}}, {}) == ("h100-sxm", 1)
    # in PCI bus order CUDA's indices are NVML's: that GPU, recorded, not declared
    pci = _mixed_host({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert engine_gpu_indices(pci, vllm) == [0]
    assert device_of(pci, vllm, {}) == ("a100-80gb-sxm", 1)
    assert not device_as_declared(pci, vllm, {}, "a100-80gb-sxm")
    # a GPU named by UUID is that GPU, whatever the order
    by_uuid = {**vllm, "env": {"CUDA_VISIBLE_DEVICES": "GPU-a100aaaa"}}
    assert device_of(m, by_uuid, {}) == ("a100-80gb-sxm", 1)
    # every GPU of the host: the order does not matter (TP 2 takes both)
    assert engine_gpu_indices(m, {**vllm, "tensor_parallel_size": 2}) == [0, 1]

    def scenario(gpu: str) -> Scenario:
        eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}}
        return Scenario.model_validate({"name": "t", "engine": eng, "hardware": {"gpu": gpu}})

    how = (
        "this machine's GPUs are of several models (a100-80gb-sxm, h100-sxm) and CUDA numbers them fastest"
        " first (CUDA_DEVICE_ORDER is not PCI_BUS_ID) while NVML numbers them by PCI bus: which the engine"
        " ran on is not known; "
    )
    fix = " (set CUDA_DEVICE_ORDER=PCI_BUS_ID, or name the GPUs by UUID in CUDA_VISIBLE_DEVICES)"
    assert gpu_key(scenario("h100-sxm"), {}, m) == "h100-sxm"
    assert gpu_mismatch(scenario("h100-sxm"), {}, m) == (
        how + "points and tables take it to be hardware.gpu 'h100-sxm', as the scenario says" + fix
    )
    assert gpu_key(scenario("l40s"), {}, m) == "unknown"
    assert gpu_mismatch(scenario("l40s"), {}, m) == (
        how + "the scenario's hardware.gpu 'l40s' is none of them: points and tables call it 'unknown'" + fix
    )
    assert gpu_mismatch(scenario("h100-sxm"), {}, pci) == (
        "the scenario says hardware.gpu 'h100-sxm' but this machine's GPU is 'a100-80gb-sxm'; points and"
        " tables use 'a100-80gb-sxm'"
    )


def test_an_engine_that_sees_no_gpu_ran_on_the_cpu() -> None:
    """llama.cpp with n_gpu_layers 99 and CUDA_VISIBLE_DEVICES="" on an H100 host was labelled
    ('h100-sxm', 1) while the GPU sampler sampled no GPU: an empty list of its GPUs was read as not
    known, and every GPU of the host stood for it."""
    from harness.point import gpu_mismatch
    from harness.rundevice import device_of, engine_gpu_indices
    from harness.scenario import Scenario

    gpus = [{"index": 0, "name": H100_NVML, "uuid": "GPU-h", "memory_total_bytes": 85520809984,
             "catalog_key": "h100-sxm"}]  # fmt: skip
    m = {
        "hardware": {
            "gpu": {"available": True, "count": 1, "gpus": gpus},
            "cpu": {"model": "AMD EPYC 9654 96-Core Processor"},
        },
        "host": {"engine_env": {}},
        "scenario": {"hardware": {"gpu": "h100-sxm", "gpus": 1}},
    }
    llama = {"type": "llamacpp", "n_gpu_layers": 99, "env": {"CUDA_VISIBLE_DEVICES": ""}}
    assert engine_gpu_indices(m, llama) == []
    assert run_gpu(m, "h100-sxm", "llamacpp", []) is None
    assert ran_on_cpu(llama, {"gpus": 1}, {}, True, []) is True
    assert device_of(m, llama, {}) == ("epyc-9654", 1)
    # the harness's own environment hides the GPUs too
    hidden = {**m, "host": {"engine_env": {"CUDA_VISIBLE_DEVICES": ""}}}
    assert device_of(hidden, {**llama, "env": {}}, {}) == ("epyc-9654", 1)
    eng = {"type": "llamacpp", "model": {"source": "synthetic"}, "n_gpu_layers": 99}
    s = Scenario.model_validate({"name": "t", "engine": eng, "hardware": {"gpu": "h100-sxm"}})
    assert gpu_mismatch(s, {}, hidden) == (
        "the scenario says hardware.gpu 'h100-sxm' but the engine sees no GPU (CUDA_VISIBLE_DEVICES is"
        " empty); points and tables name this machine's CPU"
    )
    # an engine that sees the GPU still ran on it
    assert device_of(m, {**llama, "env": {}}, {}) == ("h100-sxm", 1)


def test_llama_cpp_extra_args_that_choose_among_gpus() -> None:
    from harness.rundevice import chooses_gpus

    assert chooses_gpus({"type": "llamacpp", "extra_args": ["--tensor-split=0,1"]}) is True
    assert chooses_gpus({"type": "llamacpp", "extra_args": ["-mg", "1"]}) is True
    assert chooses_gpus({"type": "llamacpp", "extra_args": ["-t", "8"]}) is False
    assert chooses_gpus({"type": "llamacpp"}) is False
    assert chooses_gpus({"type": "vllm", "extra_args": ["-ts", "0,1"]}) is False


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


def test_a_run_on_a_mixed_host_in_cuda_order_has_its_device_declared_or_unknown(tmp_path: Path) -> None:
    """The tables' device of a vLLM run on the A100 + H100 host, no CUDA_* set: the scenario's H100,
    marked as only declared (a doubt for `claims`), with the H100's roofline; with an L40S declared,
    `unknown`, without a roofline; it had been the A100, NVML's GPU 0, with the A100's roofline."""
    from harness.results import RunDir
    from harness.runinfo import run_points
    from harness.scenario import Scenario

    for gpu, device, declared in (("h100-sxm", "h100-sxm", True), ("l40s", "unknown", False)):
        eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
        s = Scenario.model_validate({"name": "t", "engine": eng, "hardware": {"gpu": gpu}})
        m = {
            **_mixed_host(),
            "scenario": s.model_dump(mode="json"),
            "engines": [{"variant": 0, "name": "vllm"}],
        }
        run = RunDir.create(tmp_path, "t")
        run.write_manifest({**m, "run_id": run.path.name, "status": "complete", "points_done": ["v0-c8"]})
        row = {
            "point_id": "v0-c8",
            "variant": 0,
            "concurrency": 8,
            "precision": "bf16",
            "output_tok_s": 500.0,
        }
        run.write_points([row])
        (p,) = run_points(run.path).to_dict("records")
        assert (p["device"], p["device_declared"], p["hardware"]) == (device, declared, device)
        assert (p["roofline_tok_s"] > 0) is declared  # NaN compares False: no roofline for `unknown`
