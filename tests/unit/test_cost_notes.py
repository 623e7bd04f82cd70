"""What `harness cost` and `harness recommend` say beside their tables: the points a price is worth less
at (failed requests, SLOs missed), what an electricity price adds to, and where each price comes from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from tests.conftest import run_harness

EVIDENCE = Path(__file__).resolve().parents[2] / "results" / "evidence"


def _quickstart(tmp_path: Path) -> Path:
    """A copy of the committed quickstart run (three CPU points, c1 c2 c4, 8 requests each, all within
    the SLOs, no energy telemetry), to change."""
    run = tmp_path / "run"
    shutil.copytree(EVIDENCE / "20261125T114708Z-quickstart-cpu", run)
    return run


def _set_point(run: Path, point_id: str, **values: object) -> None:
    """Change one point's columns in its run's points table (parquet, read first; the CSV removed)."""
    pts = pd.read_parquet(run / "points.parquet")
    for col, v in values.items():
        pts.loc[pts["point_id"] == point_id, col] = v
    pts.to_parquet(run / "points.parquet")
    (run / "points.csv").unlink(missing_ok=True)


def test_cost_of_runs_says_which_points_failed_requests_or_missed_the_slos(tmp_path: Path) -> None:
    """The cheapest row is often the highest load, where requests fail and wait past the SLOs: `cost`
    priced it without a word, while `compare` of the same run warned."""
    run = _quickstart(tmp_path)
    # c4, the cheapest: 3 of its 8 requests failed, 2 of the 5 others were within the SLOs (2 / 8)
    _set_point(run, "v0-c4", errors=3, ok=5, slo_attainment=0.25)
    res = run_harness("cost", str(run), "--price", "cpu=0.10", env={"COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    head = next(line for line in res.stdout.splitlines() if "$/1M out tok" in line)
    assert "in SLO" in head
    c4 = next(line for line in res.stdout.splitlines() if "│ c4 " in line)
    c1 = next(line for line in res.stdout.splitlines() if "│ c1 " in line)
    assert "│  25.0% │" in c4 and "│ 100.0% │" in c1
    said = " ".join(res.stderr.split())
    assert (
        "note: run 20261125T114708Z-quickstart-cpu point v0-c4: 3 of 8 measured requests failed; its numbers "
        "cover the others only" in said
    )
    assert (
        "note: in SLO: the share of a point's measured requests that met every SLO of its run's scenario (a "
        "failed one did not); 1 priced point(s) are below 100 %" in said
    )
    # all within the SLOs and nothing failed: the column without a note
    res = run_harness("cost", str(_quickstart(tmp_path / "b")), "--price", "cpu=0.10")
    assert res.returncode == 0 and "in SLO" in res.stdout and "note: in SLO" not in res.stderr, res.stderr


def test_an_energy_cost_says_its_price_what_energy_it_counts_and_whose_power_it_is(tmp_path: Path) -> None:
    """`--usd-per-kwh` added electricity to a rent under 'total $/1M' without saying that a cloud's
    $/hour already pays for power, at what price, or which energy (boards and packages, no PUE)."""
    import typer.main

    from harness.cli import app

    cost = typer.main.get_command(app).commands["cost"]  # a group: the commands by name
    kwh = next(p for p in cost.params if "--usd-per-kwh" in p.opts)
    assert "a cloud's $/hour already includes it" in kwh.help and "no PUE" in kwh.help
    run = _quickstart(tmp_path)
    # c1 and c2 measured the CPU package's energy; c4's window lost a GPU's samples: no J/token
    _set_point(run, "v0-c1", energy_j_per_output_token=2.0, energy_scope="cpu_package")
    _set_point(run, "v0-c2", energy_j_per_output_token=1.5, energy_scope="cpu_package")
    _set_point(run, "v0-c4", energy_scope="incomplete")
    res = run_harness("cost", str(run), "--price", "cpu=0.10", "--usd-per-kwh", "0.15")
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert (
        "note: energy at $0.15/kWh of the energy measured in each point's window (cpu_package): GPU boards "
        "(NVML) and CPU packages (RAPL) only, not the rest of the host, power supplies or cooling (no PUE); "
        "'total $/1M' adds it to the rent, for hardware whose power you pay (a cloud's $/hour already "
        "includes power)" in said
    )
    assert "note: --usd-per-kwh: points without J/token" in said
    assert "note: some points have no J/token: a GPU's energy was unknown in their window" in said
    # without an electricity price nothing is said about energy
    res = run_harness("cost", str(run), "--price", "cpu=0.10")
    assert res.returncode == 0 and "kWh" not in res.stderr and "J/token" not in res.stderr, res.stderr
    # typed numbers: the energy line gives its formula with the price used
    res = run_harness(
        "cost", "--usd-per-hour", "2", "--output-tok-s", "100", "--j-per-output-token", "0.5", "--kwh", "0.2"
    )
    # 0.5 J x 0.2 $/kWh / 3.6e6 J/kWh x 1e6 = 0.02778 $; total 5.556 + 0.028 = 5.58
    assert res.stdout.splitlines()[1] == (
        "energy: $0.0278 per 1M output tokens = 0.5 J/token x $0.2/kWh / 3.6e6 x 1e6; total $5.58"
    )


def test_recommend_names_each_ranked_price_and_when_their_sources_differ(tmp_path: Path) -> None:
    """`cost` and `compare` name each price's provider and date; `recommend` showed only $/h, and ranked
    lambda's H100 against another provider's A100 when asked for `--provider lambda`."""
    args = ["recommend", "--model", "llama-3.1-8b", "--concurrency", "4", "--gpu", "h100-sxm", "--gpu"]
    args += ["a100-80gb-sxm", "--top", "4"]
    res = run_harness(*args, "--provider", "lambda", "--out", str(tmp_path / "r.md"))
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    # lambda lists no A100 80GB SXM: that one keeps its default price
    h100 = "price h100-sxm: $2.99/h (lambda, seen 2026-05-18)"
    a100 = "price a100-80gb-sxm: $1.49/h (typical-gpu-cloud, seen 2026-Q1, low end of $1.49-2.49)"
    assert h100 in res.stderr.splitlines() and a100 in res.stderr.splitlines()
    assert (  # in the order of the ranking: the A100's $/1M tokens is the lower
        "note: the ranked rows' prices come from 2 sources (typical-gpu-cloud: a100-80gb-sxm; lambda: "
        "h100-sxm): providers and dates differ" in said
    )
    assert "--provider lambda replaces only the prices of the devices it lists (here h100-sxm)" in said
    md = (tmp_path / "r.md").read_text()
    assert f"- {h100}" in md and "- the ranked rows' prices come from 2 sources" in md
    # the defaults of these two come from one source at the same point of its ranges, and prices given
    # on the command line are one source too: no note
    for more in ([], ["--price", "h100-sxm=3", "--price", "a100-80gb-sxm=2"]):
        res = run_harness(*args, *more)
        assert res.returncode == 0 and "sources" not in res.stderr, res.stderr
        assert "price h100-sxm: $" in res.stderr
    assert "price h100-sxm: $3/h (--price)" in res.stderr
