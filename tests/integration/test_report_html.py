"""report / compare / cost / claims over REAL run directories (llama.cpp on CPU, random-weight GGUFs),
and the HTML report opened in headless Chromium as a person would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.formatting import fmt
from harness.results import read_manifest
from harness.rundevice import device_of
from harness.runinfo import engine_config
from tests.integration.conftest import SMALL_MODEL, harness_cli

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")

PLOTS = ("output-throughput-vs-load", "ttft-vs-throughput", "tpot-vs-throughput", "cost-per-1m-output-tokens")
TITLES = (
    "Output throughput vs load",
    "TTFT vs throughput",
    "TPOT vs throughput",
    "Cost per 1M output tokens",
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _run(write_scenario, results: Path, name: str, dtype: str, variants: list[dict]) -> Path:
    scen = write_scenario(
        {
            "name": name,
            "engine": {
                "type": "llamacpp",
                "model": {**SMALL_MODEL, "dtype": dtype},
                "parallel": 2,
                "threads": 1,
            },
            "variants": variants,
            "workload": {"input_tokens": 32, "output_tokens": 16},
            "load": {"concurrency": [1, 2], "requests": 4, "warmup_requests": 1},
        },
        f"{name}.yaml",
    )
    res = harness_cli("run", str(scen), "--results", str(results), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stderr.splitlines() if x.startswith("run directory: "))
    return Path(line.split(": ", 1)[1].strip())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import yaml

    d = tmp_path_factory.mktemp("report-runs")

    def write_scenario(data: dict, name: str) -> Path:
        p = d / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    a = _run(write_scenario, d / "results", "rep-f16", "f16", [{"parallel": 1}, {"parallel": 2}])
    b = _run(write_scenario, d / "results", "rep-q8", "q8_0", [])
    return {"a": a, "b": b}


def _device(run: Path) -> str:
    m = read_manifest(run)
    return device_of(m, engine_config(m, 0))[0]


def test_report_keeps_table_and_md_and_writes_self_contained_html(runs: dict[str, Path]) -> None:
    from PIL import Image

    a = runs["a"]
    dev = _device(a)
    res = harness_cli("report", str(a), "--price", f"{dev}=0.5", "--bandwidth", f"{dev}=20")
    assert res.returncode == 0, res.stderr
    assert "out tok/s" in res.stdout and "v1-c2" in res.stdout  # the terminal table as before
    md = (a / "report.md").read_text()
    assert "v1-c2" in md
    # each variant's command, the workload and the SLO goodput is judged against
    assert "- engine v0 (parallel=1): " in md and "- engine v1 (parallel=2): " in md
    assert "\n- goodput SLO: " in md and "\n- workload: " in md and " tokens in/out (mean)" in md
    assert "Energy per output token: not plotted" in res.stderr  # CPU runs carry no energy columns
    html = (a / "report.html").read_text()
    assert "<script" not in html and not re.search(r"""src=['"]https?:""", html)
    assert html.count("data:image/png;base64,") == len(PLOTS)
    for t in TITLES:
        assert f"<h2>{t}</h2>" in html
    assert "--parallel" in html and "Prices used" in html and "no energy telemetry" in html
    # scenario parts as the file writes them, not Python's repr
    assert "<td>goodput SLO</td>" in html and "ignore_eos: true" in html and "'" + "api" not in html
    for p in PLOTS:
        png = a / "report-plots" / f"{p}.png"
        img = Image.open(png).convert("RGB")
        assert img.width > 300 and img.height > 200
        assert img.getextrema() != ((255, 255), (255, 255), (255, 255)), p  # not blank


PROBE = """<script>window.addEventListener('load', () => { document.body.setAttribute('data-probe',
[...document.images].map(i => i.naturalWidth + 'x' + i.naturalHeight).join(',')); });</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)  # type: ignore[list-item]


def _pixels_near(img, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return sum(
        n
        for n, (r, g, b) in img.getcolors(maxcolors=1 << 20)
        if max(abs(r - rgb[0]), abs(g - rgb[1]), abs(b - rgb[2])) <= tol
    )


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("HARNESS_REQUIRE_CHROMIUM"),
    reason="chromium is not installed (.ci/run installs it and sets HARNESS_REQUIRE_CHROMIUM)",
)
def test_html_report_renders_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    assert CHROMIUM, "HARNESS_REQUIRE_CHROMIUM is set but no chromium is on PATH"

    a = runs["a"]
    if not (a / "report.html").exists():
        dev = _device(a)
        assert harness_cli("report", str(a), "--price", f"{dev}=0.5").returncode == 0
    html = (a / "report.html").read_text()
    good, broken = tmp_path / "good.html", tmp_path / "broken.html"
    good.write_text(html.replace("</body>", PROBE + "</body>"))
    # negative control: the same page with every image's data corrupted
    broken.write_text(good.read_text().replace("base64,iVBOR", "base64,AAAA"))
    widths = [Image.open(a / "report-plots" / f"{p}.png").size for p in PLOTS]

    dom = _chromium("--dump-dom", good.as_uri()).stdout
    probe = re.search(r'data-probe="([^"]*)"', dom)
    assert probe, dom[-500:]
    assert probe.group(1).split(",") == [f"{w}x{h}" for w, h in widths]  # every plot decoded at its size
    for t in TITLES:
        assert t in dom
    bad = re.search(r'data-probe="([^"]*)"', _chromium("--dump-dom", broken.as_uri()).stdout)
    assert bad and set(bad.group(1).split(",")) == {"0x0"}

    shots = {}
    for name, page in (("good", good), ("broken", broken)):
        png = tmp_path / f"{name}.png"
        _chromium(f"--screenshot={png}", "--window-size=1100,3200", page.as_uri())
        shots[name] = Image.open(png).convert("RGB")
    # matplotlib's first two line colors (C0 blue, C1 orange) are on screen only if the plots rendered
    blue, orange = (31, 119, 180), (255, 127, 14)
    assert _pixels_near(shots["good"], blue) > 500 and _pixels_near(shots["good"], orange) > 500
    assert _pixels_near(shots["broken"], blue) < 50 and _pixels_near(shots["broken"], orange) < 50


def test_compare_matches_the_points_files_by_manifest(runs: dict[str, Path], tmp_path: Path) -> None:
    a, b = runs["a"], runs["b"]
    # a misleading directory name must not change how the run is labelled: labels come from manifests
    b2 = tmp_path / "h100-sxm-fp8-vllm"
    shutil.copytree(b, b2)
    dev = _device(a)
    base = f"{dev} | llamacpp/xllamacpp | parallel=1"
    out = tmp_path / "cmp"
    res = harness_cli(
        "compare", str(a), str(b2), "--baseline", base, "--out", str(out), "--price", f"{dev}=0.5"
    )
    assert res.returncode == 0, res.stderr
    assert "speedup vs baseline" in res.stdout
    # which price the $/1M rows use, and where it came from
    assert f"note: price {dev}: $0.5/device-hour (--price)" in res.stdout
    assert f"- price {dev}: $0.5/device-hour (--price)" in (out / "compare.md").read_text()
    wide = pd.read_csv(out / "compare.csv")
    assert set(wide["precision"]) == {"f16", "q8_0"} and set(wide["load"]) == {"c1", "c2"}
    assert not any("h100" in c for c in wide.columns)
    pa, pb = pd.read_csv(a / "points.csv"), pd.read_csv(b / "points.csv")
    for load in ("c1", "c2"):
        conc = int(load[1:])
        row = wide[(wide["precision"] == "f16") & (wide["load"] == load)].iloc[0]
        v0 = pa[(pa["variant"] == 0) & (pa["concurrency"] == conc)]["output_tok_s"].iloc[0]
        v1 = pa[(pa["variant"] == 1) & (pa["concurrency"] == conc)]["output_tok_s"].iloc[0]
        assert row[f"output_tok_s [{base}]"] == pytest.approx(v0)
        assert row[f"output_tok_s [{dev} | llamacpp/xllamacpp | parallel=2]"] == pytest.approx(v1)
        assert row[f"speedup [{base}]"] == pytest.approx(1.0)
        assert row[f"speedup [{dev} | llamacpp/xllamacpp | parallel=2]"] == pytest.approx(v1 / v0)
        assert row[f"usd_per_1m_tokens [{base}]"] == pytest.approx(0.5 / (v0 * 3600) * 1e6)
        q8 = wide[(wide["precision"] == "q8_0") & (wide["load"] == load)].iloc[0]
        vb = pb[pb["concurrency"] == conc]["output_tok_s"].iloc[0]
        assert q8[f"output_tok_s [{dev} | llamacpp/xllamacpp]"] == pytest.approx(vb)
    assert (out / "compare.parquet").is_file() and "## output tok/s" in (out / "compare.md").read_text()


def test_cost_over_a_real_run(runs: dict[str, Path]) -> None:
    a = runs["a"]
    dev = _device(a)
    res = harness_cli("cost", str(a), "--price", f"{dev}=0.5")
    assert res.returncode == 0, res.stderr
    for tok_s in pd.read_csv(a / "points.csv")["output_tok_s"]:
        assert fmt(0.5 / (tok_s * 3600) * 1e6, "usd") in res.stdout
    assert f"price {dev}: $0.5/h (--price)" in res.stderr


def test_claims_use_a_matching_run_and_fall_back_to_the_roofline(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    a = runs["a"]
    dev = _device(a)
    pts = pd.read_csv(a / "points.csv")
    model = pts["model"].iloc[0]
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n"
        f"  - {{id: mine, source: me, text: 'my CPU does 1 tok/s', kind: throughput, value: 1,\n"
        f"     model: {model}, device: {dev}}}\n"
    )
    md = tmp_path / "claims.md"
    res = harness_cli("claims", str(a), "--claims", str(claims), "--out", str(md))
    assert res.returncode == 0, res.stderr
    best = pts.loc[pts["output_tok_s"].idxmax()]
    expect = f"{best['output_tok_s']:,.0f}" if best["output_tok_s"] >= 100 else f"{best['output_tok_s']:.3g}"
    row = md.read_text().splitlines()[2]
    assert f"| {expect} tok/s at {dev} \\| llamacpp/xllamacpp \\| parallel=" in row
    assert f"measured {best['output_tok_s'] / 1 * 100:.0f}% of the claim" in row
    default = harness_cli("claims", str(a), "--source", "article", "--out", str(md))
    assert default.returncode == 0, default.stderr
    text = md.read_text()
    # no run of the claim's model: said, with what the run measured
    assert (
        "| article | Llama 3.1 70B on vLLM, H100 SXM5: 3,311 tok/s (no TP, precision, input/output lengths "
        "or concurrency given, nor whether output or total (prompt + output) tok/s) | - (no run of "
        "llama-3.1-70b; runs of: " in text
    )
    assert "| plausible on 2 or more devices (the claim names no count) |" in text
