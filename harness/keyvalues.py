"""`NAME=NUMBER` option values (`--price h100-sxm=2.99`, `--bandwidth cpu=20`), parsed one way."""

from __future__ import annotations

import math
from collections.abc import Iterable


class RepeatedName(ValueError):
    """A name given twice (in any case) with different numbers: args are the two items. Which one was
    meant cannot be told, so neither is taken."""


def name_numbers(items: Iterable[str], bare: bool = False, unit_prefix: str = "") -> dict[str, float]:
    """`["h100-sxm=2.99"]` -> {"h100-sxm": 2.99}. With `bare`, a number alone is allowed, under the key "".
    `unit_prefix` (`$`) may stand before a number. ValueError(item) for the first item that is not
    NAME=NUMBER with NUMBER finite and > 0: the caller words the message for its option. RepeatedName (a
    ValueError) for a name given again, in any case, with another number (`h100=2.99`, `H100=3.05`)."""
    out: dict[str, float] = {}
    first: dict[str, tuple[str, float]] = {}  # lower-cased name -> the item that gave it, its number
    for item in items:
        name, sep, value = item.rpartition("=") if bare else item.partition("=")
        try:
            number = float(value.strip().removeprefix(unit_prefix))
        except ValueError:
            number = -1.0
        if not (math.isfinite(number) and number > 0) or (not bare and not sep) or (sep and not name.strip()):
            raise ValueError(item)
        earlier = first.setdefault(name.strip().lower(), (item, number))
        if earlier[1] != number:
            raise RepeatedName(earlier[0], item)
        out[name.strip()] = number
    return out
