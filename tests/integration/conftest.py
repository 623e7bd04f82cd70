from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ..conftest import run_harness

# a random-weight llama that builds in a second and decodes in milliseconds on a CPU
SMALL_MODEL = {"source": "synthetic", "layers": 2, "hidden": 256, "heads": 4, "kv_heads": 4, "ffn": 512}
SMALL_MODEL["vocab"] = 1000


@pytest.fixture
def write_scenario(tmp_path: Path):
    def write(data: dict, name: str = "scenario.yaml") -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    return write


harness_cli = run_harness


def run_dir_from(stderr: str) -> Path:
    """The run directory `harness run` announced on stderr."""
    for line in stderr.splitlines():
        if line.startswith("run directory: "):
            return Path(line.split(": ", 1)[1].strip())
    raise AssertionError(f"no run directory in output:\n{stderr}")


def llama_server_binary() -> str | None:
    """The llama-server that `scripts/gpu_bench.sh build` made (llama-bench beside it), named by
    HARNESS_LLAMA_SERVER; None without one, a failure where HARNESS_REQUIRE_LLAMA_SERVER=1 (CI)."""
    exe = os.environ.get("HARNESS_LLAMA_SERVER")
    if exe and Path(exe).is_file():
        return exe
    if os.environ.get("HARNESS_REQUIRE_LLAMA_SERVER") == "1":
        pytest.fail("HARNESS_REQUIRE_LLAMA_SERVER=1 but HARNESS_LLAMA_SERVER names no llama-server binary")
    return None
