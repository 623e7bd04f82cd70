"""Launch-time cost estimates from a dated $/GPU-hour table (prices.yaml) or a price the user gives.

These are estimates of what renting will cost before anything runs; the cost of a measured token
($/1M output tokens from measured tok/s) is a different calculation that works on run directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PRICES_FILE = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class Price:
    """$/GPU-hour range for one accelerator; `low == high` for a single price."""

    low_usd_per_gpu_hour: float
    high_usd_per_gpu_hour: float
    source: str


@cache
def price_table() -> dict[str, Any]:
    data = yaml.safe_load(PRICES_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("accelerators"), dict), PRICES_FILE
    return data


def lookup_price(accelerator: str, override_usd_per_gpu_hour: float | None = None) -> Price | None:
    """The price to use for `accelerator` (SkyPilot name): the override if given, else the table's range."""
    if override_usd_per_gpu_hour is not None:
        p = float(override_usd_per_gpu_hour)
        return Price(p, p, "--price")
    table = price_table()
    row = table["accelerators"].get(accelerator)
    if row is None:
        return None
    names = ", ".join(row.get("sources", []))
    return Price(
        float(row["low_usd_per_gpu_hour"]),
        float(row["high_usd_per_gpu_hour"]),
        f"prices.yaml as of {table.get('as_of', '?')} ({names})",
    )


def hourly_usd(price: Price, gpus_per_node: int, nodes: int) -> tuple[float, float]:
    """Cluster cost per hour: usd_per_h = usd_per_gpu_hour × gpus_per_node × nodes (low, high)."""
    n = gpus_per_node * nodes
    return price.low_usd_per_gpu_hour * n, price.high_usd_per_gpu_hour * n


def run_cost_usd(price: Price, gpus_per_node: int, nodes: int, hours: float) -> tuple[float, float]:
    """Cost of holding the cluster `hours`: cost_usd = usd_per_gpu_hour × gpus_per_node × nodes × hours."""
    lo, hi = hourly_usd(price, gpus_per_node, nodes)
    return lo * hours, hi * hours


def fmt_range(lo: float, hi: float) -> str:
    return f"${lo:,.2f}" if abs(hi - lo) < 0.005 else f"${lo:,.2f}-{hi:,.2f}"
