from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.engines.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]  # the command line, as tests start it


def start_harness(*args: str, own_group: bool = False) -> subprocess.Popen[str]:
    """`harness ARGS` started in a child process from the repository root, its output piped (`own_group`:
    leading a process group of its own, as a shell starts a command, so that a terminal's Ctrl-C can be
    sent to the whole group)."""
    return subprocess.Popen(
        [*HARNESS, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0 if own_group else None,
    )


def run_harness(
    *args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`harness ARGS` in a child process, from the repository root unless `cwd` says otherwise; `env`
    sets variables, or unsets those given as None."""
    e = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return subprocess.run(
        [*HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=e, timeout=timeout, check=False
    )


def start_fake_server(log: Path, ttft_ms: float, itl_ms: float, *flags: str) -> tuple[ManagedProcess, str]:
    """`harness serve-fake` in a process of its own (no GIL shared with a client under test), once it
    answers its health check: (the process, its base URL). The caller stops it."""
    port = free_port()
    argv = [*HARNESS, "serve-fake", "--port", str(port), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
    proc = ManagedProcess([*argv, *flags], log)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_healthy(url + "/health", 30)
    except BaseException:
        proc.stop()
        raise
    return proc, url


# skips that stay skips under HARNESS_REQUIRE_ALL=1 (CI): what needs a GPU or traces recorded on one, a
# host too busy for a millisecond timing check at that moment, and a machine without a second address
ALLOWED_SKIPS = (
    "no NVIDIA GPU visible to NVML",
    "no NVML trace recorded on a real GPU is committed",
    "host too busy for a",
    "no non-loopback IPv4 address",
)


def _refused_skip(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """Why a skip is a failure here: with HARNESS_REQUIRE_ALL=1 a test that could not run for a missing
    package or tool (an importorskip, a missing binary) must not pass as skipped."""
    if os.environ.get("HARNESS_REQUIRE_ALL") != "1" or not report.skipped or hasattr(report, "wasxfail"):
        return None
    lr = report.longrepr
    reason = str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    return None if any(a in reason for a in ALLOWED_SKIPS) else reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if (why := _refused_skip(rep)) is not None:
        rep.outcome, rep.longrepr = "failed", f"skipped, but HARNESS_REQUIRE_ALL=1: {why}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if (why := _refused_skip(rep)) is not None:  # a module-level importorskip
        rep.outcome, rep.longrepr = "failed", f"skipped, but HARNESS_REQUIRE_ALL=1: {why}"


@pytest.fixture(scope="session", autouse=True)
def _harness_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep generated models out of the user's cache unless HARNESS_CACHE is set."""
    if "HARNESS_CACHE" not in os.environ:
        os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.models import make_gguf

    return make_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", dtype="f16")
