from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.engines.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
HARNESS = [sys.executable, "-m", "harness"]  # the command line, as tests start it


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


@pytest.fixture(scope="session", autouse=True)
def _harness_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep generated models out of the user's cache unless HARNESS_CACHE is set."""
    if "HARNESS_CACHE" not in os.environ:
        os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.models import make_gguf

    return make_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", dtype="f16")
