"""A new run: its directory and first manifest (what was asked, on which host and hardware, with which
seeds), and whether a resumed variant's model is still the one it measured."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import harness
from harness import hostinfo
from harness.client.aio import loop_name
from harness.engines.base import redact, redact_keys, redact_scenario
from harness.load.workload import SAMPLING_SCHEME
from harness.results import RunDir, runner_info
from harness.resume import input_digests
from harness.scenario import Point, Scenario, scenario_hash


def _engine_env() -> dict[str, str]:
    """The engine-read variables of this environment for the manifest: secret-looking names' values as
    ***, and no user or password in a URL (HF_ENDPOINT=https://user:pw@mirror)."""
    from harness.engines.external import without_password

    return {
        k: without_password(v) if "://" in v else v
        for k, v in redact_keys(hostinfo.engine_environment()).items()
    }


def working_dir() -> str | None:
    """The directory the run is started in, from which the scenario's relative paths (`model.path`,
    `binary`, `dataset`, `tokenizer`) and the engine command's resolve; None where it is gone."""
    try:
        return os.getcwd()
    except OSError:  # removed under the shell that runs the harness
        return None


def hardware_inventory() -> dict[str, Any]:
    """CPU and GPU inventory for the manifest (GPU: `available: false` with the reason, without NVML)."""
    from harness.telemetry.inventory import gpu_inventory

    return {"cpu": hostinfo.cpu_inventory(), "gpu": gpu_inventory()}


def prompt_salt(s: Scenario) -> int:
    """The scenario's prompt salt, else a fresh one: a repeated run must not hit the prompt cache of an
    engine that outlived the last one (an external endpoint)."""
    return s.workload.prompt_salt if s.workload.prompt_salt is not None else secrets.randbelow(2**31)


def model_changed(manifest: dict[str, Any], variant: int, engine: Any) -> str | None:
    """Why a resumed variant must not run: its model file is not the one its earlier attempts measured
    (another sha256 at the same path), else None."""
    model = getattr(engine, "model", None)
    now = getattr(model, "sha256", None)
    before = [
        (e.get("model") or {}).get("sha256")
        for e in manifest.get("engines") or []
        if e.get("variant") == variant
    ]
    was = next((d for d in reversed(before) if d), None)
    if not now or not was or now == was:
        return None
    return (
        f"engine.model: {getattr(model, 'path', '?')} is not the file this run measured before (sha256 "
        f"{was[:12]}, now {now[:12]}): its points and new ones would not compare; start a new run"
    )


def new_run(
    s: Scenario, results_root: Path, scenario_file: str | None, points: list[Point], find_max_goodput: bool
) -> RunDir:
    run = RunDir.create(results_root, s.name)
    try:
        _first_manifest(run, s, scenario_file, points, find_max_goodput)
    except KeyboardInterrupt:  # before the run's own Ctrl-C handling: nothing was measured
        run.discard_unstarted()
        raise
    return run


def _first_manifest(
    run: RunDir, s: Scenario, scenario_file: str | None, points: list[Point], find_max_goodput: bool
) -> None:
    run.write_manifest(
        {
            "run_id": run.path.name,
            "status": "running",
            "started_utc": dt.datetime.now(dt.UTC).isoformat(),
            "harness_version": harness.__version__,
            "git_sha": hostinfo.git_sha(),
            "command": redact(sys.argv),
            "cwd": working_dir(),
            "scenario_file": scenario_file,
            "scenario_hash": scenario_hash(s),
            "scenario": redact_scenario(s.model_dump(mode="json")),
            "seeds": {
                "workload": s.workload.seed,
                "arrivals": s.load.seed,
                "prompt_salt": prompt_salt(s),
                "sampling": SAMPLING_SCHEME,
            },
            "input_sha256": input_digests(s),
            "host": {**hostinfo.host(), "engine_env": _engine_env()},
            "hardware": hardware_inventory(),
            "points_planned": [p.point_id for p in points],
            "points_done": [],
            "engines": [],
            "telemetry": {},
            "client": {"event_loop": loop_name(), "workers": s.load.workers},
            "find_max_goodput": find_max_goodput,
            "runner": runner_info(),
        }
    )
