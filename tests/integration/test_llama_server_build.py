"""A real llama-server built from a tree without git metadata says `b0-unknown` whatever its code: the
manifest's `build` entry (digests of its executable and the libraries of its build it loaded) tells two
such builds apart, a backend opened at run time (`libggml-cpu.so`) included."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.engines.identity import file_sha256
from harness.engines.llamacpp import LlamaCppServer
from harness.scenario import LlamaCppEngine

from .conftest import SMALL_MODEL, llama_server_binary

pytestmark = pytest.mark.slow


def _described(binary: Path, log: Path) -> dict[str, Any]:
    cfg = LlamaCppEngine.model_validate(
        {
            "type": "llamacpp",
            "launcher": "llama-server",
            "binary": str(binary),
            "model": SMALL_MODEL,
            "parallel": 1,
            "threads": 2,
        }
    )
    server = LlamaCppServer(cfg, log)
    try:
        server.start()
        return server.describe()
    finally:
        server.stop()


def test_two_builds_of_one_version_have_other_digests(tmp_path: Path) -> None:
    exe = llama_server_binary()
    if exe is None:
        pytest.skip("no llama-server binary (scripts/gpu_bench.sh build; set HARNESS_LLAMA_SERVER)")
    built = Path(exe).resolve().parent
    if not (built / "libggml-cpu.so").exists():
        pytest.skip("a build without run-time backends (GGML_BACKEND_DL off)")
    # a copy of the executable with another CPU backend beside it (ggml opens its backends from the
    # executable's directory; the linked libraries still come from the build through its RUNPATH)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(built / "llama-server", other / "llama-server")
    backend = other / "libggml-cpu.so"
    backend.write_bytes((built / "libggml-cpu.so").read_bytes() + b"\0")

    first = _described(built / "llama-server", tmp_path / "a.log")
    second = _described(other / "llama-server", tmp_path / "b.log")
    assert first["version"] == second["version"] == "llama-server b0-unknown"
    a, b = first["build"], second["build"]
    assert a["from"] == b["from"] == "loaded"
    assert a["path"] == str(built / "llama-server") and b["path"] == str(other / "llama-server")
    # the executable and its build's libraries, none of the system's (libc, libstdc++, libgomp)
    assert {"llama-server", "libggml-cpu.so"} <= set(a["files"])
    assert {n.split(".so")[0] for n in a["files"]} >= {"libllama", "libggml-base", "libllama-server-impl"}
    assert not any(name.startswith(("libc.", "libstdc++", "libgomp", "libm.")) for name in a["files"])
    assert a["files"]["libggml-cpu.so"] == file_sha256(str(built / "libggml-cpu.so"))
    assert b["files"]["libggml-cpu.so"] == file_sha256(str(backend))
    assert {k: v for k, v in a["files"].items() if k != "libggml-cpu.so"} == {
        k: v for k, v in b["files"].items() if k != "libggml-cpu.so"
    }
    assert a["sha256"] != b["sha256"]
    assert _described(built / "llama-server", tmp_path / "c.log")["build"]["sha256"] == a["sha256"]
