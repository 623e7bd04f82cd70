"""`NAME=NUMBER` option values (`--price h100-sxm=2.99`, `--bandwidth cpu=20`), parsed one way."""

from __future__ import annotations

import math
from collections.abc import Iterable


def name_numbers(items: Iterable[str], bare: bool = False, unit_prefix: str = "") -> dict[str, float]:
    """`["h100-sxm=2.99"]` -> {"h100-sxm": 2.99}. With `bare`, a number alone is allowed, under the key "".
    `unit_prefix` (`$`) may stand before a number. ValueError(item) for the first item that is not
    NAME=NUMBER with NUMBER finite and > 0: the caller words the message for its option."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=") if bare else item.partition("=")
        try:
            number = float(value.strip().removeprefix(unit_prefix))
        except ValueError:
            number = -1.0
        if not (math.isfinite(number) and number > 0) or (not bare and not sep) or (sep and not name.strip()):
            raise ValueError(item)
        out[name.strip()] = number
    return out
