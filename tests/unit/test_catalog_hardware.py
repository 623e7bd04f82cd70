"""Every entry of hardware.yaml, prices.yaml and claims.yaml loads; the article pack uses them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.catalog import CatalogError, models
from harness.catalog.claims import claims, parse_claims
from harness.catalog.hardware import devices, get_device, gpus, match_cpu, match_nvml
from harness.catalog.prices import parse_prices, prices
from harness.roofline import Shape
from harness.scenario import engine_configs, load_scenario

ROOT = Path(__file__).resolve().parents[2]
ARTICLE = sorted((ROOT / "scenarios" / "article").glob("*.yaml"))


def test_every_device_loads_with_a_source_and_gpu_fields() -> None:
    devs = devices()
    assert {"a100-40gb-sxm", "a100-80gb-sxm", "a100-80gb-pcie", "h100-sxm", "h100-pcie", "h100-nvl"} <= set(
        devs
    )
    assert {"h200-sxm", "l40s", "mi300x", "epyc-9654"} <= set(devs)
    for d in devs.values():
        assert d.source.startswith("https://"), d.key
        assert d.bandwidth_gbs > 0 and d.tdp_w > 0
        if d.kind == "gpu":
            assert d.memory_gib and d.form_factor and d.bf16_tflops, d.key
            assert d.nvml_names or d.vendor != "nvidia", d.key


def test_datasheet_numbers_match_the_reference_table() -> None:
    # (bandwidth GB/s, bf16 TFLOPS, fp8 TFLOPS, TDP W, memory GiB) from the shared REFERENCE datasheet table
    expected = {
        "a100-40gb-sxm": (1555, 312, None, 400, 40),
        "a100-80gb-sxm": (2039, 312, None, 400, 80),
        "a100-80gb-pcie": (1935, 312, None, 300, 80),
        "h100-sxm": (3350, 989, 1979, 700, 80),
        "h100-pcie": (2000, 756, 1513, 350, 80),
        "h100-nvl": (3900, 835, 1671, 400, 94),
        "h200-sxm": (4800, 989, 1979, 700, 141),
        "l40s": (864, 362, 733, 350, 48),
        "mi300x": (5300, 1307, 2615, 750, 192),
    }
    for key, (bw, bf16, fp8, tdp, mem) in expected.items():
        d = get_device(key)
        assert (d.bandwidth_gbs, d.bf16_tflops, d.fp8_tflops, d.tdp_w, d.memory_gib) == (
            bw,
            bf16,
            fp8,
            tdp,
            mem,
        ), key
    assert get_device("epyc-9654").bandwidth_gbs == 460.8  # 12 channels x 4800 MT/s x 8 B
    # what fits is a share of what NVML reports (ECC on), not of the datasheet's "80GB" read as GiB
    assert get_device("h100-sxm").memory_bytes == 81_559 * 2**20 < 80 * 2**30
    assert get_device("l40s").memory_bytes == 46_068 * 2**20  # 45.0 GiB of a "48GB" card
    assert get_device("mi300x").memory_bytes == 192 * 2**30  # none recorded: the datasheet's, as GiB


def test_nvml_names_identify_form_factors() -> None:
    assert match_nvml("NVIDIA H100 80GB HBM3").key == "h100-sxm"  # type: ignore[union-attr]
    assert match_nvml(" NVIDIA H100 PCIe ").key == "h100-pcie"  # type: ignore[union-attr]
    assert match_nvml("NVIDIA H100 NVL").form_factor == "nvl"  # type: ignore[union-attr]
    assert match_nvml("NVIDIA A100-SXM4-80GB").key == "a100-80gb-sxm"  # type: ignore[union-attr]
    assert match_nvml("NVIDIA A100 80GB PCIe").key == "a100-80gb-pcie"  # type: ignore[union-attr]
    assert match_nvml("NVIDIA H200").key == "h200-sxm"  # type: ignore[union-attr]
    assert match_nvml("NVIDIA H200 NVL") is None  # a different card, not in the catalog
    assert match_nvml("Tesla T4") is None
    names = [n for d in gpus().values() for n in d.nvml_names]
    assert len(names) == len(set(names))


def test_cpu_model_names_match_catalog_cpus() -> None:
    assert match_cpu("AMD EPYC 9654 96-Core Processor").key == "epyc-9654"  # type: ignore[union-attr]
    assert match_cpu("Intel(R) Xeon(R) Platinum 8480+").key == "xeon-8480"  # type: ignore[union-attr]
    assert match_cpu("AMD EPYC") is None and match_cpu(None) is None


def test_unknown_device_lists_allowed_keys() -> None:
    with pytest.raises(CatalogError, match=r"allowed: .*h100-sxm"):
        get_device("h100")


def test_every_price_is_dated_sourced_and_names_a_catalog_device() -> None:
    ps = prices()
    assert ps
    defaults: dict[str, int] = {}
    for p in ps:
        assert p.device in devices() and p.seen and p.source
        defaults[p.device] = defaults.get(p.device, 0) + p.default
    assert all(n <= 1 for n in defaults.values())
    article = {p.device: p.usd_per_hour for p in ps if p.provider == "article-example"}
    assert article == {"a100-80gb-sxm": 0.75, "h100-sxm": 1.20}


def test_price_file_errors_name_file_and_field() -> None:
    with pytest.raises(
        CatalogError, match=r"x.yaml: prices\[0\].device: 'h900' is not in the hardware catalog"
    ):
        parse_prices(
            {"prices": [{"device": "h900", "provider": "p", "usd_per_hour": 1, "seen": "s", "source": "u"}]},
            "x.yaml",
            devices(),
        )
    with pytest.raises(CatalogError, match="already has a default"):
        entry = {
            "device": "l40s",
            "provider": "p",
            "usd_per_hour": 1,
            "seen": "s",
            "source": "u",
            "default": True,
        }
        parse_prices({"prices": [entry, entry]}, "x.yaml")


def test_price_file_errors_are_all_reported_at_once() -> None:
    good = {"provider": "p", "usd_per_hour": 1, "seen": "s", "source": "u"}
    bad = [{**good, "device": "h100-sxm", "usd_per_hour": "abc"}, {**good, "device": "h900"}, "x"]
    with pytest.raises(CatalogError) as e:
        parse_prices({"prices": bad}, "x.yaml", devices())
    lines = str(e.value).splitlines()
    assert lines[0] == "x.yaml: prices[0].usd_per_hour: expected a number (got 'abc')"
    assert lines[1].startswith("x.yaml: prices[1].device: 'h900' is not in the hardware catalog")
    assert lines[2] == "x.yaml: prices[2]: expected a mapping of fields"
    assert len(lines) == 3


def test_every_claim_refers_to_catalog_models_and_devices() -> None:
    cl = claims()
    assert len(cl) >= 12
    for c in cl:
        assert c.model in models(), c.id
        for dev in [c.device, *(s.device for s in (c.numerator, c.denominator) if s)]:
            assert dev is None or dev in devices(), (c.id, dev)
    ids = {c.id for c in cl}
    assert {"article-70b-h100", "lambda-70b-fp8-1xh100", "mlperf-70b-offline-8xh100"} <= ids


def test_claim_file_errors_name_field() -> None:
    with pytest.raises(CatalogError, match=r"c.yaml: claims\[0\].*numerator and denominator"):
        parse_claims(
            {"claims": [{"id": "a", "source": "s", "text": "t", "kind": "ratio", "value": 2, "model": "m"}]},
            "c.yaml",
        )


CLAIM = {"id": "a", "source": "s", "text": "t", "kind": "throughput", "value": 2, "model": "m", "device": "d"}


def test_every_mistake_in_a_claims_file_is_said_at_once() -> None:
    """One at a time, a file of several mistakes took as many tries to fix."""
    with pytest.raises(CatalogError) as e:
        parse_claims({"claims": [{"id": "x", "kind": "speed"}, CLAIM, CLAIM, 5]}, "c.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == "c.yaml: claims[0].source: field required"
    assert (
        "c.yaml: claims[0].kind: invalid value 'speed' (allowed: 'throughput', 'cost', 'ratio' or 'offload')"
        in lines
    )
    assert lines[-2:] == [
        "c.yaml: claims[2].id: duplicate id 'a'",
        "c.yaml: claims[3]: expected a mapping of fields",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # a precision the roofline cannot weigh had been taken, then ended `claims` in a traceback
        ({"claims": [{**CLAIM, "precision": "fp4"}]}, r"claims\[0\].precision: invalid value 'fp4' \(allo"),
        (
            {
                "claims": [
                    {
                        **CLAIM,
                        "kind": "ratio",
                        "numerator": {"device": "h100-sxm", "precision": "FP-8"},
                        "denominator": {"device": "a100-80gb-sxm", "precision": "bf16"},
                    }
                ]
            },
            r"claims\[0\].numerator.precision: invalid value 'FP-8'",
        ),
        (
            {"claims": [{**CLAIM, "value": math.inf}]},
            r"claims\[0\].value: expected a finite number \(got inf\)",
        ),
        ({"claims": [{1: "a"}]}, r"claims\[0\].id: field required"),  # keys that are not strings
        ({"sources": 5, "claims": [CLAIM]}, r"c.yaml: sources: expected a mapping"),
    ],
)
def test_claim_files_with_wrong_values_are_refused_by_field(data: dict, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        parse_claims(data, "c.yaml")
    assert parse_claims({"claims": [{**CLAIM, "precision": "FP8"}]}, "c.yaml")[0].precision == "FP8"


def test_price_files_with_infinite_prices_or_odd_keys_are_refused_by_field() -> None:
    good = {"device": "l40s", "provider": "p", "usd_per_hour": 1, "seen": "s", "source": "u"}
    with pytest.raises(CatalogError) as e:
        parse_prices({"prices": [{**good, "usd_per_hour": math.inf}, {**good, 1: "x"}]}, "x.yaml")
    assert str(e.value).splitlines() == [
        "x.yaml: prices[0].usd_per_hour: expected a finite number (got inf)",
        "x.yaml: prices[1].1: Keys should be strings",
    ]


@pytest.mark.parametrize("path", ARTICLE, ids=lambda p: p.name)
def test_article_scenarios_use_catalog_entries_and_fit(path: Path) -> None:
    s = load_scenario(path)
    assert s.hardware.gpu in devices(), s.hardware.gpu
    dev = get_device(s.hardware.gpu)  # type: ignore[arg-type]
    for eng in engine_configs(s):
        if eng.type != "vllm":
            continue
        assert eng.model.source == "catalog" and eng.model.weights == "dummy"
        m = models()[eng.model.name]
        tp = eng.tensor_parallel_size
        assert tp <= s.hardware.gpus
        on_gpu = Shape.of(m).weight_bytes(eng.precision) / tp - eng.cpu_offload_gb * 2**30
        # "TP where it fits": weights per GPU within gpu_memory_utilization of the device
        assert on_gpu <= dev.memory_bytes * (eng.gpu_memory_utilization or 0.9), (path.name, tp)  # type: ignore[operator]


def test_article_pack_covers_the_articles_configurations() -> None:
    names = {p.stem for p in ARTICLE}
    assert {"llama70b-h100-sxm-bf16", "llama70b-h100-sxm-fp8", "llama70b-a100-80gb-sxm-bf16"} <= names
    assert {"llama70b-a100-80gb-sxm-fp8", "mistral7b-a100-80gb-sxm", "mistral7b-h100-sxm"} <= names
    assert any("offload-vllm" in n for n in names) and any("offload-llamacpp" in n for n in names)
    fp8 = load_scenario(ROOT / "scenarios" / "article" / "llama70b-h100-sxm-fp8.yaml")
    assert [e.tensor_parallel_size for e in engine_configs(fp8)] == [1, 2, 4, 8]
    assert fp8.load.concurrency[0] == 1 and fp8.load.concurrency[-1] == 256


def test_a_gpu_named_without_its_form_factor_is_met_with_the_keys_it_may_mean() -> None:
    """`h100` was refused with the whole list only; the catalog's keys carry the form factor."""
    from harness.catalog.hardware import did_you_mean, get_device

    with pytest.raises(
        CatalogError, match=r"did you mean 'h100-nvl' or 'h100-pcie' or 'h100-sxm'\? allowed: "
    ):
        get_device("h100")
    keys = ["a100-80gb-pcie", "a100-80gb-sxm", "h100-sxm", "h200-sxm"]
    assert did_you_mean("H100", keys) == "did you mean 'h100-sxm'? "
    assert did_you_mean("h100sxm", keys) == "did you mean 'h100-sxm' or 'h200-sxm'? "
    assert did_you_mean("rtx-9090", keys) == ""
    assert did_you_mean("H100SXM", keys) == "did you mean 'h100-sxm' or 'h200-sxm'? "
    assert did_you_mean(" ", keys) == ""  # not every key
