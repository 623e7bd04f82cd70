"""`harness ls`: the runs under some folders, one line each: how each stands, what it ran on and what it
measured (its best output tok/s), so a folder of runs can be told apart without opening each."""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Any

from harness.results import RunNotFound, aborted_rows, live_runner, read_manifest, read_points
from harness.runinfo import device_of, engine_config, engine_entry, model_key

LS_HEADS = ("run", "status", "started (UTC)", "model", "hardware", "engine", "points", "best out tok/s")


def run_status(manifest: dict[str, Any]) -> str:
    """The manifest's status, told apart where it says `running`: still going here, its process gone
    from this host (killed, or its machine went down), or written on another host (cannot tell)."""
    status = str(manifest.get("status") or "?")
    if status != "running":
        return status
    host = (manifest.get("runner") or {}).get("hostname")
    if live_runner(manifest) is not None:
        return "running"
    if host == socket.gethostname():
        return "running, its process gone (killed?)"
    return f"running on {host}?" if host else "running?"


def run_line(run: Path) -> dict[str, str]:
    """One run's cells (LS_HEADS): `-` for what it does not say; an unreadable manifest is said so."""
    line = dict.fromkeys(LS_HEADS, "-")
    line["run"] = run.name
    try:
        manifest = read_manifest(run)
    except RunNotFound as e:
        line["status"] = f"unreadable: {str(e).split(': ', 1)[-1]}"
        return line
    scen = manifest.get("scenario") or {}
    variants = max(1, len(scen.get("variants") or []))
    hardware, engines, models = [], [], []
    for v in range(variants):
        cfg = engine_config(manifest, v)
        entry = engine_entry(manifest, v)
        models.append(model_key(cfg.get("model") or {}, (entry.get("model") or {}).get("name")))
        device, n = device_of(manifest, cfg, entry)
        hardware.append(device if n == 1 else f"{n}x {device}")
        launcher = cfg.get("launcher")
        engines.append(str(cfg.get("type") or "?") + (f"/{launcher}" if launcher else ""))
    planned, done = manifest.get("points_planned"), manifest.get("points_done")
    line.update(
        status=run_status(manifest),
        model=", ".join(dict.fromkeys(models)),
        hardware=", ".join(dict.fromkeys(hardware)),
        engine=", ".join(dict.fromkeys(engines)),
        points=f"{len(done or [])}/{len(planned)}" if isinstance(planned, list) else "-",
    )
    line["started (UTC)"] = str(manifest.get("started_utc") or "-")[:16].replace("T", " ")
    best = best_output_tok_s(run, manifest)
    line["best out tok/s"] = "-" if best is None else f"{best:.1f}"
    return line


def best_output_tok_s(run: Path, manifest: dict[str, Any]) -> float | None:
    """The highest output tok/s of the run's finished points (points cut short left out); None if none."""
    try:
        df = read_points(run, manifest)
    except RunNotFound:
        return None
    if df.empty or "output_tok_s" not in df.columns:
        return None
    best = df.loc[~aborted_rows(df), "output_tok_s"].max()
    return None if best is None or not math.isfinite(best) else float(best)
