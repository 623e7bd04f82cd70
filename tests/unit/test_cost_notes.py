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
