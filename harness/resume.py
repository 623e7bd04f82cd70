"""`harness run --resume`: reopening an unfinished run directory made with the same scenario."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import harness
from harness import hostinfo
from harness.engines.base import redact_scenario
from harness.fileio import user_path
from harness.results import RunDir, RunNotFound, live_runner, max_request_id, read_manifest, runner_info
from harness.runpoints import aborted_rows, read_points
from harness.scenario import Scenario, scenario_hash

if TYPE_CHECKING:
    import pandas as pd


class ResumeError(Exception):
    """The run directory cannot be resumed with this scenario; message is for the user."""


def scenario_differences(stored: Any, now: Any, where: str = "", set_now: Any = None) -> list[str]:
    """Where the scenario stored in a run's manifest and this one, both as dumped for the manifest (all
    values, defaults written out), differ: `path: stored -> now` for each value. `set_now`: this
    scenario's values that differ from the defaults (dumped with exclude_defaults). A key only `now` has
    is a field the harness added since the run was made, not compared, unless `set_now` has it too: then
    it was set (a key added to `extra_body`, `env` or a variant's overrides)."""
    if isinstance(stored, dict) and isinstance(now, dict):
        out: list[str] = []
        sub = set_now if isinstance(set_now, dict) else {}
        for k, v in stored.items():
            at = f"{where}.{k}" if where else str(k)
            out += (
                scenario_differences(v, now[k], at, sub.get(k))
                if k in now
                else [f"{at}: {_short(v)} -> (none)"]
            )
        for k in now.keys() - stored.keys():
            if k in sub:
                at = f"{where}.{k}" if where else str(k)
                out.append(f"{at}: (none) -> {_short(now[k])}")
        return out
    if isinstance(stored, list) and isinstance(now, list) and len(stored) == len(now):
        sets = set_now if isinstance(set_now, list) and len(set_now) == len(now) else [None] * len(now)
        return [
            d
            for i, (a, b, c) in enumerate(zip(stored, now, sets, strict=True))
            for d in scenario_differences(a, b, f"{where}[{i}]", c)
        ]
    return [] if stored == now else [f"{where}: {_short(stored)} -> {_short(now)}"]


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_same_scenario(path: Path, manifest: dict[str, Any], s: Scenario) -> None:
    """Raise ResumeError unless the run was made with this scenario, value for value.

    The hash covers the values that differ from the defaults, so it is the same for the same file, but
    a harness whose defaults changed since the run was made would measure the rest of the points
    another way: the scenario stored in the manifest (every value) is compared too. A run whose hash
    was made another way (before defaults were left out of it) resumes when the stored values agree."""
    same_hash = manifest.get("scenario_hash") == scenario_hash(s)
    stored = manifest.get("scenario")
    set_now = redact_scenario(s.model_dump(mode="json", exclude_defaults=True))
    diffs = (
        scenario_differences(stored, redact_scenario(s.model_dump(mode="json")), set_now=set_now)
        if isinstance(stored, dict)
        else None
    )
    if diffs == [] or (same_hash and diffs is None):
        return
    shown = "; ".join((diffs or [])[:4]) + ("; ..." if len(diffs or []) > 4 else "")
    made_by, this = (
        (manifest.get("harness_version"), manifest.get("git_sha")),
        (harness.__version__, hostinfo.git_sha()),
    )
    if same_hash:
        # the same file read by a harness with other defaults
        raise ResumeError(
            f"{path}: the same scenario file, but this harness ({this[0]}, {this[1] or 'commit unknown'}) "
            f"has other defaults than the one that made the run ({made_by[0]}, "
            f"{made_by[1] or 'commit unknown'}): {shown}; write the run's values into the scenario file "
            "to resume with them, or start a new run"
        )
    other = (
        f"; it was made by harness {made_by[0]} ({made_by[1] or 'commit unknown'}), this is "
        f"{this[0]} ({this[1] or 'commit unknown'}), which may read the same file differently"
        if made_by != this
        else ""
    )
    raise ResumeError(
        f"{path}: was run with a different scenario (hash {str(manifest.get('scenario_hash'))[:12]}, "
        f"this one {scenario_hash(s)[:12]}){': ' + shown if shown else ''}; resume needs the same "
        f"scenario file contents{other}"
    )


def input_digests(s: Scenario) -> dict[str, str]:
    """sha256 of the workload's input files (dataset, tokenizer.json) by field, for the manifest: a run
    resumed after one of them changed would measure its remaining points on other prompts."""
    from harness.models import sha256_file

    out = {}
    for field, path in (
        ("workload.dataset", s.workload.dataset),
        ("workload.tokenizer", s.workload.tokenizer),
    ):
        if path and user_path(path).is_file():
            out[field] = sha256_file(user_path(path))
    return out


def machine(hardware: Any) -> str:
    """What a run's points depend on in a manifest's `hardware`: the GPUs by name and count, and the CPU
    model (`8x NVIDIA H100 80GB HBM3, AMD EPYC 9654 96-Core Processor`; serials and UUIDs left out)."""
    hw: dict[str, Any] = hardware if isinstance(hardware, dict) else {}
    gpu: dict[str, Any] = hw["gpu"] if isinstance(hw.get("gpu"), dict) else {}
    names = [str(g.get("name") or "?") for g in gpu.get("gpus") or [] if isinstance(g, dict)]
    gpus = ", ".join(f"{names.count(n)}x {n}" for n in sorted(set(names))) or "no GPU"
    cpu = hw["cpu"].get("model") if isinstance(hw.get("cpu"), dict) else None
    return f"{gpus}, {cpu or 'CPU unknown'}"


def finished_rows(points: pd.DataFrame) -> set[str]:
    """Points whose row in the table says they finished (not cut short): the table is written before the
    manifest's `points_done`, so a run killed between the two has such a row the manifest does not name
    (measuring it again would put a second set of its requests into requests.jsonl)."""
    if "aborted" not in points.columns or "point_id" not in points.columns:
        return set()  # a table from before the column: the manifest alone says
    return {str(p) for p in points.loc[~aborted_rows(points), "point_id"]}


def reopen(
    path: Path, s: Scenario, find_max_goodput: bool, hardware: dict[str, Any] | None = None
) -> tuple[RunDir, list[dict[str, Any]], int, int]:
    """Reopen a run directory for `--resume`: (run, rows of finished points, next request id, attempt).

    `hardware`: this machine's inventory, as the manifest records it; a run made on other GPUs or
    another CPU is not resumed here (its points and the new ones would not compare)."""
    try:
        read_manifest(path)  # readable: a run directory, before its lock is taken
    except RunNotFound as e:
        raise ResumeError(str(e)) from None
    run = RunDir(Path(path))
    if not run.lock():
        raise ResumeError(
            f"{path}: is being run by another process on this host (its directory is locked); stop it "
            "(Ctrl-C) or let it finish"
        )
    try:
        try:
            manifest = read_manifest(path)  # as left by whoever held the lock last
        except RunNotFound as e:
            raise ResumeError(str(e)) from None
        return _reopen_locked(run, manifest, s, find_max_goodput, hardware)
    except BaseException:
        run.unlock()
        raise


def _reopen_locked(
    run: RunDir,
    manifest: dict[str, Any],
    s: Scenario,
    find_max_goodput: bool,
    hardware: dict[str, Any] | None,
) -> tuple[RunDir, list[dict[str, Any]], int, int]:
    path = run.path
    if find_max_goodput or manifest.get("find_max_goodput"):
        # the search's probes are not planned points, and its state is not kept: a resumed search
        # would start over and overwrite the probes already measured
        raise ResumeError(
            f"{path}: a --find-max-goodput rate search cannot be resumed; start a new run "
            "(its finished probes stay in this directory)"
        )
    _check_same_scenario(path, manifest, s)
    from harness.load.workload import SAMPLING_SCHEME, sampling_needed

    scheme = (manifest.get("seeds") or {}).get("sampling") or 1
    if scheme < sampling_needed(s.workload, s.load, len(s.variants or [])):
        raise ResumeError(
            f"{path}: was made by a harness that drew request lengths, dataset rows or arrivals another way "
            f"(sampling scheme {scheme}, this one {SAMPLING_SCHEME}): its remaining points would not "
            "measure the same workload; start a new run"
        )
    if isinstance(inputs := manifest.get("input_sha256"), dict):
        digests = input_digests(s)
        changed = [f for f, digest in inputs.items() if digests.get(f) != digest]
        if changed:
            raise ResumeError(
                f"{path}: {', '.join(changed)} changed since the run was made (its sha256 differs): the "
                "remaining points would run on other prompts; start a new run"
            )
    if hardware is not None and "hardware" in manifest:
        was, now = machine(manifest["hardware"]), machine(hardware)
        if was != now:
            raise ResumeError(
                f"{path}: was made on another machine ({was}) than this one ({now}); its points and new "
                "ones would not compare: start a new run here"
            )
    if manifest.get("status") == "complete":
        raise ResumeError(f"{path}: run is already complete; nothing to resume")
    if (pid := live_runner(manifest)) is not None:
        raise ResumeError(
            f"{path}: is still being run by process {pid} on this host; stop it (Ctrl-C) or let it finish"
        )
    old = read_points(path, manifest)
    done = set(manifest.get("points_done") or []) | finished_rows(old)
    rows = [{str(k): v for k, v in r.items()} for r in old.to_dict("records") if r.get("point_id") in done]
    if lost := sorted(done - {str(r.get("point_id")) for r in rows}):
        # measuring them again would put a second set of their requests into requests.jsonl
        raise ResumeError(
            f"{path}: the points table lacks point(s) the manifest says are done ({', '.join(lost)}): "
            f"{old.attrs.get('read_note') or 'points.parquet and points.csv are missing'}; start a new run"
        )
    next_id = 1 + max_request_id(path)
    run.manifest = manifest
    attempt = len(manifest.get("resumed_utc") or []) + 1
    run.drop_html_report()  # made of the unfinished run
    # how the attempt before ended goes to `previous_status`; its message must not outlive the resume
    ended = {"status": manifest.get("status"), "message": manifest.pop("status_message", None)}
    ended["finished_utc"] = manifest.pop("finished_utc", None)
    run.update_manifest(
        previous_status=[*(manifest.get("previous_status") or []), ended],
        points_done=[r["point_id"] for r in rows],  # with any finished row the manifest had missed
        status="running",
        runner=runner_info(),
        resumed_utc=[*(manifest.get("resumed_utc") or []), dt.datetime.now(dt.UTC).isoformat()],
    )
    return run, rows, next_id, attempt
