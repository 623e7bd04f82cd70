"""Install hints name the packages an optional feature needs, taken from the distribution's metadata:
`llm-harness[EXTRA]` on PyPI is another project."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from harness.extras import extra_requirements, pip_install

ROOT = Path(__file__).resolve().parents[2]

# as importlib.metadata.requires("llm-harness") gives them for this project's pyproject
REQUIRES = [
    "typer>=0.12",
    'xllamacpp>=0.2; extra == "llamacpp"',
    'llama-cpp-python[server]>=0.3; extra == "llama-cpp-python"',
    'ruff<0.18,>=0.17; extra == "dev"',
    'xllamacpp>=0.2; extra == "dev"',
    'nvidia-ml-py>=12; extra == "gpu"',
]


def test_an_extras_requirements_are_those_marked_with_it_and_no_other() -> None:
    assert extra_requirements(REQUIRES, "llamacpp") == ["xllamacpp>=0.2"]
    assert extra_requirements(REQUIRES, "llama-cpp-python") == ["llama-cpp-python[server]>=0.3"]
    assert extra_requirements(REQUIRES, "dev") == ["ruff<0.18,>=0.17", "xllamacpp>=0.2"]
    assert extra_requirements(REQUIRES, "plots") == []


def _name(req: str) -> str:
    m = re.match(r"[A-Za-z0-9_.\-]+(\[[^\]]*\])?", req)
    assert m, req
    return m.group(0).lower()


def test_every_extras_hint_installs_exactly_its_pyproject_packages() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, reqs in extras.items():
        hint = pip_install(extra)
        assert hint.startswith("pip install '"), (extra, hint)
        said = re.findall(r"'([^']+)'", hint)
        assert sorted(_name(r) for r in said) == sorted(_name(r) for r in reqs), (extra, hint)
    assert pip_install("llamacpp") == "pip install 'xllamacpp>=0.2'"


def test_an_extra_no_record_knows_is_named_for_a_checkout() -> None:
    assert (
        pip_install("no-such-extra") == "pip install -e '.[no-such-extra]' in the harness's source checkout"
    )


def test_no_message_or_doc_sends_users_to_pypis_other_llm_harness() -> None:
    """`pip install 'llm-harness[gpu]'` fetches an unrelated project of that name from PyPI."""
    files = subprocess.run(
        ["git", "ls-files", "harness", "docs", "README.md", "docker", "scenarios", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files
    hits = [f for f in files if f != "harness/extras.py" and "llm-harness[" in (ROOT / f).read_text()]
    assert hits == []
