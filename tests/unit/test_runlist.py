"""`harness ls`: one line per run, from the committed evidence and from runs left in odd states."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

from harness.runlist import run_line, run_status
from tests.conftest import run_harness

EVIDENCE = Path(__file__).resolve().parents[2] / "results/evidence"


def test_each_committed_run_is_one_line_with_what_it_measured() -> None:
    quick = run_line(EVIDENCE / "20261125T114708Z-quickstart-cpu")
    assert quick == {
        "run": "20261125T114708Z-quickstart-cpu",
        "status": "complete",
        "started (UTC)": "2026-11-25 11:47",
        "model": "gemma-3-270m",
        "hardware": "cpu",
        "engine": "llamacpp/xllamacpp",
        "points": "3/3",
        "best out tok/s": "51.9",  # c4's 51.9 of 36.8, 36.5, 51.9 (report.md)
    }
    assert run_line(EVIDENCE / "20261201T120142Z-vllm-tiny-cpu")["engine"] == "vllm"


def test_a_killed_run_and_an_unreadable_one_are_said_to_be(tmp_path: Path) -> None:
    killed = tmp_path / "20260101T000000Z-killed"
    shutil.copytree(EVIDENCE / "20261125T114708Z-quickstart-cpu", killed)
    manifest = json.loads((killed / "manifest.json").read_text())
    # a pid of this host whose process is gone: the start time recorded is not that of any live process
    manifest.update(status="running", runner={"hostname": socket.gethostname(), "pid": 1, "started_s": 1.0})
    (killed / "manifest.json").write_text(json.dumps(manifest))
    assert run_line(killed)["status"] == "running, its process gone (killed?)"
    manifest["runner"]["hostname"] = "elsewhere"
    assert run_status(manifest) == "running on elsewhere?"
    broken = tmp_path / "20260102T000000Z-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    line = run_line(broken)
    assert line["status"].startswith("unreadable: ") and line["points"] == "-"


def test_ls_lists_the_runs_below_a_folder_oldest_first(tmp_path: Path) -> None:
    res = run_harness("ls", str(EVIDENCE), env={"COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    rows = [ln.split("│")[1].strip() for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert rows[:2] == ["cpu-gemma-threads", "20261125T114708Z-quickstart-cpu"] and len(rows) == 6
    assert "6 run(s)" in res.stdout
    empty = run_harness("ls", str(tmp_path))
    assert empty.returncode == 0 and f"no runs in {tmp_path}" in empty.stderr
    gone = run_harness("ls", str(tmp_path / "nowhere"))
    assert gone.returncode == 2 and "ls: " in gone.stderr and "no such directory" in gone.stderr


def test_one_odd_manifest_is_listed_as_unreadable_and_the_others_still_are(tmp_path: Path) -> None:
    """A catalog model without its name (a hand edit) had stopped the whole listing with a KeyError."""
    good = tmp_path / "20260101T000000Z-good"
    shutil.copytree(EVIDENCE / "20261125T114708Z-quickstart-cpu", good)
    odd = tmp_path / "20260102T000000Z-odd"
    shutil.copytree(good, odd)
    manifest = json.loads((odd / "manifest.json").read_text())
    manifest["scenario"]["engine"]["model"] = {"source": "catalog"}
    (odd / "manifest.json").write_text(json.dumps(manifest))
    line = run_line(odd)
    assert line["status"].startswith("unreadable: edited by hand? KeyError: 'name', in runinfo.py:"), line
    res = run_harness(
        "ls", str(tmp_path), str(good / "manifest.json"), str(tmp_path.resolve()), env={"COLUMNS": "200"}
    )
    assert res.returncode == 0, res.stderr
    rows = [ln.split("│")[1].strip() for ln in res.stdout.splitlines() if ln.startswith("│")]
    assert sorted(rows) == [good.name, odd.name]  # each once, however it was named


def test_the_best_point_is_named_where_variants_ran_differently() -> None:
    line = run_line(EVIDENCE / "cpu-gemma-threads")  # two variants: threads 1 and 2
    assert line["best out tok/s"] == "17.8 (v1-c4)"
