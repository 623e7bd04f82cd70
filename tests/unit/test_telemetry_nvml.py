"""NVML boundary: the absent path for real (no libnvidia-ml on CI), error typing, field decoding, catalog."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import pynvml
import pytest

from harness.catalog import CatalogError
from harness.catalog.hardware import Device
from harness.scenario import Scenario
from harness.telemetry import default_samplers, inventory, nvml, nvml_api
from harness.telemetry.base import TelemetrySet
from harness.telemetry.inventory import catalog_entry, cuda_version, gpu_inventory, match_catalog

from ..integration.conftest import harness_cli


def _nvml_present() -> bool:
    try:
        nvml.probe()
    except nvml.NvmlError:
        return False
    return True


no_gpu = pytest.mark.skipif(_nvml_present(), reason="an NVIDIA GPU is visible: the absent path cannot happen")


def _read_nothing(monkeypatch: pytest.MonkeyPatch, lost: set[int] | frozenset[int] = frozenset()) -> None:
    """Make the NVML sampler's GPU readers open without NVML and read nothing (no GPU data is made up);
    those of the NVML indices `lost` fail to open, as a GPU that fell off the bus."""

    class Unread:
        def __init__(self, index: int) -> None:
            self.index = index

        def probe(self) -> None:
            if self.index in lost:
                raise nvml.NvmlGpuLost("GPU is lost")

        def read(self) -> dict:
            return {}

    monkeypatch.setattr(nvml, "GpuReader", Unread)


@no_gpu
def test_probe_without_driver_raises_unavailable_with_reason() -> None:
    with pytest.raises(nvml.NvmlUnavailable) as e:
        nvml.probe()
    assert "nvmlInit" in str(e.value) and e.value.code is not None


@no_gpu
def test_inventory_without_nvml_is_absent_with_reason() -> None:
    inv = gpu_inventory()
    assert inv["available"] is False
    assert "NVML" in inv["reason"]
    with pytest.raises(nvml.NvmlUnavailable) as e:
        nvml.probe()
    # no driver or no GPU counted (as on CI): said; a binding not installed, or a refused NVML, tells nothing
    assert inv.get("no_gpu", False) is isinstance(e.value, nvml.NvmlNoGpu)


@no_gpu
def test_default_samplers_leave_nvml_out_and_say_why() -> None:
    s = _scenario()

    class NoMetrics:
        name = "external"

        def metrics_url(self) -> None:
            return None

    tel = default_samplers(s, NoMetrics())
    assert [x.name for x in tel.samplers] == ["cpu"]
    m = tel.manifest()
    assert "nvmlInit" in m["nvml"]["absent"]
    assert m["engine_metrics"]["absent"] == "the external engine has no metrics endpoint"


@no_gpu
def test_nvml_sampler_start_failure_is_recorded_and_the_set_goes_on(tmp_path: Path) -> None:
    tel = TelemetrySet([nvml.NvmlSampler(0.1)])
    tel.start()  # NvmlUnavailable inside: recorded, sampler dropped
    tel.begin_window("p", 0)
    assert tel.end_window("p", 1) == {}
    tel.stop(tmp_path)
    assert "NvmlNoGpu" in tel.manifest()["nvml"]["error"]  # an NvmlUnavailable: no driver here
    assert tel.samplers == []


@no_gpu
def test_gpu_info_command_prints_inventory_and_refuses_to_record(tmp_path: Path) -> None:
    res = harness_cli("gpu-info", timeout=120)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["gpu"]["available"] is False and info["cpu"]["threads"] >= 1
    res = harness_cli("gpu-info", "--record", str(tmp_path / "t.jsonl.gz"), "--duration-s", "1", timeout=120)
    assert res.returncode == 2
    assert "--record: no NVML trace recorded" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "t.jsonl.gz").exists()
    res = harness_cli("telemetry", "record", str(tmp_path / "t.jsonl.gz"), "--duration-s", "1", timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("telemetry record: no NVML trace recorded: nvmlInit")
    assert not (tmp_path / "t.jsonl.gz").exists()


def test_nvml_errors_become_typed_exceptions() -> None:
    cases = {
        pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: nvml.NvmlNoGpu,
        pynvml.NVML_ERROR_DRIVER_NOT_LOADED: nvml.NvmlNoGpu,
        pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH: nvml.NvmlUnavailable,
        pynvml.NVML_ERROR_NOT_SUPPORTED: nvml.NvmlNotSupported,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: nvml.NvmlNotSupported,
        pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH: nvml.NvmlNotSupported,
        pynvml.NVML_ERROR_GPU_IS_LOST: nvml.NvmlGpuLost,
        pynvml.NVML_ERROR_RESET_REQUIRED: nvml.NvmlGpuLost,
        pynvml.NVML_ERROR_GPU_NOT_FOUND: nvml.NvmlNoGpu,
        pynvml.NVML_ERROR_DEPRECATED: nvml.NvmlNotSupported,
        pynvml.NVML_ERROR_NO_PERMISSION: nvml.NvmlError,
    }
    for code, cls in cases.items():
        e = nvml.convert(pynvml.NVMLError(code), "nvmlDeviceGetPowerUsage")
        assert type(e) is cls, (code, e)
        assert e.code == code and "nvmlDeviceGetPowerUsage" in str(e)


def test_no_nvml_library_beside_a_gpus_device_file_is_not_said_as_no_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container given a GPU without the driver's utility capability has /dev/nvidia0 but no
    libnvidia-ml: CUDA runs there, so a llama.cpp run must not be labelled as the CPU's."""
    import fnmatch

    # the pattern matches a GPU's file and not the driver's control or unified-memory files
    assert [
        f
        for f in ("nvidia0", "nvidia7", "nvidiactl", "nvidia-uvm")
        if fnmatch.fnmatch(f"/dev/{f}", nvml_api.DEVICE_FILES)
    ] == [
        "nvidia0",
        "nvidia7",
    ]
    monkeypatch.setattr(nvml_api, "DEVICE_FILES", str(tmp_path / "nvidia[0-9]*"))
    (tmp_path / "nvidiactl").touch()  # the control file alone is no GPU
    e = nvml.convert(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "nvmlInit")
    assert type(e) is nvml.NvmlNoGpu and "no NVIDIA driver on this host" in str(e)
    (tmp_path / "nvidia0").touch()
    e = nvml.convert(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND), "nvmlInit")
    assert type(e) is nvml.NvmlUnavailable
    assert f"NVIDIA device files are here ({tmp_path / 'nvidia0'})" in str(e)
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in str(e)
    # the driver's other answers do not depend on the files
    e = nvml.convert(pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED), "nvmlInit")
    assert type(e) is nvml.NvmlNoGpu


def test_missing_binding_function_is_not_supported() -> None:
    with pytest.raises(nvml.NvmlNotSupported, match="not in this nvidia-ml-py"):
        nvml.call("nvmlDeviceGetSomethingThatDoesNotExist")


def _fv(ret: int, vtype: int, **val: object) -> pynvml.c_nvmlFieldValue_t:
    fv = pynvml.c_nvmlFieldValue_t()
    fv.fieldId = pynvml.NVML_FI_DEV_POWER_INSTANT
    fv.nvmlReturn = ret
    fv.valueType = vtype
    for k, v in val.items():
        setattr(fv.value, k, v)
    return fv


def test_field_value_decoding_and_unsupported_field() -> None:
    assert (
        nvml.field_value(_fv(pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, uiVal=71234)) == 71234
    )
    big = 2**40 + 5
    fv = _fv(pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, ullVal=big)
    assert nvml.field_value(fv) == big
    assert nvml.field_value(_fv(pynvml.NVML_SUCCESS, pynvml.NVML_VALUE_TYPE_DOUBLE, dVal=1.5)) == 1.5
    with pytest.raises(nvml.NvmlNotSupported, match=f"field {pynvml.NVML_FI_DEV_POWER_INSTANT}"):
        nvml.field_value(_fv(pynvml.NVML_ERROR_NOT_SUPPORTED, 0))
    assert ctypes.sizeof(pynvml.c_nvmlFieldValue_t) > 0


def test_field_width_tells_32_bit_counters_apart() -> None:
    ok = pynvml.NVML_SUCCESS
    assert nvml.field_bits(_fv(ok, pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, uiVal=1)) == 32
    assert nvml.field_bits(_fv(ok, pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, ullVal=1)) == 64


def test_cuda_version_text() -> None:
    assert cuda_version(12040) == "12.4"
    assert cuda_version(11080) == "11.8"


def _catalog(data: dict[str, dict[str, Any]]) -> dict[str, Device]:
    """Catalog GPUs with the fields given; the rest any valid value (matching reads names and memory)."""
    base = {"kind": "gpu", "vendor": "nvidia", "architecture": "x", "form_factor": "sxm", "memory_type": "x"}
    base |= {"bandwidth_gbs": 1.0, "bf16_tflops": 1.0, "tdp_w": 1.0, "source": "x"}
    return {k: Device(key=k, name=k, **base, **fields) for k, fields in data.items()}


def test_match_catalog_by_nvml_name_and_memory() -> None:
    cat = _catalog(
        {
            "a100-40gb-sxm": {"nvml_names": ["NVIDIA A100-SXM4-40GB"], "memory_gib": 40},
            "a100-80gb-sxm": {"nvml_names": ["NVIDIA A100-SXM4-80GB"], "memory_gib": 80},
            "a100-80gb-pcie": {"nvml_names": ["NVIDIA A100 80GB PCIe"], "memory_gib": 80},
            "h100-sxm": {"nvml_names": ["NVIDIA H100 80GB HBM3"], "memory_gib": 80},
            "h100-pcie": {"nvml_names": ["NVIDIA H100 PCIe"], "memory_gib": 80},
            "shared-name-small": {"nvml_names": ["Same Name"], "memory_gib": 16},
            "shared-name-big": {"nvml_names": ["Same Name"], "memory_gib": 32},
        },
    )
    gib = 2**30
    assert match_catalog("NVIDIA H100 80GB HBM3", 79 * gib, cat) == "h100-sxm"
    assert match_catalog("NVIDIA H100 PCIe", 79 * gib, cat) == "h100-pcie"
    assert match_catalog(" nvidia a100 80gb pcie ", 80 * gib, cat) == "a100-80gb-pcie"
    assert match_catalog("NVIDIA A100-SXM4-80GB", 80 * gib, cat) == "a100-80gb-sxm"
    assert match_catalog("Same Name", 31 * gib, cat) == "shared-name-big"
    assert match_catalog("Same Name", 15 * gib, cat) == "shared-name-small"
    assert match_catalog("Same Name", 64 * gib, cat) is None  # name matches, memory does not
    assert match_catalog("NVIDIA GeForce RTX 4090", 24 * gib, cat) is None
    # where the catalog has NVML's total, it is what the reading is held against: 40.9 GiB is nearer
    # the small part's datasheet 40 than the big one's 42, but nearer the big one's NVML total (41.99
    # GiB) than the small one's (39.06)
    both = _catalog(
        {
            "small": {"nvml_names": ["Pair"], "memory_gib": 40, "nvml_memory_mib": 40_000},
            "big": {"nvml_names": ["Pair"], "memory_gib": 42, "nvml_memory_mib": 43_000},
        },
    )
    assert match_catalog("Pair", 41_882 * 2**20, both) == "big"
    assert match_catalog("Pair", 40_000 * 2**20, both) == "small"


def test_match_catalog_against_the_shipped_catalog_and_an_unreadable_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped catalog's H100 SXM at the 81,559 MiB NVML reports, and at half that (not it); an
    unreadable catalog matches nothing and gives no entry, and the inventory goes on."""
    assert match_catalog("NVIDIA H100 80GB HBM3", 81_559 * 2**20) == "h100-sxm"
    assert match_catalog("NVIDIA H100 80GB HBM3", 40 * 2**30) is None
    entry = catalog_entry("h100-sxm")
    assert entry is not None and entry["bandwidth_gbs"] == 3350 and "nvml_names" not in entry

    def unreadable() -> dict[str, Device]:
        raise CatalogError("hardware.yaml: broken")

    monkeypatch.setattr(inventory, "devices", unreadable)
    assert match_catalog("NVIDIA H100 80GB HBM3", 81_559 * 2**20) is None
    assert catalog_entry("h100-sxm") is None


def _scenario() -> Scenario:
    return Scenario.model_validate(
        {"name": "t", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}}
    )


def test_replay_env_uses_the_trace_or_says_why_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.telemetry.replay import ENV, ReplayNvmlSampler
    from harness.telemetry.trace import GpuSeries, write_trace

    bad = tmp_path / "bad.jsonl.gz"
    bad.write_text("not a trace")
    monkeypatch.setenv(ENV, str(bad))
    tel = default_samplers(_scenario(), object())
    assert f"${ENV}" in tel.absent["nvml"] and "bad.jsonl.gz" in tel.absent["nvml"]
    assert all(s.name != "nvml" for s in tel.samplers)

    g = GpuSeries(0)
    g.append(0, {"power_w": 1.0})
    good = write_trace(tmp_path / "good.jsonl.gz", {}, [g], {})
    monkeypatch.setenv(ENV, str(good))
    tel = default_samplers(_scenario(), object())
    assert isinstance(tel.samplers[0], ReplayNvmlSampler) and "nvml" not in tel.absent


UUIDS = [f"GPU-{c}1111111-2222-3333-4444-555555555555" for c in "abcdefgh"]  # an 8-GPU machine


def test_engine_gpus_follow_cuda_visible_devices_and_the_engines_count() -> None:
    assert nvml.engine_gpus(None, UUIDS) == (list(range(8)), "all GPUs (CUDA_VISIBLE_DEVICES not set)")
    # vLLM with TP 2 on an 8-GPU machine: two GPUs, not eight (six idle ones would add ~420 W)
    picked, how = nvml.engine_gpus(None, UUIDS, count=2)
    assert picked == [0, 1] and "the first 2" in how
    assert nvml.engine_gpus("3,5", UUIDS)[0] == [3, 5]
    assert nvml.engine_gpus("6, 2", UUIDS, count=1)[0] == [6]
    # UUIDs, whole or as prefixes, with or without "GPU-"
    assert nvml.engine_gpus(f"{UUIDS[4]},GPU-h1", UUIDS)[0] == [4, 7]
    assert nvml.engine_gpus("c111", UUIDS)[0] == [2]
    # CUDA stops at the first invalid index
    assert nvml.engine_gpus("1,9,2", UUIDS)[0] == [1]
    assert nvml.engine_gpus("", UUIDS)[0] == []


def test_engine_gpus_stop_at_a_gpu_listed_again_or_an_empty_entry_as_cuda_does() -> None:
    """A GPU named twice was sampled twice (its energy and power added twice), and an empty entry
    prefix-matched every UUID: all 8 GPUs where vLLM ran on 2, or GPU 0 twice on a 1-GPU machine."""
    picked, how = nvml.engine_gpus("0,0", UUIDS)
    assert picked == [0] and "CUDA stops at its first invalid entry, '0': GPU 0 again" in how
    assert nvml.engine_gpus(f"3,{UUIDS[3]},4", UUIDS)[0] == [3]  # an index and its own UUID
    assert nvml.engine_gpus("c111,2", UUIDS)[0] == [2]  # a UUID prefix and its index
    picked, how = nvml.engine_gpus("0,", UUIDS[:1])
    assert picked == [0] and "invalid entry, '': empty" in how
    assert nvml.engine_gpus("2,3,", UUIDS) == (
        [2, 3],
        "CUDA_VISIBLE_DEVICES=2,3, (CUDA stops at its first invalid entry, '': empty)",
    )
    assert nvml.engine_gpus("2,3,", UUIDS, count=2)[0] == [2, 3]
    assert nvml.engine_gpus("2, ,3", UUIDS)[0] == [2]
    assert nvml.engine_gpus(",1", UUIDS)[0] == []
    assert "'9': no such GPU index here" in nvml.engine_gpus("1,9,2", UUIDS)[1]


def test_engine_gpus_say_when_the_engine_has_more_gpus_than_this_machine() -> None:
    """TP 8 x PP 2 over two 8-GPU nodes (scenarios/cloud/llama-3.1-405b-2node.yaml): NVML on the head
    node sees its 8 GPUs only; the selection says so, and what that leaves out."""
    picked, how = nvml.engine_gpus(None, UUIDS, count=16)
    assert picked == list(range(8))
    assert "only 8 of the engine's 16 GPUs are on this machine (the other 8 are not sampled)" in how
    assert "(the head node's)" in how and "energy_scope incomplete" in how
    assert "only" not in nvml.engine_gpus(None, UUIDS, count=8)[1]
    assert "only 2 of the engine's 4 GPUs" in nvml.engine_gpus("6,7", UUIDS, count=4)[1]
    assert [nvml.gpus_elsewhere(8, c) for c in (16, 8, 2, None)] == [8, 0, 0, 0]
    assert nvml.gpus_elsewhere(0, 4) == 0  # no GPU visible here: a CPU engine, not one elsewhere


def test_a_multi_node_engines_windows_carry_its_gpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler on the head node of a 16-GPU engine marks its windows with the engine's count, which
    makes their energy `incomplete` (base.energy_columns); an engine all here gets no such column.
    (The readers here open without NVML and read nothing: no GPU data is made up.)"""

    _read_nothing(monkeypatch)
    for count, marked in ((16, {"gpu_engine_count": 16}), (8, {})):
        s = nvml.NvmlSampler(0.1, None, count)
        s.inventory = {"gpus": [{"index": i, "uuid": u} for i, u in enumerate(UUIDS)]}
        s._open_gpus(8)
        s.begin_window("p", 0)
        cols = s.end_window("p", 10**9)
        assert cols["gpu_count"] == 8
        assert {k: v for k, v in cols.items() if k == "gpu_engine_count"} == marked
        assert ("only 8 of the engine's 16 GPUs" in s.selection) == bool(marked)  # the manifest's text


def test_windows_of_an_engine_with_a_gpu_nvml_could_not_open_say_how_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GPUs 2 and 3 given to the engine, GPU 3 not opened by NVML: its windows carry `gpu_unread_count`,
    which makes their energy `incomplete` (base.energy_columns); with both open, no such column.
    (The readers read nothing: no GPU data is made up.)"""

    for broken, marked in (({3}, {"gpu_unread_count": 1}), (set(), {})):
        _read_nothing(monkeypatch, broken)
        s = nvml.NvmlSampler(0.1, "2,3")
        s.inventory = {"gpus": [{"index": i, "uuid": u} for i, u in enumerate(UUIDS)]}
        s._open_gpus(8)
        s.begin_window("p", 0)
        cols = s.end_window("p", 10**9)
        assert cols["gpu_count"] == 2 - len(broken)
        assert {k: v for k, v in cols.items() if k == "gpu_unread_count"} == marked
        assert s.skipped == dict.fromkeys(broken, "GPU is lost")  # the manifest's skipped_gpus


def test_engine_gpus_that_cannot_be_mapped_fall_back_to_all_and_say_so() -> None:
    picked, how = nvml.engine_gpus("MIG-0c1f2a3b-aaaa-bbbb-cccc-000000000000", UUIDS)
    assert picked == list(range(8)) and "MIG-0c1f" in how and "names no single GPU" in how
    # vLLM still uses only the first TP x PP of them
    picked, how = nvml.engine_gpus("GPU-zz", UUIDS, count=2)
    assert picked == [0, 1] and "names no single GPU" in how and "the first 2" in how


MIG = {
    "MIG-0c1f2a3b-aaaa-bbbb-cccc-000000000000": 3,
    "MIG-0c1f2a3b-aaaa-bbbb-cccc-111111111111": 3,
    "MIG-9d8e7f60-aaaa-bbbb-cccc-000000000000": 5,
}


def test_engine_gpus_map_a_mig_instance_to_its_whole_gpu_and_say_what_that_measures() -> None:
    picked, how = nvml.engine_gpus("MIG-9d8e7f60", UUIDS, mig=MIG)
    assert picked == [5]
    assert "MIG-9d8e7f60 is part of GPU 5" in how and "whole GPU's" in how
    # two instances of one GPU: that GPU once
    both = "MIG-0c1f2a3b-aaaa-bbbb-cccc-000000000000,MIG-0c1f2a3b-aaaa-bbbb-cccc-111111111111"
    assert nvml.engine_gpus(both, UUIDS, mig=MIG)[0] == [3]
    # a prefix shared by instances of one GPU still names one GPU; an unknown instance: all, said so
    assert nvml.engine_gpus("MIG-0c1f", UUIDS, mig=MIG)[0] == [3]
    picked, how = nvml.engine_gpus("MIG-ffffffff", UUIDS, mig=MIG)
    assert picked == list(range(8)) and "names no single GPU" in how


def test_mig_parents_come_from_the_inventory() -> None:
    from harness.telemetry.inventory import mig_parents

    inv = {
        "gpus": [
            {"index": 0, "mig_mode": {"current": 0, "pending": 0}},
            {"index": 1, "mig_devices": [{"slot": 0, "uuid": "MIG-aa"}, {"slot": 2, "uuid": "MIG-bb"}]},
            {"index": 2, "error": "NVML_ERROR_GPU_IS_LOST"},
        ]
    }
    assert mig_parents(inv) == {"MIG-aa": 1, "MIG-bb": 1}
    assert mig_parents({"available": False, "reason": "no driver"}) == {}


def test_engine_gpu_scope_reads_the_engine_config_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.engines.vllm import VllmServer
    from harness.scenario import VllmEngine
    from harness.telemetry import engine_gpu_scope

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    cfg = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}}
    cfg |= {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}
    cfg["env"] = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    eng = VllmServer(VllmEngine.model_validate(cfg), Path("/dev/null"))
    assert engine_gpu_scope(eng) == ("4,5,6,7", 4, None, None)
    # vLLM's CPU build: its TP ranks are no GPUs (on a 1-GPU host, TP 2 read as "1 of 2 GPUs here")
    cpu = VllmServer(VllmEngine.model_validate({**cfg, "device": "cpu"}), Path("/dev/null"))
    assert engine_gpu_scope(cpu) == ("4,5,6,7", None, None, None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert engine_gpu_scope(object()) == ("1", None, None, None)  # no config: all it can see


# load_tensors lines of a llama.cpp server on a 3-GPU host that put no weights on CUDA0 (public log)
THREE_GPU_LOG = """load_tensors:        CUDA1 model buffer size = 10478.04 MiB
load_tensors:        CUDA2 model buffer size = 10085.15 MiB
load_tensors:    CUDA_Host model buffer size =   322.07 MiB
load_tensors:   CPU_Mapped model buffer size = 27465.95 MiB
"""


def test_llama_cpp_told_to_use_some_gpus_is_sampled_on_those_it_put_weights_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llama.cpp with `-ts 0,1,1` on a 3-GPU host had all three GPUs sampled, the idle one's power and
    energy counted into J/token. (The readers read nothing: no GPU data is made up.)"""
    from harness.engines.llamacpp import load_placement
    from harness.offload import cuda_devices_with_weights
    from harness.telemetry import config_gpu_scope

    placement = load_placement(THREE_GPU_LOG)
    assert cuda_devices_with_weights(placement) == [1, 2]
    cfg = {"type": "llamacpp", "n_gpu_layers": 99, "extra_args": ["-ts", "0,1,1"]}
    assert config_gpu_scope(cfg, placement, {}) == (None, None, [1, 2], None)
    # without arguments that choose among the GPUs, llama.cpp splits over all it sees: no positions
    visible = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert config_gpu_scope({**cfg, "extra_args": []}, placement, visible) == ("0,1,2", None, None, None)
    picked, how = nvml.engine_gpus("5,6,7", UUIDS, positions=[1, 2])
    assert picked == [6, 7]
    assert how == (
        "CUDA_VISIBLE_DEVICES=5,6,7, of those CUDA1, CUDA2 (the GPUs llama.cpp's load log put weights on)"
    )
    # a position the engine does not see is left out; none left: all it sees
    assert nvml.engine_gpus("5,6", UUIDS, positions=[1, 4])[0] == [6]
    assert nvml.engine_gpus("5,6", UUIDS, positions=[4])[0] == [5, 6]

    _read_nothing(monkeypatch)
    s = nvml.NvmlSampler(0.1, None, None, [1, 2])
    s.inventory = {"gpus": [{"index": i, "uuid": u} for i, u in enumerate(UUIDS[:3])]}
    s._open_gpus(3)
    assert [r.index for r in s.readers] == [1, 2]
    s.begin_window("p", 0)
    assert s.end_window("p", 10**9)["gpu_count"] == 2


def test_cuda_devices_with_weights_only_where_each_gpu_buffer_is_one_cuda_devices() -> None:
    from harness.offload import cuda_devices_with_weights

    assert cuda_devices_with_weights({"model_buffers_mib": {"CUDA0": 0.0, "CUDA1": 5.5}}) == [1]
    # row split: the matrices in one buffer over all GPUs, which tells none of them
    assert cuda_devices_with_weights({"model_buffers_mib": {"CUDA_Split": 9000.0, "CUDA0": 50.0}}) is None
    assert cuda_devices_with_weights({"model_buffers_mib": {"Vulkan0": 100.0}}) is None
    assert cuda_devices_with_weights({"model_buffers_mib": {"CPU_Mapped": 100.0}}) is None
    assert cuda_devices_with_weights({}) is None


def test_a_window_edge_does_not_wait_on_an_nvml_call_that_hangs() -> None:
    """A GPU falling off the bus can hang an NVML call for good; the edge sample runs on a helper thread
    the caller waits for at most EDGE_LOCK_TIMEOUT_S, so the run goes on with the window's columns marked
    skipped. (The reader here only hangs: it gives no readings, so no GPU data is made up.)"""
    import threading
    import time

    from harness.telemetry.nvml import EDGE_LOCK_TIMEOUT_S, NvmlSampler
    from harness.telemetry.trace import GpuSeries

    release = threading.Event()

    class Hung:
        index = 0

        def read(self) -> dict:
            release.wait(60)
            return {}

    s = NvmlSampler(0.1)
    s.readers, s.series = [Hung()], [GpuSeries(0)]  # type: ignore[list-item]
    try:
        t0 = time.monotonic()
        s.begin_window("p", time.perf_counter_ns())
        cols = s.end_window("p", time.perf_counter_ns())
        took = time.monotonic() - t0
    finally:
        release.set()
    assert cols == {"gpu_window_skipped": True} and s.edge_skips == 2
    assert took < 3 * (EDGE_LOCK_TIMEOUT_S + 0.5)  # bounded (the hang would last 60 s)


def test_an_nvml_error_at_a_window_edge_reaches_the_telemetry_set() -> None:
    """The edge sample runs on a helper thread: its error is raised again in the caller, so the set
    records it (and drops the sampler) rather than a traceback going to the terminal."""
    from harness.telemetry.base import TelemetrySet
    from harness.telemetry.nvml import NvmlSampler
    from harness.telemetry.trace import GpuSeries

    class Lost:
        index = 0

        def read(self) -> dict:
            raise RuntimeError("GPU is lost")

    s = NvmlSampler(0.1)
    s.readers, s.series = [Lost()], [GpuSeries(0)]  # type: ignore[list-item]
    tel = TelemetrySet([s])
    tel.begin_window("p")
    assert tel.problems == {"nvml": "begin_window: RuntimeError: GPU is lost"} and tel.samplers == []


class _CpuPackage:
    """A CPU sampler's RAPL column alone: 120 J every window."""

    name = "cpu"

    def start(self) -> None: ...

    def begin_window(self, name: str, t_ns: int) -> None: ...

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        return {"cpu_energy_j": 120.0}

    def stop(self) -> None: ...

    def manifest(self) -> dict[str, Any]:
        return {}

    def write(self, run_dir: Path, tag: str = "") -> str | None:
        return None


def test_windows_after_the_gpu_sampler_failed_give_no_energy_from_the_cpu_alone() -> None:
    """Once the GPU sampler was dropped, later windows had no gpu columns and the CPU package's energy
    passed as the whole (`energy_scope: cpu_package`: J/token 8.8x too low where the GPUs drew the
    rest). (The reader reads nothing before it fails: no GPU data is made up.)"""
    from harness.telemetry.nvml import NvmlSampler
    from harness.telemetry.trace import GpuSeries

    class LostLater:
        index = 0
        lost = False

        def read(self) -> dict:
            if self.lost:
                raise RuntimeError("GPU is lost")
            return {}

    reader = LostLater()
    s = NvmlSampler(0.1)
    s.readers, s.series = [reader], [GpuSeries(0)]  # type: ignore[list-item]
    tel = TelemetrySet([s, _CpuPackage()])
    tel.begin_window("p1")
    assert tel.end_window("p1")["gpu_count"] == 1 and tel.lost == set()
    tel.begin_window("p2")
    reader.lost = True  # at the window's closing edge
    unknown = {
        "cpu_energy_j": 120.0,
        "gpu_window_skipped": True,
        "energy_j": None,
        "energy_scope": "incomplete",
    }
    assert tel.end_window("p2") == unknown
    tel.begin_window("p3")
    assert tel.end_window("p3") == unknown
    assert tel.problems == {"nvml": "end_window: RuntimeError: GPU is lost"} and tel.lost == {"nvml"}

    class NoDriver(NvmlSampler):
        def start(self) -> None:
            raise nvml.NvmlNoGpu("no NVIDIA driver")

    # a GPU sampler that never started measured nothing: the CPU's energy is all there was, said so
    tel = TelemetrySet([NoDriver(0.1), _CpuPackage()])
    tel.start()
    tel.begin_window("p")
    assert tel.end_window("p") == {"cpu_energy_j": 120.0, "energy_j": 120.0, "energy_scope": "cpu_package"}
    assert "nvml" in tel.problems and tel.lost == set()


# a host with an A100 at NVML index 0 (the lower PCI bus) and an H100 at index 1
MIXED = {
    "gpus": [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-a100aaaa"},
        {"index": 1, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-h100bbbb"},
    ]
}


def test_gpus_picked_by_cuda_index_on_a_host_of_two_models_may_be_others() -> None:
    """CUDA numbers an A100 + H100 host's GPUs fastest first (the H100 is its 0) unless
    CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML by PCI bus (the A100 is its 0): CUDA_VISIBLE_DEVICES=1 had NVML's
    GPU 1 sampled, the H100, while the engine ran on the A100."""
    from harness.telemetry.inventory import cuda_order_unknown

    assert cuda_order_unknown(MIXED, "1", [1], None) is True
    assert cuda_order_unknown(MIXED, "1", [1], "FASTEST_FIRST") is True
    assert cuda_order_unknown(MIXED, None, [0], None) is True  # vLLM TP 1 without CUDA_VISIBLE_DEVICES
    assert cuda_order_unknown(MIXED, "1", [1], "PCI_BUS_ID") is False
    assert cuda_order_unknown(MIXED, "GPU-h100bbbb", [1], None) is False  # a UUID names one GPU
    assert cuda_order_unknown(MIXED, None, [0, 1], None) is False  # every GPU: the order does not matter
    same = {"gpus": [{**g, "name": "NVIDIA H100 80GB HBM3"} for g in MIXED["gpus"]]}
    assert cuda_order_unknown(same, "1", [1], None) is False  # one model: CUDA's order is the bus's too


def test_windows_of_gpus_picked_by_cuda_index_on_a_mixed_host_give_no_energy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(The readers read nothing: no GPU data is made up.)"""
    from harness.telemetry import config_gpu_scope
    from harness.telemetry.base import energy_columns

    _read_nothing(monkeypatch)
    vllm = {"type": "vllm", "env": {"CUDA_VISIBLE_DEVICES": "1"}}
    for inherited, marked in (({}, {"gpu_order_unknown": True}), ({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, {})):
        scope = config_gpu_scope(vllm, {}, inherited)
        assert scope == ("1", 1, None, inherited.get("CUDA_DEVICE_ORDER"))
        s = nvml.NvmlSampler(0.1, *scope)
        s.inventory = MIXED
        s._open_gpus(2)
        assert [r.index for r in s.readers] == [1]
        s.begin_window("p", 0)
        cols = s.end_window("p", 10**9)
        assert {k: v for k, v in cols.items() if k == "gpu_order_unknown"} == marked
        assert ("CUDA_DEVICE_ORDER=PCI_BUS_ID" in s.selection) == bool(marked)
    # the engine's env wins over the environment it inherits
    assert (
        config_gpu_scope({**vllm, "env": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}, {}, {}).order == "PCI_BUS_ID"
    )
    # a window that did read energy: none of it is given as the engine's
    read = {"gpu_count": 1, "gpu_energy_j": 800.0, "gpu_order_unknown": True}
    assert energy_columns(read) == {"energy_j": None, "energy_scope": "incomplete"}
    from harness.flags import flags

    said = [
        m for m in flags({"ok": 4, "output_tokens": 100, **read, **energy_columns(read)}) if "J/token" in m
    ]
    assert said == [
        "GPU energy may be other GPUs' than the engine's: this host's GPUs are of several models and CUDA "
        "numbers them fastest first, NVML by PCI bus (set CUDA_DEVICE_ORDER=PCI_BUS_ID): no J/token"
    ]
