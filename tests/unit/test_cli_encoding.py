"""Output in an encoding without `—`, `±` or `…` (PYTHONIOENCODING=ascii, a C locale without UTF-8 mode):
the characters come out as `?`, and the command still does its work (`report` had ended in a
UnicodeEncodeError before writing report.md, and `--help` of several commands too)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "results/evidence/20261125T114708Z-quickstart-cpu"


def _harness(*args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": str(columns), "PYTHONUTF8": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        env=env,
        capture_output=True,
        encoding="ascii",
        errors="strict",  # a byte outside ASCII would fail here
        check=False,
        timeout=120,
    )


def test_report_on_an_ascii_stdout_prints_its_table_and_writes_its_files(tmp_path: Path) -> None:
    run = tmp_path / QUICKSTART.name
    shutil.copytree(QUICKSTART, run, ignore=shutil.ignore_patterns("report*"))
    res = _harness("report", str(run))
    assert res.returncode == 0, res.stderr
    assert "quickstart-cpu ? llamacpp (xllamacpp) ? gemma-3-270m-q4_k_m ? complete" in res.stdout
    assert "UnicodeEncodeError" not in res.stderr
    assert "\u2014" in (run / "report.md").read_text(encoding="utf-8")  # the file keeps its em dash


@pytest.mark.parametrize(
    ("command", "columns"), [(("cloud", "launch"), 200), (("cost",), 80), (("compare",), 60)]
)
def test_help_on_an_ascii_stdout(command: tuple[str, ...], columns: int) -> None:
    res = _harness(*command, "--help", columns=columns)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and "UnicodeEncodeError" not in res.stderr


def test_a_file_name_of_undecodable_bytes_is_printed_as_given(tmp_path: Path) -> None:
    """`?` stands only for what the encoding lacks: a name's bytes that are not UTF-8 go out as they came."""
    scenario = Path(os.fsdecode(bytes(tmp_path) + b"/s\xff.yaml"))
    shutil.copy(ROOT / "scenarios" / "quickstart-cpu.yaml", scenario)
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    res = subprocess.run(
        [sys.executable, "-m", "harness", "validate", os.fsencode(scenario)],
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert bytes(tmp_path) + b"/s\xff.yaml: ok (3 points, 1 engine)" in res.stdout
