"""Launch checks at their edges: several nodes in the GPU count, engines on the CPU, images a launcher or
a vendor needs, --max-hours at the scenario's load exactly, cards of one SkyPilot name that differ, and
the wording of the GPU-name warnings."""

from __future__ import annotations

from typing import Any

import pytest

from harness.cloud import checks
from harness.cloud.checks import check_launch
from harness.cloud.task import Accelerators, CloudError, LaunchOptions
from harness.scenario import parse_scenario

IDLE_GPUS = (
    "t.yaml: every engine configuration runs on the CPU (n_gpu_layers: 0, device: cpu or hardware.gpus: 0): "
    "the GPUs rented sit idle"
)
LLAMA_8B = {"source": "catalog", "name": "llama-3.1-8b", "weights": "dummy"}


def scenario(engine: dict[str, Any], **over: Any) -> Any:
    return parse_scenario({"name": "t", "engine": engine, **over}, "t.yaml")


def launch(s: Any, gpus: str, **kw: Any) -> list[str]:
    name, _, count = gpus.partition(":")
    return check_launch(s, "t.yaml", LaunchOptions(accelerators=Accelerators(name, int(count or 1)), **kw))


def refused(s: Any, gpus: str, **kw: Any) -> list[str]:
    with pytest.raises(CloudError) as ei:
        launch(s, gpus, **kw)
    return ei.value.messages


def test_too_few_gpus_over_several_nodes_counts_every_node() -> None:
    """TP 8 × PP 4 on two nodes of 8: 16 GPUs, said with the node count in the plural."""
    s = scenario(
        {
            "type": "vllm",
            "model": {"source": "catalog", "name": "llama-3.1-70b"},
            "tensor_parallel_size": 8,
            "pipeline_parallel_size": 4,
            "extra_args": ["--distributed-executor-backend", "ray"],
        },
        hardware={"gpus": 8, "nodes": 4},
    )
    assert refused(s, "H100:8", nodes=2, infra="aws") == [
        "t.yaml: engine.tensor_parallel_size: tensor_parallel_size 8 × pipeline_parallel_size 4 needs 32 "
        "GPUs; the launch has 16 (H100:8 × 2 nodes)"
    ]


def test_vllm_on_the_cpu_leaves_the_rented_gpus_idle() -> None:
    s = scenario({"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}, "device": "cpu"})
    assert launch(s, "H100:1") == [IDLE_GPUS]


def test_llama_cpp_python_needs_an_image_of_its_own_and_takes_one() -> None:
    """`--image none` leaves the CUDA build of llama-cpp-python out as the default image does; an image
    passed has it."""
    s = scenario(
        {
            "type": "llamacpp",
            "model": {"source": "synthetic"},
            "launcher": "llama-cpp-python",
            "n_gpu_layers": -1,
        }
    )
    assert refused(s, "H100:1", infra="aws", image="none") == [
        "t.yaml: engine.launcher: 'llama-cpp-python' needs an image with it built for CUDA: build "
        "docker/Dockerfile.llamacpp --target llama-cpp-python, push it, pass --image docker:REF"
    ]
    assert launch(s, "H100:1", infra="aws", image="docker:me/llama-cpp-python:1") == []


def test_an_amd_gpu_on_the_clouds_vm_image_is_refused() -> None:
    s = scenario({"type": "vllm", "model": LLAMA_8B})
    assert refused(s, "MI300X:1", image="none") == [
        "--gpus: MI300X is an AMD GPU, and the default images are CUDA builds for NVIDIA GPUs (allowed: an "
        "NVIDIA accelerator, or --image docker:REF with a build of the engine for it)"
    ]


def max_hours_said(s: Any, hours: float) -> list[str]:
    return [w for w in launch(s, "H100:1", infra="aws", max_hours=hours) if "--max-hours" in w]


def test_open_loop_arrivals_as_long_as_max_hours_are_not_said() -> None:
    """36 requests at 0.1 req/s arrive over 360 s, --max-hours 0.1 exactly: nothing to say; one more
    request is; two points are said in the plural."""

    def open_loop(rates: list[float], requests: int) -> Any:
        load = {"mode": "open", "rates_rps": rates, "requests": requests, "cooldown_requests": 0}
        return scenario({"type": "vllm", "model": LLAMA_8B}, load=load)

    assert max_hours_said(open_loop([0.1], 36), 0.1) == []
    assert max_hours_said(open_loop([0.1], 37), 0.1) == [
        "t.yaml: load: the open-loop arrivals of its 1 point alone take 6.2 min, before 1 engine start: "
        "--max-hours 0.1 (6 min) stops the run before its point is done (raise --max-hours, or shorten the "
        "point)"
    ]
    # 64 requests at 0.1 and at 0.2 req/s: 640 + 320 s
    assert max_hours_said(open_loop([0.1, 0.2], 64), 0.1) == [
        "t.yaml: load: the open-loop arrivals of its 2 points alone take 16 min, before 1 engine start: "
        "--max-hours 0.1 (6 min) stops the run before the last points (finished points are kept; raise "
        "--max-hours, or set fewer points)"
    ]


def test_points_one_second_over_max_hours_are_said() -> None:
    """Two points of up to 1800.5 s are 3601 s: a second past --max-hours 1 (3600 s)."""
    load = {"concurrency": [1, 2], "requests": 8, "duration_s": 1800.5}
    s = scenario({"type": "vllm", "model": LLAMA_8B}, load=load)
    assert max_hours_said(s, 1) == [
        "t.yaml: load.duration_s: 2 points of up to 1800.5 s are up to 60.02 min of load, before 1 engine "
        "start: --max-hours 1 (60 min) stops the run before the last points where they run that long "
        "(finished points are kept; raise --max-hours, or set fewer points)"
    ]
    assert (
        max_hours_said(scenario({"type": "vllm", "model": LLAMA_8B}, load={**load, "duration_s": 1800}), 1)
        == []
    )
    # one point: said as one
    one = scenario({"type": "vllm", "model": LLAMA_8B}, load={"concurrency": [1], "duration_s": 3601})
    assert max_hours_said(one, 1)[0].startswith(
        "t.yaml: load.duration_s: 1 point of up to 3601 s is up to 60.02 min of load"
    )


def test_weights_one_card_of_a_name_cannot_hold_are_warned_of_not_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the cards one SkyPilot name can be differ in memory (an H100 PCIe of 40 GiB here), weights that
    fit one card and not the other are a warning: the launch may get either."""
    table = dict(checks.devices())
    table["h100-pcie"] = table["h100-pcie"].model_copy(update={"memory_gib": 40.0, "nvml_memory_mib": None})
    monkeypatch.setattr(checks, "devices", lambda: table)
    s = scenario(
        {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "fp8"}
    )
    assert launch(s, "H100:1", infra="aws") == [
        "t.yaml: engine.tensor_parallel_size: where SkyPilot's H100 is that card: llama-3.1-70b at fp8 over "
        "TP 1 × PP 1 is 67.7 GiB of weights per GPU, more than the 36.8 GiB vLLM takes of h100-pcie's "
        "40.0 GiB (gpu_memory_utilization 0.92), before any KV cache"
    ]


def test_a_shared_name_without_a_runpod_sxm_name_offers_the_sxm_clouds_alone() -> None:
    """SkyPilot's `A100` (the 40 GB card) has no RunPod SXM name to suggest."""
    s = scenario({"type": "vllm", "model": LLAMA_8B}, hardware={"gpu": "a100-40gb-sxm", "gpus": 1})
    assert launch(s, "A100:1") == [
        "t.yaml: hardware.gpu: a100-40gb-sxm, but SkyPilot's A100 also names PCIe cards (Lambda, RunPod, "
        "Azure), with less memory bandwidth, on whichever cloud SkyPilot picks: pass --cloud aws or gcp for "
        "the SXM part; each run's manifest records the GPU it ran on"
    ]


def test_a_pcie_scenario_on_a_shared_name_is_not_warned_of() -> None:
    s = scenario({"type": "vllm", "model": LLAMA_8B}, hardware={"gpu": "h100-pcie", "gpus": 1})
    assert launch(s, "H100:1") == []


def test_a_gpu_the_catalog_lacks_is_said_against_the_scenarios_gpu_where_it_names_one() -> None:
    unknown = (
        "--gpus rents L4, which the hardware catalog lacks: the run measures the GPU it gets, and its points "
        "and tables name it by its NVML name (no roofline; cost and compare price it by that name)"
    )
    h100 = scenario({"type": "vllm", "model": LLAMA_8B}, hardware={"gpu": "h100-sxm", "gpus": 1})
    assert launch(h100, "L4:1") == [f"t.yaml: hardware.gpu: h100-sxm, but {unknown}, not the scenario's"]
    anywhere = scenario({"type": "vllm", "model": LLAMA_8B})
    assert launch(anywhere, "L4:1") == [f"t.yaml: {unknown}"]
