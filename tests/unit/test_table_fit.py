"""Wide tables in narrow terminals: split into parts, never a number cut short."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.table_fit import fitted, print_fitted

RUN = Path(__file__).resolve().parents[2] / "results" / "evidence" / "20261125T114708Z-quickstart-cpu"


def _table(n_columns: int) -> Table:
    t = Table(title="t")
    t.add_column("point")
    for i in range(n_columns):
        t.add_column(f"metric {i} ms", justify="right")
    t.add_row("v0-c1", *(f"{1000 + i}.25" for i in range(n_columns)))
    return t


def _printed(width: int, table: Table, keys: int = 1) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    print_fitted(console, table, keys)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_a_table_that_fits_is_printed_as_it_is() -> None:
    t = _table(3)
    assert fitted(Console(width=200), t) == [t]
    text = _printed(200, t)
    assert "metric 2 ms" in text and "(1/" not in text


def test_a_wide_table_is_split_with_its_label_column_in_each_part_and_every_cell_whole() -> None:
    # 12 columns of 7-character numbers: 10 characters each with padding and border, 130 in all
    t = _table(12)
    text = _printed(80, t)
    assert "…" not in text
    assert all(f"{1000 + i}.25" in text for i in range(12))
    assert text.count("v0-c1") == 2 and "t (1/2)" in text and "t (2/2)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    parts = fitted(Console(width=80), t)
    assert [len(p.columns) for p in parts] == [8, 6]  # the label column, then 7 and 5 of the 12


def test_wrapping_headers_is_enough_where_it_fits() -> None:
    # 6 columns of `metric i ms` (11 characters) fit 80 only with the headers on two lines
    t = _table(6)
    parts = fitted(Console(width=80), t)
    assert len(parts) == 1 and parts[0].title == "t"
    text = _printed(80, t)
    assert "…" not in text and "1005.25" in text and "5 ms" in text


def test_wide_row_labels_are_given_once_with_a_row_number_standing_for_them() -> None:
    """Five label columns of 70 characters repeated in every part left room for one number each."""
    t = Table(title="t")
    for h in ("config", "model", "precision", "workload", "load"):
        t.add_column(h)
    for i in range(6):
        t.add_column(f"metric {i}", justify="right")
    for row in (1, 2):
        t.add_row(
            "cpu | llamacpp/xllamacpp", "gemma-3-270m", "q4_k_m", "128/64", f"c{row}", *(["1000.25"] * 6)
        )
    parts = fitted(Console(width=90), t, keys=5)
    # 4 + 27 + 15 + 12 + 11 + 7 + 1 = 77 characters of labels and edges: one 10-character metric beside them
    assert [[str(c.header) for c in p.columns] for p in parts] == [
        ["#", "config", "model", "precision", "workload", "load", "metric 0"],
        ["#", "metric 1", "metric 2", "metric 3", "metric 4", "metric 5"],
    ]
    text = _printed(90, t, keys=5)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 90
    assert text.count("cpu | llamacpp/xllamacpp") == 2  # once per row, in the first part only


def test_a_later_part_too_narrow_for_the_title_is_titled_by_its_number_alone() -> None:
    """The quickstart's second part at 100 columns had its title wrapped over three lines."""
    t = _table(12)
    t.title = "quickstart-cpu — llamacpp (xllamacpp) — gemma-3-270m-q4_k_m — complete"
    parts = fitted(Console(width=80), t)
    assert [p.title for p in parts] == [f"{t.title} (1/2)", "(2/2)"]
    t.title = "short"
    assert [p.title for p in fitted(Console(width=80), t)] == ["short (1/2)", "short (2/2)"]


def test_the_points_table_of_a_run_keeps_its_numbers_in_an_80_column_terminal() -> None:
    """A run's 15-column table had been squeezed to `5…`, `1…`, `0.…` at 80 columns."""
    from harness.report import rich_table
    from harness.results import read_manifest
    from harness.runpoints import read_points

    manifest = read_manifest(RUN)
    df = read_points(RUN, manifest)
    text = _printed(80, rich_table(df, "quickstart"))
    assert "…" not in text
    for value in ("36.8", "110.5", "1638.7", "1921.3", "51.1", "4.93", "0.81"):
        assert value in text


def test_a_table_title_names_the_engine_and_its_launcher_once_each() -> None:
    from harness.report import title_of

    def manifest(name: str, launcher: str) -> dict[str, object]:
        engine = {"name": name, "launcher": launcher, "model": {"name": "m"}}
        return {"scenario": {"name": "s"}, "engines": [engine], "status": "complete"}

    assert title_of(manifest("llamacpp", "xllamacpp")) == "s — llamacpp (xllamacpp) — m — complete"
    assert title_of(manifest("external", "external")) == "s — external — m — complete"


def _labelled(label_chars: int, rows: int = 2, metrics: int = 8) -> Table:
    t = Table(title="t")
    t.add_column("label")
    for i in range(metrics):
        t.add_column(f"m{i}", justify="right")
    for _ in range(rows):
        t.add_row("x" * label_chars, *["1000.25"] * metrics)
    return t


def test_a_table_of_exactly_the_terminals_width_is_not_split() -> None:
    t = _table(3)  # 5 + 3 x 11 characters of content, 3 of padding and border per column, 1 border: 51
    assert fitted(Console(width=51), t) == [t]
    assert fitted(Console(width=50), t) != [t]
    # an empty column is drawn 0 wide (it had counted 1, and a table of exactly 12 was split)
    empty = Table()
    for head in ("a", "", "b"):
        empty.add_column(head)
    empty.add_row("1", "", "2")
    assert fitted(Console(width=12), empty) == [empty]
    # a part filled to its last character: 8 + 7 x 10 + 1 = 79
    assert [len(p.columns) for p in fitted(Console(width=79), _table(12))] == [8, 6]


def test_labels_get_a_row_number_from_a_third_of_the_terminal() -> None:
    """At 90 columns the labels stand alone while their width and 3 edges are at most 30."""

    def first_header(label_chars: int) -> str:
        return str(fitted(Console(width=90), _labelled(label_chars), keys=1)[0].columns[0].header)

    assert [first_header(n) for n in (24, 27, 28, 35)] == ["label", "label", "#", "#"]
    # labels wider than the terminal: given once, in the first part, wrapped, and the numbers after them
    # (beside them, the first number had been cut short)
    parts = fitted(Console(width=60), _labelled(100, rows=1, metrics=3), keys=1)
    assert [[str(c.header) for c in p.columns] for p in parts] == [["#", "label"], ["#", "m0", "m1", "m2"]]
    text = _printed(60, _labelled(100, rows=1, metrics=3))
    assert "…" not in text and text.count("1000.25") == 3 and text.count("x") == 100


def test_row_numbers_count_from_one_and_one_label_column_is_the_default() -> None:
    text = _printed(90, _labelled(40, rows=9), 1)
    assert "│ 1 │ xxx" in text and "│ 9 │" in text and "│ 0 │" not in text
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_fitted(console, _table(12))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.count("v0-c1") == 2 and text.count("1000.25") == 1


def test_row_labels_wider_than_the_terminal_wrap_and_every_number_comes_whole_after_them() -> None:
    """In 40 columns the labels of `compare` filled the first part, and its one number beside them was
    cut (`377…`), as the row numbers were (drawn 0 wide)."""
    t = Table(title="output tok/s")
    for h in ("model", "precision", "workload", "load"):
        t.add_column(h)
    for i in range(3):
        t.add_column(f"#{i + 1}", justify="right")
    for row, name in enumerate(("meta-llama/Llama-3.1-8B-Instruct", "org/模型 name 🚀"), start=1):
        t.add_row(name, "bf16", "1024/256", f"c{row}", "377.91", "8813.62", "12.5")
    parts = fitted(Console(width=40), t, keys=4)
    # the labels alone, then the numbers beside the row numbers that stand for them
    assert [[str(c.header) for c in p.columns] for p in parts] == [
        ["#", "model", "precision", "workload", "load"],
        ["#", "#1", "#2", "#3"],
    ]
    text = _printed(40, t, keys=4)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 40
    assert all(n in text for n in ("377.91", "8813.62", "12.5"))
    assert "│ 1 │" in text and "│ 2 │" in text  # the row numbers, in both parts


def test_narrow_labels_keep_a_column_beside_them_in_every_part() -> None:
    """Labels narrower than a third of the terminal are repeated, not numbered: a column wider than the
    terminal gets a part of its own beside them, and no part holds the labels alone."""
    t = Table(title="t")
    t.add_column("point")
    t.add_column("note", justify="right")
    t.add_column("metric", justify="right")
    t.add_row("v0-c1", "x" * 60, "1000.25")
    parts = fitted(Console(width=40), t)
    assert [[str(c.header) for c in p.columns] for p in parts] == [["point", "note"], ["point", "metric"]]
