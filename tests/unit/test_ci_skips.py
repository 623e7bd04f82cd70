"""In CI (HARNESS_REQUIRE_ALL=1) a test skipped for a missing package or tool fails; skips that need a GPU
or a quiet host stay skips (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import _refused_skip


def _skipped(reason: str) -> pytest.TestReport:
    return pytest.TestReport(
        "tests/x.py::t",
        ("tests/x.py", 1, "t"),
        {},
        "skipped",
        ("tests/x.py", 1, f"Skipped: {reason}"),
        "call",
    )


def test_a_missing_package_fails_ci_and_a_missing_gpu_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_REQUIRE_ALL", "1")
    assert _refused_skip(_skipped("could not import 'xllamacpp': No module named 'xllamacpp'")) is not None
    assert _refused_skip(_skipped("no NVIDIA GPU visible to NVML")) is None
    assert _refused_skip(_skipped("host too busy for a 2 ms timing check: ...")) is None
    passed = pytest.TestReport("tests/x.py::t", ("tests/x.py", 1, "t"), {}, "passed", None, "call")
    assert _refused_skip(passed) is None
    monkeypatch.delenv("HARNESS_REQUIRE_ALL")
    assert _refused_skip(_skipped("could not import 'xllamacpp'")) is None  # on a laptop: a skip
