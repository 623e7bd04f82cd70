"""Numbers and text as the tables show them: significant digits without exponents, milliseconds,
ratios and money by column kind (`fmt`), and Markdown cells that show any text literally."""

from __future__ import annotations

import math
import numbers
import unicodedata
from typing import Any

# from here up a number is shown with an exponent: $1e308 per hour written out is 309 digits
EXPONENT_FROM = 1e15


def significant(x: float, digits: int = 3, min_decimals: int = 0) -> str:
    """`x` with at least `digits` significant digits (and `min_decimals` decimals), no exponent:
    0.03611 -> 0.0361, 1.384 -> 1.38, 23456 -> 23456 (a fixed number of decimals shows 0.036 and 0.045
    $/1M both as 0.04). The decimals are those of `x` rounded to `digits` (0.099996 to 3 is 0.100).
    From `EXPONENT_FROM` up, `digits` significant digits with an exponent: 5.56e+302."""
    if x == 0 or not math.isfinite(x):
        return f"{x:.{min_decimals}f}" if math.isfinite(x) else f"{x:g}"
    if abs(x) >= EXPONENT_FROM:
        return f"{x:.{digits - 1}e}"
    rounded = float(f"{x:.{digits - 1}e}")
    decimals = max(min_decimals, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{x:.{decimals}f}"


def fmt(value: Any, spec: str) -> str:
    """A table cell: `-` for missing; spec `lower` (a name in lower case), `ms` (seconds as ms), `x`
    (ratio), `sigN` (N significant digits, `significant`), `usd` (cents, or 3 significant digits below
    them), `num` (whole numbers as such, else 4 significant digits without trailing zeros), else a format
    string; a number of `EXPONENT_FROM` or more has an exponent, whatever the spec."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if spec == "lower":  # names as written everywhere (q4_k_m, not Q4_K_M)
        return str(value).lower()
    if spec in ("ms", "x"):
        try:
            x = float(value)
        except (TypeError, ValueError):  # not a number (a hand-edited table): shown as it is
            return str(value)
        if spec == "ms":  # one decimal, and two significant digits below 1 ms (0.041, not 0.0)
            return significant(x * 1000, 2, 1)
        return significant(x, 2, 2) + "x"  # two decimals, and two significant below 0.1 (0.024x, not 0.02x)
    if spec == "num":  # a plain number: whole ones as such, others 4 significant digits, no trailing zeros
        try:
            x = float(value)
        except (TypeError, ValueError):
            return str(value)
        if x.is_integer() and abs(x) < EXPONENT_FROM:
            return f"{int(x)}"
        digits, e, exponent = significant(x, 4).partition("e")  # 1.000e+20: the zeros before the e
        return (digits.rstrip("0").rstrip(".") if "." in digits else digits) + e + exponent
    if spec.startswith("sig") or spec == "usd":
        try:  # money: cents at least, and three significant digits below a dollar
            return (
                significant(float(value), 3, 2) if spec == "usd" else significant(float(value), int(spec[3:]))
            )
        except (TypeError, ValueError):
            return str(value)
    if _huge(value):  # a format's digits written out (`{:.2f}` of 1e308) are not read
        return significant(float(value), 3)
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _huge(value: Any) -> bool:
    """Whether `value` is a number (not text nor a bool) of `EXPONENT_FROM` or more, either sign."""
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and abs(float(value)) >= EXPONENT_FROM
    )


def md_text(text: Any) -> str:
    """Text as Markdown shows it literally on one line: line breaks and other control characters as
    spaces, and a backslash before what would be markup here: `<` `>` (raw HTML), `&` (an entity),
    backticks (a code span, where no escape works), `|` (the end of a table cell), and `\\` itself."""
    flat = "".join(" " if unicodedata.category(c).startswith("C") else c for c in str(text))
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in flat)


_MD_SPECIAL = frozenset("\\`<>&|")


def md_row(cells: Any) -> str:
    """One Markdown table row, each cell through `md_text`."""
    return "| " + " | ".join(md_text(x) for x in cells) + " |"
