"""`harness ls`: the runs under some folders, one line each: how each stands, what it ran on and what it
measured (its best output tok/s), so a folder of runs can be told apart without opening each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.results import RunNotFound, read_manifest, runner_state
from harness.rundevice import device_of
from harness.runinfo import engine_config, engine_entry, model_key
from harness.runpoints import aborted_rows, read_points, reading

LS_HEADS = ("run", "status", "started (UTC)", "model", "hardware", "engine", "points", "best out tok/s")


def run_status(manifest: dict[str, Any]) -> str:
    """The manifest's status, told apart where it says `running`: still going here, its process gone
    from this host (killed, or its machine went down), or written on another host (cannot tell)."""
    status = str(manifest.get("status") or "?")
    if status != "running":
        return status
    return {
        "live": "running",
        "gone": "running, its process gone (killed?)",
        "elsewhere": f"running on {(manifest.get('runner') or {}).get('hostname')}?",
        "unrecorded": "running?",
    }[runner_state(manifest)]


def run_line(run: Path, name: str | None = None) -> dict[str, str]:
    """One run's cells (LS_HEADS), `name` its `run` cell (default: the folder's name): `-` for what it
    does not say; a manifest that cannot be read, or holds values of kinds this harness does not write,
    is said to be unreadable."""
    line = dict.fromkeys(LS_HEADS, "-")
    line["run"] = name or run.name
    try:
        with reading(run):
            line.update(_cells(run, read_manifest(run)))
    except RunNotFound as e:
        line["status"] = unreadable_cell(str(e), run)
    return line


def unreadable_cell(message: str, run: Path) -> str:
    """A reader's error, short enough for a cell: what was wrong, without the run's path (the row names
    it); `harness report RUN` gives the whole message."""
    why = message.removeprefix(f"{run}/manifest.json: ").removeprefix(f"{run}: ")
    if hand := re.search(r"does not write \((.*)\): was it edited by hand\?$", why):
        why = f"edited by hand? {hand[1]}"
    return "unreadable: " + why.removeprefix("unreadable manifest: ")[:90]


def _cells(run: Path, manifest: dict[str, Any]) -> dict[str, str]:
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
    if (
        not manifest.get("hardware")
        and not manifest.get("host")
        and not (scen.get("hardware") or {}).get("gpu")
    ):
        hardware = ["-"]  # nothing says what it ran on (the host's CPU is the guess of last resort)
    planned, done = manifest.get("points_planned"), manifest.get("points_done")
    best = best_point(run, manifest)
    return {
        "status": run_status(manifest),
        "started (UTC)": str(manifest.get("started_utc") or "-")[:16].replace("T", " "),
        "model": ", ".join(dict.fromkeys(models)),
        "hardware": ", ".join(dict.fromkeys(hardware)),
        "engine": ", ".join(dict.fromkeys(engines)),
        "points": f"{len(done or [])}/{len(planned)}" if isinstance(planned, list) else "-",
        # which point, where the run's variants ran on other hardware or engines
        "best out tok/s": "-"
        if best is None
        else f"{best[0]:.1f}" + (f" ({best[1]})" if variants > 1 else ""),
    }


def best_point(run: Path, manifest: dict[str, Any]) -> tuple[float, str] | None:
    """The highest output tok/s of the run's finished points (points cut short left out) and its point
    id; None if none measured one."""
    df = read_points(run, manifest)
    if df.empty or "output_tok_s" not in df.columns:
        return None
    tok_s = pd.to_numeric(df.loc[~aborted_rows(df), "output_tok_s"], errors="coerce")
    tok_s = tok_s[np.isfinite(tok_s)]
    if tok_s.empty:
        return None
    best = tok_s.idxmax()
    return float(tok_s[best]), str(df.at[best, "point_id"] if "point_id" in df.columns else "?")
