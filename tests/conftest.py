from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _harness_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep generated models out of the user's cache unless HARNESS_CACHE is set."""
    if "HARNESS_CACHE" not in os.environ:
        os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("harness-cache"))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.models import make_gguf

    return make_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", dtype="f16")
