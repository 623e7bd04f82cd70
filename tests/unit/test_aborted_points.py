"""A point cut short (engine died, Ctrl-C) keeps its row on disk but is not compared or priced."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.report import report_run
from harness.results import RunDir
from harness.runinfo import run_points
from harness.scenario import parse_scenario

DIED = "engine process exited"


def test_aborted_rows_are_kept_noted_and_left_out_of_comparisons(tmp_path: Path) -> None:
    engine = {"type": "llamacpp", "model": {"source": "synthetic"}}
    s = parse_scenario({"name": "s", "engine": engine, "hardware": {"gpus": 0}})
    run = RunDir.create(tmp_path, "s")
    run.write_manifest({"run_id": run.path.name, "status": "partial", "scenario": s.model_dump(mode="json")})
    base = {"variant": 0, "engine": "llamacpp", "precision": "f16", "ok": 8, "errors": 0}
    run.write_points(
        [
            {**base, "point_id": "v0-c1", "concurrency": 1, "output_tok_s": 30.0, "aborted": ""},
            {**base, "point_id": "v0-c2", "concurrency": 2, "output_tok_s": 9.0, "aborted": DIED},
        ]
    )
    assert list(run_points(run.path)["point_id"]) == ["v0-c1"]
    console = Console(record=True, width=300)
    md = report_run(run.path, console)
    note = "point v0-c2 was aborted (engine process exited): its row covers only the requests finished"
    assert note in console.export_text()
    assert note in md.read_text() and "v0-c2" in md.read_text()  # the row itself is still shown
