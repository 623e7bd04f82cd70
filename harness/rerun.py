"""`harness run RUN_DIR`: the scenario a run directory's manifest stored, to be run again (or validated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.engines.base import REDACTED, REDACTED_IN
from harness.scenario import Scenario, ScenarioError, field_path, parse_scenario
from harness.scenario.models import DATASET_LENGTHS


def run_manifest(path: Path) -> Path | None:
    """The manifest of the run directory `path` names (the directory, or its manifest.json itself); None
    when `path` is a scenario file. A directory is no scenario file: its manifest.json is named, there or
    not (reading it then says it is not a run directory)."""
    if path.is_dir():
        return path / "manifest.json"
    if path.name == "manifest.json" and path.is_file():
        return path
    return None


def redacted_fields(dump: Any, loc: tuple[Any, ...] = (), inside: bool = False) -> list[str]:
    """Paths (`engine.env.HF_TOKEN`, `variants[0].extra_args[3]`) of the values a stored scenario holds
    only as *** (`--api-key=***` too): the manifest never had the secret, so the run cannot be made again
    from it."""
    if isinstance(dump, str):
        hidden = dump == REDACTED or dump.endswith("=" + REDACTED)
        return [field_path(loc)] if inside and hidden else []
    items = dump.items() if isinstance(dump, dict) else enumerate(dump) if isinstance(dump, list) else []
    out: list[str] = []
    for k, v in items:
        out += redacted_fields(v, (*loc, k), inside or k in REDACTED_IN)
    return out


def stored_scenario(path: Path) -> tuple[Scenario, bool]:
    """The scenario of the run directory `path` as its manifest stored it (every value written out, so a
    harness with other defaults still runs the run's values), and whether the run searched for the
    highest rate meeting the SLOs (`find_max_goodput`). ScenarioError where the manifest cannot be read,
    holds no scenario, holds one this harness does not accept, or holds secrets only as ***."""
    from harness.results import RunNotFound, read_manifest

    manifest = run_manifest(path) or path / "manifest.json"
    try:
        m = read_manifest(manifest.parent)
    except RunNotFound as e:
        raise ScenarioError([str(e)]) from None
    where = f"{manifest} (its scenario)"
    stored = m.get("scenario")
    if not isinstance(stored, dict):
        raise ScenarioError([f"{manifest}: scenario: the manifest holds no scenario to run again"])
    if hidden := redacted_fields(stored):
        raise ScenarioError(
            [
                f"{where}: {f}: stored as {REDACTED} (a secret is never written to a manifest): write the "
                "scenario with its value into a file and run that"
                for f in hidden
            ]
        )
    return parse_scenario(_as_a_file_gives(stored), where), bool(m.get("find_max_goodput"))


def _as_a_file_gives(stored: dict[str, Any]) -> dict[str, Any]:
    """The scenario a manifest stored, without the values it wrote out that a scenario file may not give:
    the workload's input_tokens and output_tokens beside a dataset (their defaults, which ask for nothing:
    the dataset's rows set every request's lengths). Other values are kept as stored."""
    workload = stored.get("workload")
    if not isinstance(workload, dict) or not workload.get("dataset"):
        return stored
    rows_set = {k: v for k, v in workload.items() if k not in DATASET_LENGTHS}
    return {**stored, "workload": rows_set}
