"""`harness run RUN_DIR`: a run directory's stored scenario run again, validated, or resumed with."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.engines.base import redact_scenario
from harness.rerun import redacted_fields, stored_scenario
from harness.results import read_manifest
from harness.scenario import ScenarioError, parse_scenario, scenario_hash
from tests.conftest import run_harness

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    from harness.testing.fake_server import FakeScript, FakeServer

    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0)).start_in_thread()
    try:
        yield srv.base_url
    finally:
        srv.stop()


def _scenario(url: str) -> dict[str, Any]:
    return {
        "name": "again",
        "engine": {
            "type": "external",
            "base_url": url,
            "model": {"source": "served", "name": "fake"},
            "extra_body": {"ignore_eos": True},
        },
        "workload": {"input_tokens": 8, "output_tokens": 4, "seed": 7},
        "load": {"concurrency": [1, 2], "requests": 2, "warmup_requests": 0},
        "telemetry": {"nvml": False, "cpu": False, "engine_metrics": False},
    }


def _harness(*args: str) -> Any:
    res = run_harness(*args, "--no-progress", timeout=120)
    assert res.returncode == 0, res.stderr
    return res


def test_a_run_directory_is_run_again_with_the_scenario_it_stored(fake_url: str, tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(_scenario(fake_url)))
    results = tmp_path / "results"
    _harness("run", str(scen), "--results", str(results))
    (first,) = results.iterdir()
    scen.unlink()  # the run directory is all a receiver has

    res = _harness("run", str(first), "--results", str(results))
    (second,) = [r for r in results.iterdir() if r != first]
    was, now = read_manifest(first), read_manifest(second)
    assert now["status"] == "complete"
    assert now["scenario"] == was["scenario"]
    assert now["scenario_hash"] == was["scenario_hash"]
    assert now["scenario_file"] == str(first)
    assert now["seeds"]["workload"] == 7 and now["points_planned"] == ["v0-c1", "v0-c2"]
    assert now["points_done"] == ["v0-c1", "v0-c2"]
    # the defaults the manifest wrote out are no fields set for nothing
    assert "only used with mode" not in res.stderr
    # and its manifest.json names the run as well; validate reads it the same way
    checked = run_harness("validate", str(first), str(first / "manifest.json"), timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        f"{first}: ok (2 points, 1 engine)",
        f"{first / 'manifest.json'}: ok (2 points, 1 engine)",
    ]


def test_an_unfinished_run_resumes_from_its_own_directory(fake_url: str, tmp_path: Path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(_scenario(fake_url)))
    results = tmp_path / "results"
    _harness("run", str(scen), "--results", str(results))
    (run,) = results.iterdir()
    # as a run killed after its first point leaves it
    m = read_manifest(run)
    m.update(status="running", points_done=["v0-c1"], runner={})
    (run / "manifest.json").write_text(json.dumps(m))
    lines = (run / "points.csv").read_text().splitlines()
    (run / "points.csv").write_text("\n".join(lines[:2]) + "\n")
    (run / "points.parquet").unlink()
    scen.unlink()

    _harness("run", str(run), "--resume", str(run))
    after = read_manifest(run)
    assert after["status"] == "complete"
    assert after["points_done"] == ["v0-c1", "v0-c2"]
    assert len(after["resumed_utc"]) == 1


def test_secrets_stored_as_stars_are_refused_by_name(tmp_path: Path) -> None:
    s = {
        "name": "secret",
        "engine": {
            "type": "llamacpp",
            "launcher": "llama-server",
            "model": {"source": "synthetic"},
            "extra_args": ["--api-key", "sk-1", "--no-mmap", "--hf-token=x"],
        },
        "variants": [{"extra_args": ["--api-key", "sk-2"]}],
    }
    dump = redact_scenario(parse_scenario(s).model_dump(mode="json"))
    assert redacted_fields(dump) == [
        "engine.extra_args[1]",
        "engine.extra_args[3]",
        "variants[0].extra_args[1]",
    ]
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_id": "run", "scenario": dump}))
    with pytest.raises(ScenarioError) as e:
        stored_scenario(run)
    assert e.value.messages[0] == (
        f"{run / 'manifest.json'} (its scenario): engine.extra_args[1]: stored as *** (a secret is never "
        "written to a manifest): write the scenario with its value into a file and run that"
    )
    assert len(e.value.messages) == 3


def test_an_env_or_request_field_named_like_a_secret_is_refused_and_others_are_not() -> None:
    dump = {
        "engine": {"env": {"HF_TOKEN": "***", "OMP_NUM_THREADS": "4"}, "extra_body": {"api_key": "***"}},
        "description": "***",  # not a field the manifest redacts: a value as written
    }
    assert redacted_fields(dump) == ["engine.env.HF_TOKEN", "engine.extra_body.api_key"]


def test_a_manifest_without_a_scenario_and_a_folder_without_a_manifest_are_said(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "x", "status": "complete"}))
    with pytest.raises(ScenarioError) as e:
        stored_scenario(tmp_path)
    assert e.value.messages == [
        f"{tmp_path / 'manifest.json'}: scenario: the manifest holds no scenario to run again"
    ]
    res = run_harness("run", str(tmp_path), timeout=120)
    assert res.returncode == 2 and "holds no scenario to run again" in res.stderr


def test_the_evidence_run_is_read_back_as_the_scenario_it_ran() -> None:
    """The committed quickstart run (made by an older harness): its stored values are the quickstart's."""
    from harness.scenario import load_scenario

    s, searched = stored_scenario(ROOT / "results" / "evidence" / "20261125T114708Z-quickstart-cpu")
    assert not searched
    assert scenario_hash(s) == scenario_hash(load_scenario(ROOT / "scenarios" / "quickstart-cpu.yaml"))


def _killed_after_first_point(run: Path) -> None:
    """`run` as a run killed after its first point leaves it: running, its process (on this host) gone."""
    import socket

    m = read_manifest(run)
    runner = {"hostname": socket.gethostname(), "pid": 2**22 + 1}  # above any pid_max: no such process
    m.update(status="running", points_done=["v0-c1"], runner=runner)
    (run / "manifest.json").write_text(json.dumps(m))
    lines = (run / "points.csv").read_text().splitlines()
    (run / "points.csv").write_text("\n".join(lines[:2]) + "\n")
    (run / "points.parquet").unlink()


def _continue_hint(run: Path) -> list[str]:
    """The command a report of `run` says continues it, as arguments."""
    import pandas as pd

    from harness.report import run_notes

    [note] = run_notes(read_manifest(run), pd.DataFrame(), run)
    command = note.split("continue it with: ", 1)[1]
    assert command.startswith("harness run ")
    return command.removeprefix("harness ").split(" ")


def test_the_report_of_a_killed_run_names_a_command_that_continues_it(fake_url: str, tmp_path: Path) -> None:
    """The hint named the scenario file (`harness run s.yaml --resume RUN`), which a receiver of the run
    directory does not have: the run directory's own scenario continues it, where it holds no secret."""
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(_scenario(fake_url)))
    results = tmp_path / "results"
    _harness("run", str(scen), "--results", str(results))
    (run,) = results.iterdir()
    _killed_after_first_point(run)
    scen.unlink()

    hint = _continue_hint(run)
    assert hint == ["run", str(run), "--resume", str(run)]
    _harness(*hint)
    assert read_manifest(run)["points_done"] == ["v0-c1", "v0-c2"]


def test_a_killed_run_whose_scenario_holds_a_secret_is_continued_from_its_file(
    fake_url: str, tmp_path: Path
) -> None:
    s = _scenario(fake_url)
    s["engine"]["extra_body"]["api_key"] = "sk-1"  # stored as *** in the manifest
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(s))
    results = tmp_path / "results"
    _harness("run", str(scen), "--results", str(results))
    (run,) = results.iterdir()
    _killed_after_first_point(run)

    hint = _continue_hint(run)
    assert hint == ["run", str(scen), "--resume", str(run)]
    _harness(*hint)
    assert read_manifest(run)["points_done"] == ["v0-c1", "v0-c2"]
