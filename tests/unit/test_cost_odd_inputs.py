"""Odd inputs and labels of the cost figures: options typed numbers have no use for, numbers too large to
write out digit by digit, and which tokens the report's energy column divides by."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.formatting import fmt, significant
from tests.conftest import run_harness

QUICKSTART = Path(__file__).resolve().parents[2] / "results/evidence/20261125T114708Z-quickstart-cpu"


def test_the_reports_energy_column_says_it_is_per_output_token() -> None:
    """`J/tok` stood beside `total tok/s` while the energy is divided by output tokens only."""
    from harness.report import display_frame

    shown = display_frame(
        pd.DataFrame({"output_tok_s": [50.0], "total_tok_s": [150.0], "energy_j_per_output_token": [0.25]})
    )
    assert list(shown.columns) == ["out tok/s", "total tok/s", "J/out tok"]
    assert shown.iloc[0].tolist() == ["50.0", "150.0", "0.250"]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--price", "h100-sxm=3"), ("--provider", "lambda"), ("--prices", "prices.yaml")],
)
def test_typed_numbers_refuse_the_options_that_price_runs(option: str, value: str, tmp_path: Path) -> None:
    """`cost --usd-per-hour 2 --output-tok-s 100 --price h100-sxm=3` printed $5.56 and used the --price
    nowhere, without a word."""
    if option == "--prices":
        value = str(tmp_path / value)
        Path(value).write_text(
            "prices:\n  - {device: cpu, provider: me, usd_per_hour: 0.5, seen: '2026-11', source: me}\n"
        )
    res = run_harness("cost", "--usd-per-hour", "2", "--output-tok-s", "100", option, value)
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        f"cost: {option} is for run directories, not typed numbers (it prices the devices runs were measured "
        "on; typed numbers are priced by --usd-per-hour)"
    )


def test_numbers_too_large_to_read_digit_by_digit_have_an_exponent() -> None:
    """`--output-tok-s 1e-300` printed a dollar figure of 303 digits."""
    assert significant(1e308) == "1.00e+308" and significant(-5.555e20, 2) == "-5.6e+20"
    assert significant(999_999_999_999_999.0) == "999999999999999"  # below 1e15: written out
    assert fmt(1e308, "usd") == "1.00e+308" and fmt(1e308, "{:.2f}") == "1.00e+308"
    assert fmt(1e20, "num") == "1e+20" and fmt(1.5e20, "num") == "1.5e+20" and fmt(12.50, "num") == "12.5"
    assert fmt(2e15, "ms") == "2.0e+18"  # seconds still as ms
    assert fmt("1e308", "{:.2f}") == "1e308"  # text is shown as it is
    res = run_harness("cost", "--usd-per-hour", "2", "--output-tok-s", "1e-300")
    assert res.returncode == 0, res.stderr
    # 2 $/h / (1e-300 tok/s x 3600) x 1e6 = 5.56e302
    assert res.stdout.startswith("$5.56e+302 per 1M output tokens ($5.56e+296 per token)")


def test_a_huge_price_of_a_runs_device_is_shown_with_an_exponent(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(QUICKSTART, run)
    res = run_harness("cost", str(run), "--price", "cpu=1e299", env={"COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if "cpu |" in line]
    assert len(rows) == 3 and all("│     1.00e+299 │" in r for r in rows)
    assert max(len(d) for d in re.findall(r"\d+", res.stdout)) < 20
    # more than a float holds: refused, as typed numbers are
    res = run_harness("cost", str(run), "--price", "cpu=1e308")
    assert res.returncode == 2 and res.stdout == "", res.stdout
    assert "cost: these prices give a cost too large for a float: check --price" in res.stderr
