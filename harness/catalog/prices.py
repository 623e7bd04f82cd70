"""The price table (prices.yaml, or a user file of the same shape) and `--price device=$/h` overrides."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from harness.catalog import CatalogError, load_yaml, read_user_yaml
from harness.catalog.hardware import devices
from harness.field_errors import entry_problems


class Price(BaseModel):
    """A dated, sourced rental price for one device (US$ per device-hour)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    device: str
    provider: str
    usd_per_hour: float = Field(gt=0)
    usd_per_hour_high: float | None = Field(None, gt=0)
    seen: str
    source: str
    note: str | None = None
    default: StrictBool = False

    @model_validator(mode="after")
    def _range(self) -> Price:
        if self.usd_per_hour_high is not None and self.usd_per_hour_high < self.usd_per_hour:
            raise ValueError("usd_per_hour_high is below usd_per_hour")
        return self


@dataclass(frozen=True)
class PriceQuote:
    """The price used for one device, and where it came from (for table footnotes): `origin` in full
    (provider, date, range), `source` who set it (a provider, with the file it was read from, or
    `--price`; empty: as `origin` says)."""

    device: str
    usd_per_hour: float
    origin: str
    source: str = ""

    def line(self) -> str:
        """The price as `cost` and `recommend` print it under their tables: `price h100-sxm: $2.49/h
        (typical-gpu-cloud, seen 2026-Q1, low end of $2.49-3.99)`."""
        return f"price {self.device}: ${self.usd_per_hour:g}/h ({self.origin})"


def parse_prices(data: Any, file: str, known_devices: Iterable[str] | None = None) -> list[Price]:
    if not isinstance(data, dict) or not isinstance(data.get("prices"), list):
        raise CatalogError(f"{file}: (top level): expected a mapping with a `prices:` list")
    known = set(known_devices) if known_devices is not None else None
    out: list[Price] = []
    defaults: dict[str, int] = {}
    problems: list[str] = []  # every mistake in the file, one line each
    for i, entry in enumerate(data["prices"]):
        if not isinstance(entry, dict):
            problems.append(f"{file}: prices[{i}]: expected a mapping of fields")
            continue
        try:
            p = Price.model_validate(entry)
        except ValidationError as e:
            problems += entry_problems(f"{file}: prices[{i}]", e.errors())
            continue
        if known is not None and p.device not in known:
            problems.append(
                f"{file}: prices[{i}].device: {p.device!r} is not in the hardware catalog "
                f"(allowed: {', '.join(sorted(known))})"
            )
        if p.default:
            if p.device in defaults:
                problems.append(
                    f"{file}: prices[{i}].default: {p.device} already has a default "
                    f"(prices[{defaults[p.device]}])"
                )
            defaults.setdefault(p.device, i)
        out.append(p)
    if problems:
        raise CatalogError("\n".join(problems))
    return out


@cache
def prices() -> tuple[Price, ...]:
    return tuple(parse_prices(load_yaml("prices.yaml"), "prices.yaml", devices()))


def load_price_file(path: str | Path) -> list[Price]:
    p = Path(path)
    data = read_user_yaml(p)
    # a user file may price devices outside the catalog (e.g. `cpu`, a private part)
    return parse_prices(data, str(p))


def parse_price_overrides(items: Iterable[str]) -> dict[str, float]:
    """`["h100-sxm=2.99", "cpu=0.1"]` -> {"h100-sxm": 2.99, "cpu": 0.1}; bad items raise CatalogError."""
    from harness.keyvalues import RepeatedName, name_numbers

    try:
        return name_numbers(items, unit_prefix="$")
    except RepeatedName as e:
        raise CatalogError(f"--price: {repeated(e)}") from None
    except ValueError as e:
        raise CatalogError(
            f"--price: {e.args[0]!r}: expected DEVICE=USD_PER_HOUR (a number > 0), e.g. h100-sxm=3.10"
        ) from None


def repeated(e: Exception) -> str:
    """A RepeatedName said for --price (a number alone prices every accelerator of a launch)."""
    a, b = e.args
    if "=" not in a:
        return f"{a!r} and {b!r} give every accelerator two prices (give one)"
    return f"{a!r} and {b!r} give one name two prices (give each name once)"


# the origin of a price given on the command line
OVERRIDE = "--price"


def unused_override_notes(origins: dict[str, str], devices: Iterable[str]) -> list[str]:
    """A note for each `--price` device that no point given is on (a typo, or not the hardware key the
    runs record, e.g. `h100` for `h100-sxm`): its price is used nowhere. A name that priced several
    devices (`--price H100`: origin `--price H100`) is noted where none of them is used."""
    used = sorted(set(devices))
    notes = []
    named: dict[str, list[str]] = {}  # a name given -> the devices it priced
    for dev, where in origins.items():
        if where.startswith(OVERRIDE + " "):
            named.setdefault(where.removeprefix(OVERRIDE + " "), []).append(dev)
    for name, devs in named.items():
        if not set(devs) & set(used):
            notes.append(
                f"--price {name}: it prices {', '.join(devs)}, and no point here is on one, so it is not "
                f"used (devices: {', '.join(used)})"
            )
    for dev, where in origins.items():
        if where != OVERRIDE or dev in used:
            continue
        close = difflib.get_close_matches(dev, used, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        notes.append(
            f"--price {dev}: no point here is on that device, so it is not used ({hint}devices: "
            f"{', '.join(used)})"
        )
    return notes


def origin(p: Price) -> str:
    """Where a price comes from, and for a range that it is the low end: `typical-gpu-cloud, seen
    2026-Q1, low end of $1.49-2.49`."""
    text = f"{p.provider}, seen {p.seen}"
    if p.usd_per_hour_high is not None and p.usd_per_hour_high != p.usd_per_hour:
        text += f", low end of ${p.usd_per_hour:g}-{p.usd_per_hour_high:g}"
    return text


def resolve_prices(
    overrides: dict[str, float] | None = None,
    price_file: str | Path | None = None,
    provider: str | None = None,
) -> dict[str, PriceQuote]:
    """Price per device: --price overrides, else the user file, else `provider`'s entry, else the default."""
    table: dict[str, PriceQuote] = {}
    catalog = prices()
    if provider is not None and not any(p.provider == provider for p in catalog):
        allowed = ", ".join(sorted({p.provider for p in catalog}))
        raise CatalogError(f"--provider: {provider!r} has no prices in prices.yaml (allowed: {allowed})")
    for p in catalog:
        if p.default and p.device not in table:
            table[p.device] = PriceQuote(p.device, p.usd_per_hour, origin(p), p.provider)
    if provider is not None:
        for p in catalog:
            if p.provider == provider:
                table[p.device] = PriceQuote(p.device, p.usd_per_hour, origin(p), p.provider)
    if price_file is not None:
        user = load_price_file(price_file)
        chosen: dict[str, Price] = {}
        for p in user:
            if p.device not in chosen or (p.default and not chosen[p.device].default):
                chosen[p.device] = p
        for dev, p in chosen.items():
            table[dev] = PriceQuote(
                dev, p.usd_per_hour, f"{origin(p)} ({price_file})", f"{p.provider} ({price_file})"
            )
    for dev, usd in (overrides or {}).items():
        table[dev] = PriceQuote(dev, usd, OVERRIDE, OVERRIDE)
    return table


def mixed_sources_notes(
    quotes: dict[str, PriceQuote], devices: Iterable[str], provider: str | None = None
) -> list[str]:
    """A note where the prices of `devices` (the rows ranked) come from more than one source: providers
    and dates differ, so part of a gap between their $/1M tokens is the prices'. `--provider` replaces
    only the prices of the devices it lists; the others keep theirs, and the note says so."""
    by_source: dict[str, list[str]] = {}
    for d in dict.fromkeys(devices):
        if (q := quotes.get(d)) is not None:
            by_source.setdefault(q.source or q.origin, []).append(d)
    if len(by_source) < 2:
        return []
    said = "; ".join(f"{src}: {', '.join(devs)}" for src, devs in by_source.items())
    note = (
        f"the ranked rows' prices come from {len(by_source)} sources ({said}): providers and dates differ, "
        "so part of a gap in $/1M tokens is the prices' (give prices of one source with --prices FILE or "
        "--price DEVICE=USD_PER_HOUR)"
    )
    if provider is not None:
        listed = ", ".join(by_source.get(provider, [])) or "none of them"
        note += (
            f"; --provider {provider} replaces only the prices of the devices it lists (here {listed}): the "
            "others keep theirs"
        )
    return [note]
