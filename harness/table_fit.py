"""Wide terminal tables split into parts that fit, so that no number is cut.

Rich fits a table to the terminal by wrapping headers and text first, then by cutting cells short
(`2246…`). Numbers cut short are worse than no table: a table whose cells do not fit at their full
width is printed as several tables instead, each with the row labels (or, where they are wide, a row
number standing for them) and as many of the other columns as fit, in order.
"""

from __future__ import annotations

import copy
import dataclasses

from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table


def _widths(console: Console, column: Column) -> tuple[int, int]:
    """(narrowest, natural) width of a column's content: narrowest with its header wrapped at spaces and
    its cells whole, natural with neither wrapped."""
    options = console.options.update(max_width=1_000_000)
    head = Measurement.get(console, options, column.header) if column.header else Measurement(0, 0)
    cells = max((Measurement.get(console, options, c).maximum for c in column.cells), default=0)
    return max(head.minimum, cells), max(head.maximum, cells)


def fitted(console: Console, table: Table, keys: int = 1) -> list[Table]:
    """`table` itself where it fits `console.width` unwrapped; else parts of it that fit with headers
    wrapped and cells whole, titled `(1/N)`... (one part where wrapping the headers is enough; a later part
    too narrow for the whole title on one line is titled by its number alone). Each part
    repeats the first `keys` columns (the row labels); labels wider than a third of the terminal are
    given once, in the first part (wrapped where wider than the terminal, and alone where no column fits
    beside them), and a row number (`#`) beside them and in every part stands for them. A column wider
    than the terminal alone gets a part of its own (the terminal then wraps its lines)."""
    widths = [_widths(console, c) for c in table.columns]
    edges = table.padding[3] + table.padding[1] + 1  # a column's padding and one border line
    if sum(w + edges for _, w in widths) + 1 <= console.width:
        return [table]
    columns = [dataclasses.replace(c, width=w) for c, (w, _) in zip(table.columns, widths, strict=True)]
    if sum(c.width or 0 for c in columns[:keys]) + keys * edges > console.width // 3:
        rows = _row_numbers(table.row_count)
        columns.insert(0, dataclasses.replace(rows, width=_widths(console, rows)[0]))
        first, later = columns[: keys + 1], columns[:1]
    else:
        first = later = columns[:keys]
    numbered = first is not later
    groups: list[list[Column]] = [[]]
    for c in columns[len(first) :]:
        head = first if len(groups) == 1 else later
        over = sum((x.width or 0) + edges for x in [*head, *groups[-1], c]) + 1 > console.width
        # a column that does not fit beside the row labels goes to the next part, where the row numbers
        # stand for them (without them, it gets a part of its own)
        if over and (groups[-1] or (numbered and len(groups) == 1)):
            groups.append([])
        groups[-1].append(c)
    if sum((x.width or 0) + edges for x in first) + 1 > console.width:
        # labels wider than the terminal: they wrap, and the row numbers keep their width
        first = [first[0], *(dataclasses.replace(x, width=None, overflow="fold") for x in first[1:])]
    parts = []
    for n, group in enumerate(groups, start=1):
        part = copy.copy(table)
        # fixed widths: rich would otherwise narrow the widest column first, cutting its cells
        part.columns = [*(first if n == 1 else later), *group]
        if table.title is not None and len(groups) > 1:
            part.title = f"{table.title} ({n}/{len(groups)})"
            inner = sum((c.width or 0) + edges for c in part.columns) - 1  # inside the outer borders
            if n > 1 and cell_len(str(table.title)) + 6 > inner:
                part.title = f"({n}/{len(groups)})"  # the title would wrap over lines: part 1 gave it
        parts.append(part)
    return parts


def _row_numbers(n: int) -> Column:
    numbers = Table()
    numbers.add_column("#", justify="right")
    for i in range(1, n + 1):
        numbers.add_row(str(i))
    return numbers.columns[0]


def print_fitted(console: Console, table: Table, keys: int = 1) -> None:
    for part in fitted(console, table, keys):
        console.print(part)
