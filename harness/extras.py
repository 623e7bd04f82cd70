"""What an optional feature needs installed, said as a `pip install` a user can paste.

The packages come from this distribution's own metadata (pyproject's `optional-dependencies`), else, in a
source tree run without installing it, from its pyproject.toml. The hint names the packages, not
`llm-harness[EXTRA]`: that name on PyPI is another project, and pip would fetch it instead."""

from __future__ import annotations

import functools
import importlib.metadata
import re
import tomllib
from pathlib import Path

DISTRIBUTION = "llm-harness"

# `xllamacpp>=0.2; extra == "llamacpp"`: a requirement of the distribution's metadata and its extra
_EXTRA_MARKER = re.compile(r'^(?P<req>[^;]+?)\s*;\s*extra\s*==\s*"(?P<extra>[^"]+)"\s*$')


def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution (`xllamacpp`), None where this Python has none."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def extra_requirements(requires: list[str], extra: str) -> list[str]:
    """The requirements of `extra` among a distribution's metadata `requires` lines (those marked
    `extra == "EXTRA"` and nothing else), in their order."""
    out = []
    for line in requires:
        m = _EXTRA_MARKER.match(line.strip())
        if m and m["extra"] == extra:
            out.append(m["req"].strip())
    return out


@functools.cache
def _requirements(extra: str) -> tuple[str, ...]:
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    got = extra_requirements(requires, extra)
    if not got:  # not installed (a source tree on PYTHONPATH), or installed before the extra existed
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            table = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
            got = [str(r) for r in table.get(extra) or []]
        except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
            pass
    return tuple(got)


def pip_install(extra: str) -> str:
    """`pip install 'xllamacpp>=0.2'`: the packages of this harness's optional feature `extra`; where no
    record of them is found, the extra by name, for a checkout."""
    reqs = _requirements(extra)
    if not reqs:
        return f"pip install -e '.[{extra}]' in the harness's source checkout"
    return "pip install " + " ".join(f"'{r}'" for r in reqs)
