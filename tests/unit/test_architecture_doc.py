"""docs/architecture.md names every module of the package, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _modules() -> set[str]:
    pkg = ROOT / "harness"
    return {p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if "__pycache__" not in p.parts}


def _listed() -> set[str]:
    """The module paths the page's lists name: "- `load/driver.py`: ..."."""
    return set(re.findall(r"^- `([\w/]+\.py)`", DOC.read_text(), flags=re.M))


def test_every_module_is_on_the_architecture_page() -> None:
    modules = _modules()
    assert len(modules) > 50  # the walk found the package
    assert sorted(modules - _listed()) == []


def test_the_architecture_page_names_no_module_that_is_not_there() -> None:
    assert sorted(_listed() - _modules()) == []
