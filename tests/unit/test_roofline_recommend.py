"""`harness recommend`: roofline estimates and measured points ranked by $/1M tokens under SLOs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.catalog import get_model
from harness.recommend import Need, article_rule, recommend

NAN = float("nan")

PRICES = {"a100-80gb-sxm": 0.75, "h100-sxm": 1.20}  # the article's Mistral-7B example prices


def _need(tpot_s: float | None = 0.2, model: str = "mistral-7b", concurrency: int = 1) -> Need:
    return Need(get_model(model), concurrency, 1024, 256, 2.0, tpot_s)


def test_roofline_estimates_rank_h100_first_for_mistral_single_stream() -> None:
    df, _ = recommend(_need(), PRICES, precisions=("bf16",), only=tuple(PRICES))
    # context = 1024 + 256/2 = 1152 tokens; KV/token = 2 x 32 x 8 x 128 x 2 = 131,072 B
    # bytes/step = 14.48e9 - the embeddings (2 x 32,000 x 4,096 B: a row a token is read) + 1152 x 131,072
    # = 14.369e9
    # A100: t = 14.369e9 / 2.039e12 = 7.0470 ms -> 141.90 tok/s -> 0.75 / (141.90 x 3600) x 1e6 = $1.4681
    # H100: t = 14.369e9 / 3.35e12  = 4.2892 ms -> 233.14 tok/s -> 1.20 / (233.14 x 3600) x 1e6 = $1.4297
    # the two smallest TP sizes that fit; with ideal TP scaling $/token is the same, so more devices
    # rank after fewer
    assert list(zip(df["device"], df["devices"], strict=True))[:3] == [
        ("h100-sxm", 1),
        ("h100-sxm", 2),
        ("a100-80gb-sxm", 1),
    ]
    h100, a100 = df.iloc[0], df.iloc[2]
    assert h100["output_tok_s"] == pytest.approx(233.143, rel=1e-5)
    assert h100["usd_per_1m_tokens"] == pytest.approx(1.42974, rel=1e-5)
    assert a100["output_tok_s"] == pytest.approx(141.904, rel=1e-5)
    assert a100["usd_per_1m_tokens"] == pytest.approx(1.46813, rel=1e-5)
    # TTFT = prefill + one step: (2 x 7.24e9 x 1024 + 2 x 32 x 32 x 128 x 1024^2) = 1.5102e13 FLOP
    # / 312e12 = 48.41 ms, + 7.05 ms = 55.45 ms
    assert a100["ttft_s"] == pytest.approx(0.055451, rel=1e-4)
    assert all(df["meets_slo"]) and all(df["basis"].str.startswith("roofline estimate"))


def test_slo_filter_explains_why_an_option_fails() -> None:
    df, _ = recommend(_need(tpot_s=0.005), PRICES, precisions=("bf16",), only=tuple(PRICES))
    a100 = df[(df["device"] == "a100-80gb-sxm") & (df["devices"] == 1)].iloc[0]
    assert not a100["meets_slo"] and a100["why_not"] == "TPOT 7.0 ms > 5.0 ms"
    assert df.iloc[0]["meets_slo"] and df.iloc[-1]["device"] == "a100-80gb-sxm"  # failing rows rank last


def test_measured_point_replaces_the_estimate() -> None:
    points = pd.DataFrame(
        [
            {
                "model": "mistral-7b",
                "device": "a100-80gb-sxm",
                "precision": "bf16",
                "devices": 1,
                "concurrency": 1,
                "output_tok_s": 112.0,
                "ttft_s_p99": 0.05,
                "tpot_s_p99": 0.009,
                "run_id": "r1",
                "started_utc": "2026-11-01",
            }
        ]
    )
    df, _ = recommend(_need(), PRICES, points, precisions=("bf16",), only=("a100-80gb-sxm",))
    got = df[df["devices"] == 1].iloc[0]
    assert got["basis"] == "measured (r1, p99 latencies)"
    assert got["usd_per_1m_tokens"] == pytest.approx(1.8601190, rel=1e-6)  # the article's $1.86
    # with the point's successful requests counted, the basis says how many its p99s come from
    df, _ = recommend(_need(), PRICES, points.assign(ok=16), precisions=("bf16",), only=("a100-80gb-sxm",))
    assert df[df["devices"] == 1].iloc[0]["basis"] == "measured (r1, p99 of 16 requests)"


def _point(**over: object) -> dict[str, object]:
    base = {
        "model": "llama-3.1-70b", "device": "h100-sxm", "precision": "bf16", "devices": 8,
        "concurrency": 32, "output_tok_s": 2500.0, "ttft_s_p99": 0.5, "tpot_s_p99": 0.02,
        "run_id": "r8", "started_utc": "2026-11-01", "ok": 64, "errors": 0,
        "workload_input_tokens": 1024, "workload_output_tokens": 256,
    }  # fmt: skip
    return {**base, **over}


def test_measured_tp8_is_used_and_must_match_the_workload_and_have_no_failures() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame([_point()]), precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]  # beyond the two smallest TP sizes that fit: measured
    assert tp8["basis"] == "measured (r8, p99 of 64 requests)" and tp8["meets_slo"]
    assert sorted(df["devices"]) == [2, 4, 8]  # bf16 70B: TP 2 and 4 estimated, 8 measured
    # another workload's numbers are not "measured" for this one (and TP 8 is then not listed)
    other = pd.DataFrame([_point(workload_input_tokens=8192)])
    df, _ = recommend(need, {"h100-sxm": 2.0}, other, precisions=("bf16",))
    assert sorted(df["devices"]) == [2, 4] and df["basis"].str.startswith("roofline estimate").all()
    # a point where requests failed: its p99s cover only the successes, so it cannot meet the SLOs
    other = pd.DataFrame([_point(workload_input_tokens=8192)])
    _, notes = recommend(need, {"h100-sxm": 2.0}, other, precisions=("bf16",))
    assert "run r8 not used: workload 8192/256 tokens, not the 1024/256 asked" in notes
    failing = pd.DataFrame([_point(ok=40, errors=24)])
    df, _ = recommend(need, {"h100-sxm": 2.0}, failing, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert not tp8["meets_slo"] and tp8["why_not"] == "24 of 64 measured requests failed"


def test_runs_given_but_not_used_are_said_so_with_the_reason() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    runs = pd.DataFrame(
        [
            _point(run_id="used"),
            _point(run_id="cpu", device="cpu"),
            _point(run_id="8b", model="llama-3.1-8b"),
            _point(run_id="fp8", precision="fp8"),
            _point(run_id="c1", concurrency=1),
        ]
    )
    _, notes = recommend(need, {"h100-sxm": 2.0}, runs, precisions=("bf16",))
    said = [n for n in notes if n.startswith("run ")]
    assert said == [
        "run 8b not used: measures another model than llama-3.1-70b",
        "run c1 not used: no point at concurrency 32 (has 1)",
        "run cpu not used: ran on a device that is not ranked (GPUs of the catalog)",
        "run fp8 not used: precision fp8 not asked (--precision)",
    ]
    # an older rerun of the point taken, a device without a price, a device count not ranked
    more = pd.DataFrame(
        [
            _point(run_id="new", started_utc="2026-11-02"),
            _point(run_id="old"),
            _point(run_id="a100", device="a100-80gb-sxm"),
            _point(run_id="tp16", devices=16),
            _point(run_id="long", workload_input_tokens=8192),
            _point(run_id="offload", devices=1),  # 141 GB of bf16 weights on one 80 GB GPU
            _point(run_id="ext", precision="auto"),  # an external endpoint: no precision recorded
        ]
    )
    _, notes = recommend(need, {"h100-sxm": 2.0}, more, precisions=("bf16",))
    assert [n for n in notes if n.startswith("run ")] == [
        "run a100 not used: no price for a100-80gb-sxm (give --price DEVICE=USD_PER_HOUR)",
        "run ext not used: its precision is not recorded (auto), so recommend cannot rank it",
        "run long not used: workload 8192/256 tokens, not the 1024/256 asked",
        "run offload not used: its weights do not fit on its device count, which recommend does not rank "
        "(offloaded?)",
        "run old not used: a newer run of this option (model, device, precision, device count, load) was "
        "taken",
        "run tp16 not used: 16 device(s): not among the device counts ranked (1, 2, 4, 8)",
    ]


def test_a_newer_run_that_measured_nothing_or_offloaded_does_not_hide_a_measurement() -> None:
    """A rerun whose every request failed (no tok/s) was taken over the older run that measured 2500
    tok/s and met the SLOs; so was a newer run that offloaded weights to host memory."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    runs = pd.DataFrame(
        [
            _point(run_id="good"),
            _point(run_id="failed", started_utc="2026-11-02", ok=0, errors=64, output_tok_s=float("nan")),
            _point(run_id="offload", started_utc="2026-11-03", partial_offload=True, output_tok_s=900.0),
        ]
    )
    df, notes = recommend(need, {"h100-sxm": 2.0}, runs, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (good, p99 of 64 requests)" and tp8["output_tok_s"] == 2500.0
    assert [n for n in notes if n.startswith("run ")] == [
        "run failed not used: it measured nothing (every measured request failed)",
        "run offload not used: it offloads weights to host memory (recommend ranks GPU-resident "
        "configurations)",
    ]
    # the only run of the configuration measured nothing: it is the measurement, and says so
    df, _ = recommend(need, {"h100-sxm": 2.0}, runs[runs["run_id"] == "failed"], precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (failed, p99 latencies)" and not tp8["meets_slo"]


def test_kv_cache_capacity_and_missing_prices() -> None:
    df, notes = recommend(
        _need(model="llama-3.1-70b", concurrency=256), {"a100-80gb-sxm": 1.49}, precisions=("bf16",)
    )
    tp2 = df[(df["device"] == "a100-80gb-sxm") & (df["devices"] == 2)].iloc[0]
    # per GPU: 70.6 GB of weights, room 0.9 x 80 GiB - 70.6e9 = 6.7e9 B; 256 x 1280 x 163,840 B = 53.7e9 B
    assert "KV cache for 256 x 1280 tokens does not fit" in tp2["why_not"]
    (unpriced,) = [n for n in notes if n.startswith("not ranked, no price: ")]
    assert "h100-sxm" in unpriced and "a100-80gb-sxm" not in unpriced and "(give --price " in unpriced


def test_the_kv_cache_a_run_allocated_overrides_the_estimated_room() -> None:
    """An estimate's KV check takes the tokens vLLM allocated in a run of the same model, device,
    precision and device count (at another load too) over the roofline's room beside the weights."""
    need = Need(get_model("llama-3.1-70b"), 256, 1024, 256, None, None)  # 256 x 1280 = 327,680 tokens
    base, _ = recommend(need, {"h100-sxm": 2.0}, precisions=("bf16",))
    tp4 = base[base["devices"] == 4].iloc[0]
    assert tp4["meets_slo"] and tp4["basis"] == "roofline estimate (efficiency 1)"
    small = pd.DataFrame([_point(devices=4, concurrency=8, kv_cache_tokens=300_000.0)])
    df, _ = recommend(need, {"h100-sxm": 2.0}, small, precisions=("bf16",))
    tp4 = df[df["devices"] == 4].iloc[0]
    assert not tp4["meets_slo"] and tp4["why_not"] == "KV cache for 256 x 1280 tokens does not fit"
    assert tp4["basis"] == "roofline estimate (efficiency 1); KV cache measured (300,000 tokens, r8)"
    # the latest run counts; other device counts are not taken
    roomy = pd.DataFrame(
        [
            _point(devices=4, concurrency=8, kv_cache_tokens=300_000.0),
            _point(
                devices=4, concurrency=8, kv_cache_tokens=400_000.0, run_id="r9", started_utc="2026-11-02"
            ),
            _point(devices=2, concurrency=8, kv_cache_tokens=10.0),
        ]
    )
    df, _ = recommend(need, {"h100-sxm": 2.0}, roomy, precisions=("bf16",))
    tp4, tp2 = (df[df["devices"] == n].iloc[0] for n in (4, 2))
    assert tp4["meets_slo"] and tp4["basis"].endswith("KV cache measured (400,000 tokens, r9)")
    assert "KV cache measured" in tp2["basis"] and "does not fit" in tp2["why_not"]


def test_article_rule_of_thumb() -> None:
    assert article_rule(_need(model="llama-3.1-70b")) == "article's rule of thumb: H100 (> 13B parameters)"
    assert article_rule(_need()).startswith("article's rule of thumb: A100")


def test_recommend_slo_options_carry_their_unit_and_the_older_names_still_work() -> None:
    import subprocess

    from tests.conftest import HARNESS

    for ttft, tpot in (("--ttft-slo-s", "--tpot-slo-s"), ("--ttft-slo", "--tpot-slo")):
        args = ["recommend", "--model", "llama-3.1-8b", "--concurrency", "4", ttft, "1.5", tpot, "0.04"]
        res = subprocess.run(
            [*HARNESS, *args, "--price", "h100-sxm=3", "--top", "1"], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert "SLO p99 TTFT <= 1.5 s, p99 TPOT <= 0.04 s" in res.stdout


def test_recommend_writes_its_ranking_as_csv_or_markdown(tmp_path: Path) -> None:
    import csv
    import subprocess

    from tests.conftest import HARNESS

    args = ["recommend", "--model", "llama-3.1-8b", "--concurrency", "4", "--gpu", "h100-sxm", "--gpu"]
    args += ["a100-80gb-sxm", "--price", "h100-sxm=3", "--price", "a100-80gb-sxm=2", "--top", "1"]
    res = subprocess.run([*HARNESS, *args, "--out", str(tmp_path / "r.csv")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    # every option ranked, not only the --top shown, in the printed order
    assert len(rows) > 1 and [r["rank"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    assert {r["device"] for r in rows} == {"h100-sxm", "a100-80gb-sxm"}
    costs = [float(r["usd_per_1m_tokens"]) for r in rows if r["meets_slo"] == "True"]
    assert costs == sorted(costs)
    res = subprocess.run(
        [*HARNESS, *args, "--out", str(tmp_path / "new" / "r.md")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    md = (tmp_path / "new" / "r.md").read_text()
    first = rows[0]
    assert md.startswith("# llama-3.1-8b at concurrency 4, 1024 in / 256 out, SLO p99 TTFT \\<= 2.0 s")
    assert f"| 1 | {first['devices']}x {first['device']} | {first['precision']} |" in md
    assert "| 2 |" not in md  # the table is the --top shown
    assert "- roofline estimates are best cases" in md and "- article's rule of thumb" in md
    # nothing ranked: the CSV still has its columns, and no row
    none = ["recommend", "--model", "llama-3.1-405b", "--concurrency", "4", "--gpu", "l40s", "--precision"]
    none += ["bf16", "--price", "l40s=1", "--out", str(tmp_path / "none.csv")]
    res = subprocess.run([*HARNESS, *none], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "none.csv").read_text().splitlines() == [
        "rank,device,devices,precision,output_tok_s,ttft_s,tpot_s,usd_per_device_hour,usd_per_1m_tokens,"
        "meets_slo,why_not,basis"
    ]
    # a directory is no file to write it to
    assert (
        "is a directory"
        in subprocess.run([*HARNESS, *args, "--out", str(tmp_path)], capture_output=True, text=True).stderr
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["recommend", "--model", "llama-3.1-70b", "--concurrency", "8", "--gpu", "h100"],
            "--gpu: 'h100' is not a GPU in the hardware catalog (allowed: a100-40gb-pcie,",
        ),
        (  # a price of no catalog GPU had been taken and used nowhere, without a word
            ["recommend", "--model", "llama-3.1-70b", "--concurrency", "8", "--price", "h100x=1"],
            "--price: 'h100x' is not a GPU in the hardware catalog (allowed: a100-40gb-pcie,",
        ),
        (["claims", "--source", "foo"], "--source: no claims from 'foo' (allowed: article,"),
        (
            ["recommend", "--model", "llama-3.1-8b", "--concurrency", "4", "--precision", "auto,bf16"],
            "--precision: auto is an engine's own choice, not one to rank: name it (e.g. bf16,fp8)",
        ),
        (
            ["cost", "--usd-per-hour", "2", "--output-tok-s", "100", "--j-per-output-token", "0.5"],
            "cost: --j-per-output-token needs --usd-per-kwh",
        ),
        (
            ["roofline", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--cpu-offload-gb", "500"],
            "roofline: --cpu-offload-gb: 500 GiB is more than each device's share of the bf16 weights",
        ),
    ],
)
def test_bad_options_say_what_is_allowed_without_a_traceback(args: list[str], message: str) -> None:
    from tests.conftest import run_harness

    res = run_harness(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert message in " ".join(res.stderr.split()), res.stderr


def test_cost_of_run_directories_refuses_typed_numbers(tmp_path: Path) -> None:
    import subprocess

    from harness.results import RunDir
    from tests.conftest import HARNESS

    run = RunDir.create(tmp_path, "s")
    run.write_manifest({"run_id": run.path.name, "status": "complete"})
    res = subprocess.run(
        [*HARNESS, "cost", str(run.path), "--usd-per-hour", "3"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "cost: --usd-per-hour is for typed numbers, not run directories" in " ".join(res.stderr.split())
    # a run records how many devices it used: a typed count would be ignored, so it is refused
    res = subprocess.run([*HARNESS, "cost", str(run.path), "--devices", "4"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "cost: --devices is for typed numbers, not run directories" in " ".join(res.stderr.split())


def test_energy_priced_runs_without_j_per_token_say_why_the_totals_are_empty() -> None:
    """The CPU quickstart has no J/token (no RAPL there): `--usd-per-kwh` left its energy and total columns
    `-` with no word, and the total without the energy reads as the rent alone."""
    from tests.conftest import run_harness

    run = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"
    res = run_harness("cost", str(run), "--price", "cpu=0.10", "--usd-per-kwh", "0.2")
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert (
        "note: --usd-per-kwh: points without J/token (no energy telemetry in their window) have no energy"
        in said
    )
    res = run_harness("cost", str(run), "--price", "cpu=0.10")
    assert "--usd-per-kwh" not in res.stderr


def test_estimates_beside_measured_options_say_what_share_of_the_ceiling_was_reached() -> None:
    """A 2x A100 estimate at 100 % ranked first above a measured A100 that reached 36 % of its ceiling."""
    from harness.recommend import _estimate, efficiency_note

    assert efficiency_note([0.36, 0.52], 1.0, True) == [
        "measured options reached 36%-52% of their roofline estimate; the estimates assume 100 %: "
        "--efficiency 0.36 ranks them on the measured footing"
    ]
    assert efficiency_note([0.36], 1.0, True)[0].startswith("measured options reached 36% of their")
    assert efficiency_note([0.36], 0.4, True) == []  # an efficiency given: the user chose it
    assert efficiency_note([0.36], 1.0, False) == []  # nothing estimated
    assert efficiency_note([1.2], 1.0, True) == []  # above the ceiling: nothing to scale down by
    (said,) = efficiency_note([0.5, 1.2], 1.0, True)  # one below its ceiling: the lowest share is taken
    assert said.endswith("--efficiency 0.5 ranks them on the measured footing")
    (said,) = efficiency_note([0.004, 0.3], 1.0, True)
    assert said.endswith("--efficiency 0.01 ranks them on the measured footing")  # the lowest it takes
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    _, notes = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame([_point()]), precisions=("bf16",))
    from harness.catalog.hardware import gpus

    share = 2500.0 / _estimate(need, gpus()["h100-sxm"], "bf16", 8, 1.0).output_tok_s
    assert f"measured options reached {share:.0%} of their roofline estimate" in " | ".join(notes)


def test_an_amd_gpu_among_the_rows_shown_says_what_running_it_takes() -> None:
    """The MI300X ranks first for Llama-3.1-70B, and `cloud launch` refuses it with the CUDA images."""
    from harness.recommend import vendor_notes

    shown = pd.DataFrame({"device": ["mi300x", "mi300x", "h100-sxm", "epyc-9654", "cpu"]})  # an AMD CPU too
    (note,) = vendor_notes(shown)
    assert note.startswith("mi300x is an AMD GPU: `harness cloud launch` needs --image")
    assert vendor_notes(shown.iloc[2:]) == [] and vendor_notes(shown.iloc[:0]) == []


def test_a_device_key_in_capitals_is_that_device() -> None:
    """`--price GH200=2` had been refused with `gh200` among the allowed keys."""
    from tests.conftest import run_harness

    res = run_harness("recommend", "--model", "llama-3.1-70b", "--concurrency", "8", "--price", "GH200=2")
    assert res.returncode == 0, res.stderr
    assert "gh200" in res.stdout and "no price: a100-40gb-pcie, h100-nvl (" in res.stderr


def test_of_a_runs_configurations_of_one_option_the_best_is_taken_and_named() -> None:
    """A run with two vLLM configurations on 8 H100s at bf16 (two batched-token budgets) had its last
    variant taken, whichever it was; it is the one without failures, within the SLOs, with the most tok/s."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    variants = [
        _point(variant_label="mnbt=8192", output_tok_s=2500.0),
        _point(variant_label="mnbt=2048", output_tok_s=2100.0),
    ]
    for order in (variants, variants[::-1]):
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(order), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["output_tok_s"] == 2500.0
        assert tp8["basis"] == "measured (r8 mnbt=8192, the best of 2 configurations, p99 of 64 requests)"
    # the faster one over the TTFT asked, or with failed requests: the other meets the need
    for slower in ({"ttft_s_p99": 2.5}, {"ok": 60, "errors": 4}):
        rows = [{**variants[0], **slower}, variants[1]]
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(rows), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["output_tok_s"] == 2100.0 and tp8["meets_slo"], tp8.to_dict()
    # an older run's faster configuration does not displace the newer run's
    older = _point(run_id="old", started_utc="2026-10-01", output_tok_s=3000.0)
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame([older, *variants]), precisions=("bf16",))
    assert df[df["devices"] == 8].iloc[0]["output_tok_s"] == 2500.0


def test_a_point_of_another_output_length_is_not_the_measurement() -> None:
    """1024/128 tokens measured, 1024/256 asked: TP 8 is not listed, TP 2 and 4 are estimates."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(workload_output_tokens=128)])
    df, notes = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    assert sorted(df["devices"]) == [2, 4]
    assert list(df["basis"]) == ["roofline estimate (efficiency 1)"] * 2
    assert "run r8 not used: workload 1024/128 tokens, not the 1024/256 asked" in notes


def test_of_runs_that_all_measured_nothing_the_newest_is_the_measurement() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    failed = {"ok": 0, "errors": 64, "output_tok_s": NAN}
    runs = [_point(run_id="old", **failed), _point(run_id="new", started_utc="2026-11-02", **failed)]
    for order in (runs, runs[::-1]):
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(order), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["basis"] == "measured (new, p99 latencies)"
        assert tp8["why_not"] == "64 of 64 measured requests failed"


def test_without_a_ttft_limit_the_tpot_limit_still_picks_the_configuration() -> None:
    """No TTFT asked, TPOT p99 <= 0.03 s: the 2500 tok/s configuration at 0.05 s is over it, the 2100 tok/s
    one within it is taken."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, None, 0.03)
    variants = [
        _point(variant_label="mnbt=8192", output_tok_s=2500.0, tpot_s_p99=0.05),
        _point(variant_label="mnbt=2048", output_tok_s=2100.0),
    ]
    for order in (variants, variants[::-1]):
        df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(order), precisions=("bf16",))
        tp8 = df[df["devices"] == 8].iloc[0]
        assert tp8["output_tok_s"] == 2100.0 and tp8["meets_slo"]
        assert tp8["basis"] == "measured (r8 mnbt=2048, the best of 2 configurations, p99 of 64 requests)"


def test_a_configuration_exactly_at_the_tpot_limit_is_within_it() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, None, 0.05)
    variants = [
        _point(variant_label="mnbt=8192", output_tok_s=2500.0, tpot_s_p99=0.05),
        _point(variant_label="mnbt=2048", output_tok_s=2100.0),
    ]
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame(variants), precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["output_tok_s"] == 2500.0
    assert tp8["basis"] == "measured (r8 mnbt=8192, the best of 2 configurations, p99 of 64 requests)"


def test_a_lone_configuration_that_measured_nothing_is_not_called_the_best_of_several() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    point = _point(run_id="failed", variant_label="mnbt=8192", ok=0, errors=64, output_tok_s=NAN)
    df, _ = recommend(need, {"h100-sxm": 2.0}, pd.DataFrame([point]), precisions=("bf16",))
    assert df[df["devices"] == 8].iloc[0]["basis"] == "measured (failed, p99 latencies)"


def test_a_run_of_one_labelled_configuration_is_named_by_its_run_alone() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    df, _ = recommend(
        need, {"h100-sxm": 2.0}, pd.DataFrame([_point(variant_label="mnbt=8192")]), precisions=("bf16",)
    )
    assert df[df["devices"] == 8].iloc[0]["basis"] == "measured (r8, p99 of 64 requests)"


def test_several_unlabelled_points_of_one_option_are_named_by_their_run_alone() -> None:
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(output_tok_s=2400.0), _point()])
    df, _ = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (r8, p99 of 64 requests)" and tp8["output_tok_s"] == 2500.0


def test_a_point_without_request_counts_is_taken_as_no_failures() -> None:
    """A points table another tool wrote, or one whose counts are empty: NaN had crashed the ranking."""
    need = Need(get_model("llama-3.1-70b"), 32, 1024, 256, 2.0, 0.2)
    points = pd.DataFrame([_point(errors=float("nan"), ok=float("nan"))])
    df, _ = recommend(need, {"h100-sxm": 2.0}, points, precisions=("bf16",))
    tp8 = df[df["devices"] == 8].iloc[0]
    assert tp8["basis"] == "measured (r8, p99 latencies)" and tp8["meets_slo"] and tp8["why_not"] == ""


def test_huge_prices_still_rank_cheapest_first() -> None:
    # 1e300 $/h (H100) and 2e300 $/h (A100), H100 cheaper per token: rounding to decimals overflowed
    # both costs to inf, a tie kept in catalog order
    df, _ = recommend(_need(), {"a100-80gb-sxm": 2e300, "h100-sxm": 1e300}, precisions=("bf16",), tps=(1,))
    assert list(df["device"][:2]) == ["h100-sxm", "a100-80gb-sxm"]
    assert df["usd_per_1m_tokens"].iloc[0] < df["usd_per_1m_tokens"].iloc[1]
