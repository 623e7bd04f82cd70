"""What a token costs: rented device-hours spread over the tokens they produce, plus electricity.

    $/1M output tokens = usd_per_device_hour x devices / (output_tok_s x 3600 x utilization) x 1e6
    energy $/1M tokens = J/token x usd_per_kwh / 3.6e6 x 1e6          (1 kWh = 3.6e6 J)

`utilization` is the share of rented hours that serve traffic at the measured rate (1.0: always busy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.compare_notes import caveats, energy_scope_notes
from harness.runinfo import at_rate

J_PER_KWH = 3.6e6
SECONDS_PER_HOUR = 3600.0


def usd_per_million_tokens(
    usd_per_device_hour: float, tok_s: float, devices: int = 1, utilization: float = 1.0
) -> float:
    """$/1M tokens = usd_per_device_hour x devices / (tok_s x 3600 x utilization) x 1e6.

    NaN when the rate is missing or not positive (nothing produced, nothing to price)."""
    if not utilization > 0 or not utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    if tok_s is None or not tok_s > 0 or usd_per_device_hour is None:
        return math.nan
    return usd_per_device_hour * devices / (tok_s * SECONDS_PER_HOUR * utilization) * 1e6


def energy_usd_per_million_tokens(j_per_token: float | None, usd_per_kwh: float) -> float:
    """Energy $/1M tokens = j_per_token x usd_per_kwh / 3.6e6 x 1e6; NaN without a J/token."""
    if j_per_token is None or (isinstance(j_per_token, float) and math.isnan(j_per_token)):
        return math.nan
    return j_per_token * usd_per_kwh / J_PER_KWH * 1e6


@dataclass(frozen=True)
class CostInputs:
    """Typed numbers for `harness cost` without a run."""

    usd_per_device_hour: float
    tok_s: float
    devices: int = 1
    utilization: float = 1.0
    j_per_token: float | None = None
    usd_per_kwh: float | None = None

    def row(self) -> dict[str, Any]:
        rent = usd_per_million_tokens(self.usd_per_device_hour, self.tok_s, self.devices, self.utilization)
        row: dict[str, Any] = {
            "usd_per_device_hour": self.usd_per_device_hour,
            "devices": self.devices,
            "output_tok_s": self.tok_s,
            "utilization": self.utilization,
            "usd_per_1m_tokens": rent,
            "usd_per_token": rent / 1e6,
        }
        if self.usd_per_kwh is not None:
            energy = energy_usd_per_million_tokens(self.j_per_token, self.usd_per_kwh)
            row["usd_per_kwh"] = self.usd_per_kwh
            row["j_per_output_token"] = self.j_per_token
            row["energy_usd_per_1m_tokens"] = energy
            row["total_usd_per_1m_tokens"] = rent + energy if not math.isnan(energy) else math.nan
        return row


def add_cost_columns(
    df: pd.DataFrame,
    price_usd_per_hour: dict[str, float],
    utilization: float = 1.0,
    usd_per_kwh: float | None = None,
) -> pd.DataFrame:
    """Add `usd_per_device_hour`, `usd_per_1m_tokens`, the `utilization` a priced row assumes (and energy
    columns when `usd_per_kwh` is set) to a points frame with `device`, `devices` and `output_tok_s`
    columns (see harness.runinfo.points_frame)."""
    out = df.copy()
    prices = [price_usd_per_hour.get(d) if isinstance(d, str) else None for d in out["device"]]
    out["utilization"] = [math.nan if p is None else utilization for p in prices]
    out["usd_per_device_hour"] = [math.nan if p is None else p for p in prices]
    out["usd_per_1m_tokens"] = [
        usd_per_million_tokens(p, t, int(n), utilization) if p is not None else math.nan
        for p, t, n in zip(prices, out["output_tok_s"], out["devices"], strict=True)
    ]
    if usd_per_kwh is not None:
        jpt = out["energy_j_per_output_token"] if "energy_j_per_output_token" in out else [None] * len(out)
        out["energy_usd_per_1m_tokens"] = [energy_usd_per_million_tokens(j, usd_per_kwh) for j in jpt]
        out["total_usd_per_1m_tokens"] = out["usd_per_1m_tokens"] + out["energy_usd_per_1m_tokens"]
    return out


def run_cost_frame(
    points: pd.DataFrame,
    price_usd_per_hour: dict[str, float],
    utilization: float = 1.0,
    usd_per_kwh: float | None = None,
) -> pd.DataFrame:
    """Cost of every point of some runs (points from harness.runinfo.points_frame), display-ready."""
    df = add_cost_columns(points, price_usd_per_hour, utilization, usd_per_kwh)
    cols = [
        "run_id",
        "config",
        "model",
        "precision",
        "workload",
        "load",
        "output_tok_s",
        "slo_attainment",
        "devices",
        "usd_per_device_hour",
    ]
    cols += ["usd_per_1m_tokens"]
    if usd_per_kwh is not None:
        cols += ["energy_usd_per_1m_tokens", "total_usd_per_1m_tokens"]
    if df["run_id"].nunique() == 1:
        cols.remove("run_id")
    if "slo_attainment" in df.columns and df["slo_attainment"].isna().all():
        cols.remove("slo_attainment")
    return df[[c for c in cols if c in df.columns]]


HEADERS = {
    "run_id": "run",
    "workload": "workload (in/out)",
    "output_tok_s": "out tok/s",
    "slo_attainment": "in SLO",
    "usd_per_device_hour": "$/device-hour",
    "usd_per_1m_tokens": "$/1M out tok",
    "energy_usd_per_1m_tokens": "energy $/1M",
    "total_usd_per_1m_tokens": "total $/1M",
}


def rate_rows_cost_note(points: pd.DataFrame) -> list[str]:
    """What a $/1M tokens of a point at an arrival rate prices: the tokens that rate asked for, on a
    machine that may idle between them, not what the machine costs per token at its capacity."""
    if "usd_per_1m_tokens" not in points.columns or "load" not in points.columns:
        return []
    priced = points["usd_per_1m_tokens"].notna() & at_rate(points["load"])
    if not priced.any():
        return []
    return [
        "$/1M tokens at an arrival rate (r...) prices the tokens that rate asked for: below the machine's "
        "capacity it idles between them and each token costs more; the price at capacity is at concurrency "
        "rows (c...) or at the rate `harness run --find-max-goodput` finds"
    ]


def slo_cost_note(frame: pd.DataFrame) -> list[str]:
    """What the `in SLO` column says where a priced point has requests outside the SLOs: the cheapest row
    is often the highest load, whose requests wait longest (or fail), and its price is for a service
    its scenario's SLOs do not accept."""
    if "slo_attainment" not in frame.columns or "usd_per_1m_tokens" not in frame.columns:
        return []
    missed = frame["usd_per_1m_tokens"].notna() & (frame["slo_attainment"] < 1)
    if not missed.any():
        return []
    return [
        "in SLO: the share of a point's measured requests that met every SLO of its run's scenario (a "
        f"failed one did not); {int(missed.sum())} priced point(s) are below 100 %: their $/1M tokens price "
        "a load at which requests wait (or fail) past those SLOs"
    ]


def energy_cost_notes(points: pd.DataFrame, usd_per_kwh: float | None) -> list[str]:
    """Where an electricity price is given: the price, what energy it is applied to (what each point's
    window measured: GPU boards and CPU packages, not the rest of the host nor the power to cool it, no
    PUE), that the total adds it to a rent that for a cloud already pays for power, the points without a
    J/token, and configurations whose J/token count different things (`energy_scope_notes`)."""
    if usd_per_kwh is None:
        return []
    jpt = points.get("energy_j_per_output_token")
    has = jpt.notna() if jpt is not None else pd.Series(False, index=points.index)
    scopes = sorted(set(points.loc[has, "energy_scope"].dropna())) if "energy_scope" in points else []
    notes = [
        f"energy at ${usd_per_kwh:g}/kWh of the energy measured in each point's window"
        + (f" ({', '.join(scopes)})" if scopes else "")
        + ": GPU boards (NVML) and CPU packages (RAPL) only, not the rest of the host, power supplies or "
        "cooling (no PUE); 'total $/1M' adds it to the rent, for hardware whose power you pay (a cloud's "
        "$/hour already includes power)"
    ]
    if not has.all():  # a total without the energy would read as the rent alone: it is shown as - instead
        notes.append(
            "--usd-per-kwh: points without J/token (no energy telemetry in their window) have no energy or "
            "total $/1M tokens"
        )
    if has.any() and "energy_scope" in points.columns:
        notes += energy_scope_notes(points)
    return notes


def run_cost_notes(points: pd.DataFrame, frame: pd.DataFrame, usd_per_kwh: float | None = None) -> list[str]:
    """What the cost table of some runs does not show (`points` as `harness.runinfo.points_frame` gives
    them, `frame` as `run_cost_frame`): the caveats `harness compare` gives the same points (unfinished
    runs, points after a resume, failed requests, short outputs), points outside their SLOs, rows at an
    arrival rate, and what an energy cost counts (`energy_cost_notes`)."""
    return [
        *caveats(points),
        *slo_cost_note(frame),
        *rate_rows_cost_note(frame),
        *energy_cost_notes(points, usd_per_kwh),
    ]
