"""Files replaced whole: a name the file system takes can be written, and a write that cannot start names
the file asked for, not the temporary one beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.fileio import write_text_whole
from tests.conftest import run_harness


def _name_max(folder: Path) -> int:
    """The longest name `folder`'s file system takes, in bytes, as the system says it."""
    return os.pathconf(folder, "PC_NAME_MAX")


def test_a_name_near_the_file_systems_limit_is_written(tmp_path: Path) -> None:
    """The temporary name adds `.`, the pid, 8 hex digits and `.tmp` to the target's: a 255-byte name was
    refused ("File name too long") although the file system takes it."""
    target = tmp_path / ("n" * (_name_max(tmp_path) - 3) + ".md")
    assert len(os.fsencode(target.name)) == _name_max(tmp_path)
    write_text_whole(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary left


def test_a_long_name_of_several_byte_characters_is_cut_on_a_character(tmp_path: Path) -> None:
    target = tmp_path / ("é" * ((_name_max(tmp_path) - 3) // 2) + ".md")  # 2 bytes each in UTF-8
    write_text_whole(target, "neu\n")
    assert target.read_text() == "neu\n" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_write_that_cannot_start_names_the_file_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "gone" / "claims.md"
    with pytest.raises(FileNotFoundError) as e:
        write_text_whole(target, "x\n")
    assert e.value.filename == str(target)  # was tmp_path/gone/.claims.md.<pid>.<hex>.tmp
    assert e.value.strerror == "No such file or directory"


def test_an_output_named_near_the_limit_is_written_by_the_command(tmp_path: Path) -> None:
    out = tmp_path / ("r" * (_name_max(tmp_path) - 4) + ".csv")
    res = run_harness(
        "roofline", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--out", str(out), timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "File name too long" not in res.stderr
    assert out.read_text().splitlines()[0].startswith("model,")


def test_a_file_system_of_short_names_leaves_the_target_out_of_the_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file system takes names of fewer bytes than the temporary name's own parts (`.`, the pid,
    8 hex digits, `.tmp`), the target's name was cut one character at a time past nothing, forever."""
    import signal

    from harness.fileio import _tmp_prefix

    def loops(*_: object) -> None:
        raise TimeoutError("the temporary name was still being cut after 5 s")

    monkeypatch.setattr(os, "pathconf", lambda *_: 14)  # System V file systems, Minix v1
    before = signal.signal(signal.SIGALRM, loops)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        assert _tmp_prefix(tmp_path, "claims.md") == f"..{os.getpid()}."
        write_text_whole(tmp_path / "claims.md", "x\n")  # this file system takes the longer name
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert (tmp_path / "claims.md").read_text() == "x\n"
    assert [p.name for p in tmp_path.iterdir()] == ["claims.md"]
