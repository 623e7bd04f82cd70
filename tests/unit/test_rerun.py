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
    scen, first = _run_once(tmp_path, _scenario(fake_url))
    results = first.parent
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
    scen, run = _killed_run(tmp_path, _scenario(fake_url))
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
    """A folder is no scenario file: without a manifest.json it was read as one ("cannot read: Is a
    directory")."""
    run, folder = tmp_path / "run", tmp_path / "folder"
    run.mkdir()
    folder.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_id": "x", "status": "complete"}))
    with pytest.raises(ScenarioError) as e:
        stored_scenario(run)
    assert e.value.messages == [
        f"{run / 'manifest.json'}: scenario: the manifest holds no scenario to run again"
    ]
    res = run_harness("run", str(run), timeout=120)
    assert res.returncode == 2 and "holds no scenario to run again" in res.stderr

    with pytest.raises(ScenarioError) as e:
        stored_scenario(folder)
    assert e.value.messages == [f"{folder}: not a run directory (no manifest.json)"]
    for command in ("run", "validate"):
        res = run_harness(command, str(folder), timeout=120)
        assert res.returncode == 2, res.stderr
        assert f"{folder}: not a run directory (no manifest.json)" in " ".join(res.stderr.split()), res.stderr
    assert list(folder.iterdir()) == []


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


def _killed_run(tmp_path: Path, scenario: dict[str, Any]) -> tuple[Path, Path]:
    """The scenario file and the run directory of `scenario` run, then left as if killed after its first
    point."""
    scen, run = _run_once(tmp_path, scenario)
    _killed_after_first_point(run)
    return scen, run


def _run_once(tmp_path: Path, scenario: dict[str, Any]) -> tuple[Path, Path]:
    """`scenario` written to a file and run once into `tmp_path/results`: the file and its run directory."""
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(scenario))
    results = tmp_path / "results"
    _harness("run", str(scen), "--results", str(results))
    (run,) = results.iterdir()
    return scen, run


@pytest.mark.parametrize("secret", [False, True])
def test_the_report_of_a_killed_run_names_a_command_that_continues_it(
    fake_url: str, tmp_path: Path, secret: bool
) -> None:
    """The hint named the scenario file (`harness run s.yaml --resume RUN`), which a receiver of the run
    directory does not have: the run directory's own scenario continues it, where it holds no secret
    (stored as ***); where it holds one, the scenario file does."""
    s = _scenario(fake_url)
    if secret:
        s["engine"]["extra_body"]["api_key"] = "sk-1"
    scen, run = _killed_run(tmp_path, s)
    if not secret:
        scen.unlink()

    hint = _continue_hint(run)
    assert hint == ["run", str(scen if secret else run), "--resume", str(run)]
    _harness(*hint)
    assert read_manifest(run)["points_done"] == ["v0-c1", "v0-c2"]


def test_a_run_with_a_dataset_is_validated_run_again_and_resumed_from_its_directory(
    fake_url: str, tmp_path: Path
) -> None:
    """The manifest writes every default out, the workload's `input_tokens: 128` and `output_tokens: 64`
    too, which a scenario file may not give beside a dataset: validate, run and --resume refused every
    run directory of a dataset ("input_tokens and output_tokens given with a dataset")."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"input_tokens": 8, "output_tokens": 4}\n' * 2)
    s = _scenario(fake_url)
    s["workload"] = {"dataset": str(rows), "seed": 7}
    scen, first = _run_once(tmp_path, s)
    results = first.parent
    scen.unlink()
    stored = read_manifest(first)["scenario"]["workload"]
    assert (stored["dataset"], stored["input_tokens"], stored["output_tokens"]) == (str(rows), 128, 64)

    checked = run_harness("validate", str(first), timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [f"{first}: ok (2 points, 1 engine)"]

    _harness("run", str(first), "--results", str(results))
    (second,) = [r for r in results.iterdir() if r != first]
    was, now = read_manifest(first), read_manifest(second)
    assert now["status"] == "complete" and now["points_done"] == ["v0-c1", "v0-c2"]
    assert (now["scenario"], now["scenario_hash"]) == (was["scenario"], was["scenario_hash"])
    assert now["input_sha256"] == was["input_sha256"] and "workload.dataset" in now["input_sha256"]

    _killed_after_first_point(second)
    _harness("run", str(second), "--resume", str(second))
    after = read_manifest(second)
    assert after["status"] == "complete" and after["points_done"] == ["v0-c1", "v0-c2"]
    assert len(after["resumed_utc"]) == 1


def _variants(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A scenario file's contents, and as a dataset's, an open loop's and a closed loop's."""
    workload = {
        k: v
        for k, v in (raw.get("workload") or {}).items()
        if k not in ("input_tokens", "output_tokens", "shared_prefix_tokens")
    }
    load = raw.get("load") or {}
    open_loop = {k: v for k, v in load.items() if k != "concurrency"} | {
        "mode": "open",
        "rates_rps": [0.5, 2.0],
    }
    closed = {
        k: v for k, v in load.items() if k not in ("rates_rps", "arrival", "burstiness", "max_concurrency")
    }
    closed = closed | {"mode": "closed", "concurrency": closed.get("concurrency") or [1, 4]}
    dataset = {**raw, "workload": {**workload, "dataset": "rows.jsonl"}}
    return {
        "as written": raw,
        "dataset": dataset,
        "open": {**raw, "load": open_loop},
        "closed": {**raw, "load": closed},
        "dataset, open": {**dataset, "load": open_loop},
    }


SCENARIO_FILES = sorted(p.relative_to(ROOT / "scenarios") for p in (ROOT / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("name", SCENARIO_FILES, ids=str)
def test_every_scenario_as_a_manifest_stores_it_reads_back_as_itself(name: Path, tmp_path: Path) -> None:
    """Each scenario file (and as a dataset's, an open and a closed loop), stored as a run's manifest
    stores it (every default written out, secrets redacted), reads back from the run directory as the
    same scenario: the same values and hash, and the same warnings."""
    from harness.scenario import combination_warnings

    raw = yaml.safe_load((ROOT / "scenarios" / name).read_text())
    refused = []
    for label, data in _variants(raw).items():
        try:
            s = parse_scenario(data, "f")
        except ScenarioError as e:
            refused.append((label, e.messages))
            continue
        run = tmp_path / label.replace(", ", "-").replace(" ", "-")
        run.mkdir()
        dump = redact_scenario(s.model_dump(mode="json"))
        (run / "manifest.json").write_text(json.dumps({"run_id": run.name, "scenario": dump}))
        back, searched = stored_scenario(run)
        assert not searched
        assert back.model_dump(mode="json") == s.model_dump(mode="json"), label
        assert scenario_hash(back) == scenario_hash(s), label
        assert combination_warnings(back, "f") == combination_warnings(s, "f"), label
    # llama-bench runs the workload's lengths, which a dataset leaves to its rows
    bench = "llama_bench" in json.dumps(raw)
    assert [label for label, _ in refused] == (["dataset", "dataset, open"] if bench else [])
    assert all("no llama_bench with a dataset" in m[0] for _, m in refused)


def test_lengths_beside_a_dataset_are_read_back_from_a_manifest_only(tmp_path: Path) -> None:
    """The stored dump gives input_tokens and output_tokens beside the dataset; read back from the run
    directory they are the defaults written out, but a scenario file that gives them is still refused."""
    s = {
        "name": "d",
        "engine": {"type": "external", "base_url": "http://h:8000"},
        "workload": {"dataset": "r.jsonl"},
    }
    dump = parse_scenario(s).model_dump(mode="json")
    assert (dump["workload"]["input_tokens"], dump["workload"]["output_tokens"]) == (128, 64)
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "d", "scenario": dump}))
    back, _ = stored_scenario(tmp_path)
    assert back.workload.dataset == "r.jsonl"
    assert (back.workload.input_tokens, back.workload.output_tokens) == (128, 64)
    assert back.workload.model_fields_set == set(dump["workload"]) - {"input_tokens", "output_tokens"}
    with pytest.raises(ScenarioError) as e:
        parse_scenario(dump, "f.yaml")
    assert e.value.messages == [
        "f.yaml: workload: input_tokens and output_tokens given with a dataset, whose rows set every "
        "request's lengths: remove them, or the dataset"
    ]
