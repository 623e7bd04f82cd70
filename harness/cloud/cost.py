"""Launch-time cost estimates from the price catalog's default $/GPU-hour or a price the user gives.

These are estimates of what renting will cost before anything runs; the cost of a measured token
($/1M output tokens from measured tok/s) is a different calculation that works on run directories.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.catalog.hardware import devices
from harness.catalog.prices import prices
from harness.cloud.task import CATALOG_TO_SKYPILOT, RUNPOD_SXM_NAMES, SXM_ONLY_CLOUDS


@dataclass(frozen=True)
class Price:
    """$/GPU-hour range for one accelerator; `low == high` for a single price."""

    low_usd_per_gpu_hour: float
    high_usd_per_gpu_hour: float
    source: str


def skypilot_name(accelerator: str) -> str:
    """A SkyPilot accelerator name the catalog knows, as the catalog spells it (SkyPilot takes any case:
    `h100` is `H100`); any other name as given."""
    known = (*CATALOG_TO_SKYPILOT.values(), *RUNPOD_SXM_NAMES.values())
    return next((v for v in known if v.lower() == accelerator.lower()), accelerator)


def catalog_devices(accelerator: str) -> list[str]:
    """The hardware-catalog keys a SkyPilot accelerator name (any case, as SkyPilot takes it) can be
    (`H100`: the SXM and the PCIe card; RunPod's `H100-SXM`: the SXM one)."""
    sxm_only = {v: k for k, v in RUNPOD_SXM_NAMES.items()}
    accelerator = skypilot_name(accelerator)
    name = sxm_only.get(accelerator, accelerator)
    keys = [k for k, v in CATALOG_TO_SKYPILOT.items() if v == name]
    if accelerator in sxm_only:
        keys = [k for k in keys if devices()[k].form_factor == "sxm"]
    return keys


def launch_devices(accelerator: str, cloud: str | None = None) -> list[str]:
    """The catalog devices a launch of `accelerator` (SkyPilot name) can get: `catalog_devices`, the SXM
    ones alone on a cloud with SXM parts only (`SXM_ONLY_CLOUDS`; `cloud` is `--cloud`'s first part)."""
    keys = catalog_devices(accelerator)
    if cloud in SXM_ONLY_CLOUDS:
        keys = [k for k in keys if devices()[k].form_factor != "pcie"] or keys
    return keys


def lookup_price(
    accelerator: str, override_usd_per_gpu_hour: float | None = None, cloud: str | None = None
) -> Price | None:
    """The price to use for `accelerator` (SkyPilot name): the override if given, else the range of the
    price catalog's defaults (harness/catalog/prices.yaml, the ones `harness cost` uses) over the
    catalog devices the name can be (on a cloud with SXM parts only, `SXM_ONLY_CLOUDS`, the SXM ones);
    None where none is priced. `cloud`: the `--cloud` given (its first part), which the source names
    where the prices are other providers'."""
    if override_usd_per_gpu_hour is not None:
        p = float(override_usd_per_gpu_hour)
        return Price(p, p, "--price")
    keys = launch_devices(accelerator, cloud)
    rows = [p for p in prices() if p.default and p.device in keys]
    if not rows:
        return None
    low = min(p.usd_per_hour for p in rows)
    high = max(p.usd_per_hour_high or p.usd_per_hour for p in rows)
    source = "prices.yaml: " + ", ".join(f"{p.device} ({p.provider}, seen {p.seen})" for p in rows)
    if cloud and not any(p.provider.split("-")[0] == cloud for p in rows):
        source += f"; not {cloud}'s own prices, which can be far higher: SkyPilot's launch table has them"
    return Price(low, high, source)


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
