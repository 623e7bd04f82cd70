"""Wide terminal tables split into parts that fit, so that no number is cut.

Rich fits a table to the terminal by wrapping headers and text first, then by cutting cells short
(`2246…`). Numbers cut short are worse than no table: a table whose cells do not fit at their full
width is printed as several tables instead, each with the first `keys` columns (the row labels) and
as many of the others as fit, in order.
"""

from __future__ import annotations

import copy
import dataclasses

from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table


def _widths(console: Console, table: Table, column: Column) -> tuple[int, int]:
    """(narrowest, natural) width of a column with its padding and one border line: narrowest with its
    header wrapped at spaces and its cells whole, natural with neither wrapped."""
    options = console.options.update(max_width=1_000_000)
    head = Measurement.get(console, options, column.header) if column.header else Measurement(0, 0)
    cells = max((Measurement.get(console, options, c).maximum for c in column.cells), default=0)
    extra = table.padding[3] + table.padding[1] + 1
    return max(head.minimum, cells, 1) + extra, max(head.maximum, cells, 1) + extra


def fitted(console: Console, table: Table, keys: int = 1) -> list[Table]:
    """`table` itself where it fits `console.width` unwrapped; else parts of it that fit with headers
    wrapped and cells whole, each repeating the first `keys` columns, titled `(1/N)`... (one part where
    wrapping the headers is enough). A column wider than the terminal alone gets a part of its own (the
    terminal then wraps its lines)."""
    widths = [_widths(console, table, c) for c in table.columns]
    if sum(w for _, w in widths) + 1 <= console.width:
        return [table]
    narrow = [w for w, _ in widths]
    base = sum(narrow[:keys]) + 1
    groups: list[list[int]] = [[]]
    used = base
    for i in range(keys, len(narrow)):
        if groups[-1] and used + narrow[i] > console.width:
            groups.append([])
            used = base
        groups[-1].append(i)
        used += narrow[i]
    extra = table.padding[3] + table.padding[1] + 1
    parts = []
    for n, group in enumerate(groups, start=1):
        part = copy.copy(table)
        # a fixed width per column: rich would otherwise narrow the widest column first, cutting its cells
        part.columns = [
            dataclasses.replace(table.columns[i], width=narrow[i] - extra) for i in (*range(keys), *group)
        ]
        if table.title is not None and len(groups) > 1:
            part.title = f"{table.title} ({n}/{len(groups)})"
        parts.append(part)
    return parts


def print_fitted(console: Console, table: Table, keys: int = 1) -> None:
    for part in fitted(console, table, keys):
        console.print(part)
