"""What a report says about the run's state: still going, killed, ended early, resumed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from rich.console import Console

from harness.report import report_run, run_notes
from harness.results import RunDir, read_manifest
from harness.resume import reopen
from harness.scenario import parse_scenario, scenario_hash

NO_POINTS = pd.DataFrame()


def _runner(pid: int, host: str | None = None) -> dict:
    return {
        "hostname": host or socket.gethostname(),
        "pid": pid,
        "started_s": psutil.Process(pid).create_time(),
    }


def test_a_live_run_is_told_from_a_killed_one(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = {"status": "running", "scenario_file": "s.yaml", "runner": _runner(other.pid)}
        assert run_notes(live, NO_POINTS, tmp_path) == [
            f"the run is still going (process {other.pid} on this host): the table has its finished points"
        ]
    finally:
        other.kill()
        other.wait()
    [note] = run_notes(live, NO_POINTS, tmp_path)  # the same manifest, its process gone
    assert note == (
        f"the manifest says running, but its process (pid {other.pid}) is gone: killed, or its machine went "
        f"down; continue it with: harness run s.yaml --resume {tmp_path}"
    )
    elsewhere = {**live, "runner": {**live["runner"], "hostname": "gpu-node-7"}}
    assert run_notes(elsewhere, NO_POINTS, tmp_path) == [
        f"the manifest says running on host gpu-node-7: still going there, or killed "
        f"(harness run s.yaml --resume {tmp_path})"
    ]
    assert run_notes({"status": "running"}, NO_POINTS, tmp_path) == [
        "the manifest says running; whether it still is is not recorded"
    ]
    assert run_notes(
        {"status": "partial", "status_message": "point v0-c4: engine process exited"}, NO_POINTS, tmp_path
    ) == ["run partial: point v0-c4: engine process exited"]
    assert run_notes({"status": "complete"}, NO_POINTS, tmp_path) == []


def test_a_resumed_run_names_the_points_measured_after_a_resume(tmp_path: Path) -> None:
    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    run = RunDir.create(tmp_path, "s")
    why, when = "point v0-c2: interrupted (SIGINT)", "2026-12-02T00:00:00+00:00"
    ended = {"status": "interrupted", "status_message": why, "finished_utc": when}
    run.write_manifest({"run_id": run.path.name, **ended, "scenario_hash": scenario_hash(s)})
    reopened = reopen(run.path, s, find_max_goodput=False)[0]
    # the interrupted attempt's message is kept as history, not shown as the state of the resumed run
    m = read_manifest(reopened.path)
    assert "status_message" not in m and "finished_utc" not in m
    assert m["previous_status"] == [{"status": "interrupted", "message": why, "finished_utc": when}]
    reopened.write_points(
        [
            {"point_id": "v0-c1", "concurrency": 1, "ok": 4, "errors": 0, "attempt": 0},
            {"point_id": "v0-c2", "concurrency": 2, "ok": 4, "errors": 0, "attempt": 1},
        ]
    )
    reopened.set_status("complete")
    console = Console(record=True, width=300)
    md = report_run(reopened.path, console).read_text()
    note = "resumed 1 time(s); measured after a resume: v0-c2 (resume 1)"
    assert note in console.export_text() and note in md
    assert "interrupted" not in md


def test_resumed_runs_without_an_attempt_column_or_points_are_still_reported(tmp_path: Path) -> None:
    resumed = {"status": "complete", "resumed_utc": ["2026-12-02T00:00:00+00:00"]}
    older = pd.DataFrame([{"point_id": "v0-c1", "ok": 4}])  # a points table from before `attempt`
    assert run_notes(resumed, older, tmp_path) == ["resumed 1 time(s)"]
    assert run_notes({**resumed, "status": "interrupted"}, NO_POINTS, tmp_path) == [
        "run interrupted: no reason recorded",
        "resumed 1 time(s)",
    ]


def test_the_engine_line_of_an_external_endpoint_names_its_url() -> None:
    """report.md read `- engine: ` with nothing after it for an endpoint nobody here started."""
    from harness.report import engine_line

    assert engine_line({"command": ["llama-server", "-m", "m.gguf"]}) == "llama-server -m m.gguf"
    external = {"name": "external", "command": None, "base_url": "http://10.0.0.2:8000"}
    assert engine_line(external) == "external at http://10.0.0.2:8000"
    assert engine_line({}) == "-"


def test_the_report_header_names_each_variants_engine_the_workload_and_the_slo() -> None:
    """A run of two variants showed only the first's command, and no report said which SLO its goodput
    was judged against, nor the workload."""
    from harness.report import header_lines

    manifest = {
        "run_id": "r",
        "host": {"cpu_model": "EPYC", "cpu_logical": 2},
        "scenario": {
            "variants": [{"threads": 1}, {"threads": 2}],
            "workload": {
                "input_tokens": 128,
                "output_tokens": {"dist": "uniform", "mean": 64, "low": 32, "high": 96},
            },
            "load": {"mode": "closed", "requests": 8, "warmup_requests": 1},
            "slo": {"ttft_s": 2.0, "tpot_s": 0.2, "e2e_s": None},
        },
        "engines": [
            {"variant": 0, "command": ["srv", "--threads", "1"]},
            {"variant": 1, "command": ["srv", "--threads", "2"]},
            {"variant": 1, "attempt": 1, "command": ["srv", "--threads", "2", "--port", "9"]},
        ],
    }
    assert header_lines(manifest) == [
        "run: `r`",
        "host: EPYC (2 logical CPUs)",
        "engine v0 (threads=1): srv --threads 1",
        "engine v1 (threads=2): srv --threads 2",
        "engine v1 (threads=2, resume 1): srv --threads 2 --port 9",
        "workload: 128/64 tokens in/out (mean), completion API; closed loop, 8 requests a point (+1 warmup)",
        "goodput SLO: TTFT <= 2 s, TPOT <= 0.2 s",
    ]
    manifest["scenario"] = {
        "workload": {"dataset": "/d/sharegpt.jsonl", "api": "chat"},
        "load": {"mode": "open", "duration_s": 60.0},
        "slo": {},
    }
    manifest["engines"] = [{"name": "external", "base_url": "http://h:8000"}]
    assert header_lines(manifest)[2:] == [
        "engine: external at http://h:8000",
        "workload: dataset sharegpt.jsonl, chat API; open loop, 60 s a point",
        "goodput SLO: none set (every successful request counts)",
    ]
    manifest["engines"] = [{"name": "external", "base_url": "https://h", "api_prefix": "/v1beta/openai"}]
    assert header_lines(manifest)[2] == "engine: external at https://h/v1beta/openai"
    # the scenario's description, as Markdown shows it literally on its line
    manifest["scenario"]["description"] = "H100 <b>fp8</b>\n# not a heading | x"
    assert header_lines(manifest)[1] == "description: H100 \\<b\\>fp8\\</b\\> # not a heading \\| x"


def test_a_ctrl_c_before_the_run_can_mark_itself_interrupted_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C in the first second, before the run's own handling is in place, said "interrupted again"
    and pointed at a run directory to resume that held nothing."""
    from typer.testing import CliRunner

    from harness import runner
    from harness.cli import app

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as the terminal's Ctrl-C arrives there

    monkeypatch.setattr(runner, "run_scenario", interrupted)
    res = CliRunner().invoke(app, ["run", "scenarios/quickstart-cpu.yaml", "--results", str(tmp_path)])
    assert res.exit_code == 130
    assert "interrupted while the run was starting: nothing was measured" in res.output
    assert "again" not in res.output and "--resume" not in res.output


def test_a_ctrl_c_while_a_new_run_is_made_leaves_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C during the run's first second (its inventory, or before its signal handling) had left a
    run directory holding only a `running` manifest, or nothing: it is removed, and the CLI says nothing
    was measured."""
    from typer.testing import CliRunner

    from harness import runner, runstart
    from harness.cli import app

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as the terminal's Ctrl-C arrives there

    for module, where in ((runstart, "hardware_inventory"), (runner, "_abort_on_signals")):
        with monkeypatch.context() as m:
            m.setattr(module, where, interrupted)
            results = tmp_path / where
            res = CliRunner().invoke(app, ["run", "scenarios/quickstart-cpu.yaml", "--results", str(results)])
        assert res.exit_code == 130, (where, res.output)
        assert "interrupted while the run was starting: nothing was measured" in res.output
        assert list(results.iterdir()) == [], where


def test_discarding_an_unstarted_run_keeps_a_directory_with_anything_else_in_it(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "s")
    run.write_manifest({"status": "running"})
    (run.path / "requests.jsonl").write_text("{}\n")
    assert run.discard_unstarted() is False
    assert sorted(p.name for p in run.path.iterdir()) == ["manifest.json", "requests.jsonl"]
    bare = RunDir.create(tmp_path, "t")
    bare.write_manifest({"status": "running"})
    assert bare.discard_unstarted() is True and not bare.path.exists()


def test_a_ctrl_c_while_a_resumed_run_starts_keeps_it_and_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run holds earlier points: the early Ctrl-C marks it interrupted (not 'a second Ctrl-C')
    and the command says how to continue it."""
    from typer.testing import CliRunner

    from harness import runner
    from harness.cli import app

    run = RunDir.create(tmp_path, "quickstart-cpu")
    run.write_manifest({"status": "interrupted", "points_done": ["v0-c1"]})

    def reopened(*args: object, **kwargs: object) -> tuple[RunDir, list[dict[str, str]], int, int]:
        return run, [{"point_id": "v0-c1"}], 9, 1

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as the terminal's Ctrl-C arrives before the run's own handling

    monkeypatch.setattr(runner, "reopen", reopened)
    monkeypatch.setattr(runner, "_abort_on_signals", interrupted)
    res = CliRunner().invoke(app, ["run", "scenarios/quickstart-cpu.yaml", "--resume", str(run.path)])
    assert res.exit_code == 130
    assert "nothing new was measured" in res.output and f"--resume {run.path}" in res.output
    manifest = read_manifest(run.path)
    assert manifest["status"] == "interrupted" and "interrupted while starting" in str(manifest)


def test_the_terminal_table_of_a_run_with_variants_says_what_each_changed() -> None:
    """The table's point ids say v0, v1 only; report.md's header said the rest, the terminal nothing."""
    from harness.report import variants_key

    manifest = {"scenario": {"variants": [{"n_gpu_layers": 0}, {"n_gpu_layers": -1, "threads": 2}, {}]}}
    assert variants_key(manifest) == "variants: v0 = ngl=0; v1 = ngl=-1 threads=2; v2 = the engine as given"
    assert variants_key({"scenario": {"variants": []}}) is None and variants_key({}) is None
