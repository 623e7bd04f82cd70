"""`harness run --resume`: reopening an unfinished run directory made with the same scenario."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import harness
from harness import hostinfo
from harness.engines.base import redact_scenario
from harness.results import (
    RunDir,
    RunNotFound,
    iter_records,
    live_runner,
    read_manifest,
    read_points,
    runner_info,
)
from harness.scenario import Scenario, scenario_hash


class ResumeError(Exception):
    """The run directory cannot be resumed with this scenario; message is for the user."""


def _same_scenario(manifest: dict[str, Any], s: Scenario) -> bool:
    """Whether the run was made with this scenario: by its hash, or, for a run whose hash was made another
    way (before defaults were left out of it), by the scenario stored in its manifest, fields added to the
    harness since left out of the comparison."""
    if manifest.get("scenario_hash") == scenario_hash(s):
        return True
    stored = manifest.get("scenario")
    now = redact_scenario(s.model_dump(mode="json"))
    return isinstance(stored, dict) and _known_part(now, stored) == stored


def _known_part(now: Any, stored: Any) -> Any:
    """`now` with the mapping keys `stored` does not have left out, at every depth."""
    if isinstance(now, dict) and isinstance(stored, dict):
        return {k: _known_part(v, stored[k]) for k, v in now.items() if k in stored}
    if isinstance(now, list) and isinstance(stored, list) and len(now) == len(stored):
        return [_known_part(a, b) for a, b in zip(now, stored, strict=True)]
    return now


def reopen(path: Path, s: Scenario, find_max_goodput: bool) -> tuple[RunDir, list[dict[str, Any]], int, int]:
    """Reopen a run directory for `--resume`: (run, rows of finished points, next request id, attempt)."""
    try:
        manifest = read_manifest(path)
    except RunNotFound as e:
        raise ResumeError(str(e)) from None
    if find_max_goodput or manifest.get("find_max_goodput"):
        # the search's probes are not planned points, and its state is not kept: a resumed search
        # would start over and overwrite the probes already measured
        raise ResumeError(
            f"{path}: a --find-max-goodput rate search cannot be resumed; start a new run "
            "(its finished probes stay in this directory)"
        )
    if not _same_scenario(manifest, s):
        made_by, this = (
            (manifest.get("harness_version"), manifest.get("git_sha")),
            (harness.__version__, hostinfo.git_sha()),
        )
        other = (
            f"; it was made by harness {made_by[0]} ({made_by[1] or 'commit unknown'}), this is "
            f"{this[0]} ({this[1] or 'commit unknown'}), which may read the same file differently"
            if made_by != this
            else ""
        )
        raise ResumeError(
            f"{path}: was run with a different scenario (hash {str(manifest.get('scenario_hash'))[:12]}, "
            f"this one {scenario_hash(s)[:12]}); resume needs the same scenario file contents{other}"
        )
    if manifest.get("status") == "complete":
        raise ResumeError(f"{path}: run is already complete; nothing to resume")
    if (pid := live_runner(manifest)) is not None:
        raise ResumeError(
            f"{path}: is still being run by process {pid} on this host; stop it (Ctrl-C) or let it finish"
        )
    done = set(manifest.get("points_done") or [])
    old = read_points(path)
    rows = [{str(k): v for k, v in r.items()} for r in old.to_dict("records") if r.get("point_id") in done]
    next_id = 1 + max((r.request_id for r in iter_records(path)), default=-1)
    run = RunDir(Path(path), manifest)
    attempt = len(manifest.get("resumed_utc") or []) + 1
    # how the attempt before ended goes to `previous_status`; its message must not outlive the resume
    ended = {"status": manifest.get("status"), "message": manifest.pop("status_message", None)}
    ended["finished_utc"] = manifest.pop("finished_utc", None)
    run.update_manifest(
        previous_status=[*(manifest.get("previous_status") or []), ended],
        status="running",
        runner=runner_info(),
        resumed_utc=[*(manifest.get("resumed_utc") or []), dt.datetime.now(dt.UTC).isoformat()],
    )
    return run, rows, next_id, attempt
