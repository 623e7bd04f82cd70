"""What the README and docs/compare.md show of the command line is what it is: the quickstart's table as the
harness prints it for the committed run, and every option of the commands docs/compare.md is about."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from harness.cli import app
from harness.report import display_frame, title_of
from harness.results import read_manifest
from harness.runpoints import read_points

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART_RUN = ROOT / "results" / "evidence" / "20261125T114708Z-quickstart-cpu"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split("[┃│]", line)[1:-1]]


def test_the_readmes_quickstart_table_is_the_one_printed_for_its_committed_run() -> None:
    """The sample lacked the `in SLO` column that the end of a run and `harness report` print."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"`results/evidence/20261125T114708Z-quickstart-cpu/`.*?```\n(.*?)```", readme, re.S)
    assert block is not None
    lines = block.group(1).splitlines()
    manifest = read_manifest(QUICKSTART_RUN)
    shown = display_frame(read_points(QUICKSTART_RUN, manifest))
    assert lines[0].strip() == title_of(manifest)
    assert _cells(next(ln for ln in lines if ln.startswith("┃"))) == list(shown.columns)
    assert [_cells(ln) for ln in lines if ln.startswith("│")] == shown.astype(str).values.tolist()


@pytest.mark.parametrize("command", ["report", "compare", "cost", "roofline", "claims", "recommend"])
def test_docs_compare_names_every_option_of_its_commands(command: str) -> None:
    """report --html, cost --devices and --j-per-output-token, claims --source, recommend --input-tokens
    and --output-tokens, roofline --input-tokens and --kv-dtype, --utilization: in --help only."""
    page = (ROOT / "docs" / "compare.md").read_text(encoding="utf-8")
    params = typer.main.get_command(app).commands[command].params
    options = [p.opts[0] for p in params if p.opts[0].startswith("--")]
    assert options, command
    assert [o for o in options if not re.search(re.escape(o) + r"(?![\w-])", page)] == []
