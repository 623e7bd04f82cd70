"""What tells engine builds apart: the digests of a process's executable and its build's libraries
(`harness.engines.identity`), and the versions external endpoints say."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.engines.identity import (
    build_digest,
    build_files,
    combined_sha256,
    mapped_files,
    version_in,
    version_routes,
)

LINUX = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")


def test_a_builds_files_are_its_executable_and_its_own_libraries() -> None:
    """The libraries beside the executable and llama.cpp's own wherever found; not the system's, not a
    model file, not a model beside the executable."""
    mapped = [
        "/b/bin/llama-server",
        "/b/bin/libllama-server-impl.so",
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30",
        "/opt/llama/lib/libllama.so.0.5.0",
        "/b/bin/libggml-cpu.so",
        "/usr/local/cuda/lib64/libcublas.so.12.4.5.8",
        "/models/m.gguf",
        "/b/bin/tiny.gguf",
        "/b/bin/libextra.so.1 (deleted)",
        "/b/bin/libggml-cuda.dylib",
    ]
    assert build_files("/b/bin/llama-server", mapped) == [
        "/b/bin/llama-server",
        "/b/bin/libllama-server-impl.so",
        "/opt/llama/lib/libllama.so.0.5.0",
        "/b/bin/libggml-cpu.so",
        "/b/bin/libextra.so.1 (deleted)",
        "/b/bin/libggml-cuda.dylib",
    ]


def test_the_combined_digest_is_sha256sums_lines_and_none_with_a_file_unread() -> None:
    lines = b"11  a\n22  b\n"  # sorted by name, as sha256sum writes them
    assert combined_sha256({"b": "22", "a": "11"}) == hashlib.sha256(lines).hexdigest()
    assert combined_sha256({"a": "11", "b": None}) is None
    assert combined_sha256({}) is None


def _system_library() -> Path:
    """A shared library of this machine that a python process can load a copy of (libm)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if Path(path).name.startswith("libm.so"):
            return Path(path)
    pytest.skip("no libm mapped")


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _loading(lib: Path, procs: list[subprocess.Popen[str]]) -> int:
    """A python process that opened `lib` after it started (as ggml opens its backends), alive."""
    code = f"import ctypes, sys, time; ctypes.CDLL({str(lib)!r}); print('up', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline() == "up\n"
    return p.pid


@LINUX
def test_two_builds_that_differ_in_a_library_opened_at_run_time_differ(
    tmp_path: Path, loader: list[subprocess.Popen[str]]
) -> None:
    """Two processes of one executable, each with its own copy of a backend library (one a byte longer):
    the executable and the library are hashed, the system's libraries not; the builds' digests differ,
    and the same files give the same digest."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, other = tmp_path / "a" / "libggml-test.so", tmp_path / "b" / "libggml-test.so"
    shutil.copyfile(_system_library(), one)
    other.write_bytes(one.read_bytes() + b"\0")
    exe = os.path.realpath(sys.executable)
    exe_sha = hashlib.sha256(Path(exe).read_bytes()).hexdigest()

    a = build_digest(sys.executable, _loading(one, loader))
    assert a is not None and a["from"] == "loaded" and a["path"] == exe
    assert a["files"] == {
        "libggml-test.so": hashlib.sha256(one.read_bytes()).hexdigest(),
        Path(exe).name: exe_sha,
    }
    assert a["bytes"] == one.stat().st_size + Path(exe).stat().st_size
    assert a["sha256"] == combined_sha256(a["files"])
    b = build_digest(sys.executable, _loading(other, loader))
    assert b is not None and b["files"]["libggml-test.so"] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert b["sha256"] != a["sha256"]
    again = build_digest(sys.executable, _loading(one, loader))
    assert again is not None and again["sha256"] == a["sha256"]


@LINUX
def test_a_library_replaced_since_it_was_loaded_leaves_the_build_unknown(
    tmp_path: Path, loader: list[subprocess.Popen[str]]
) -> None:
    """A rebuild while the server runs replaces the file it loaded: what is on disk is not what ran."""
    lib = tmp_path / "libggml-test.so"
    shutil.copyfile(_system_library(), lib)
    pid = _loading(lib, loader)
    lib.unlink()
    lib.write_bytes(b"rebuilt")
    assert f"{lib} (deleted)" in (mapped_files(pid) or [])
    d = build_digest(sys.executable, pid)
    assert d is not None and d["files"]["libggml-test.so"] is None and d["sha256"] is None


def test_without_a_process_the_libraries_beside_the_executable_stand_in(tmp_path: Path) -> None:
    exe = tmp_path / "llama-server"
    exe.write_bytes(b"exe")
    exe.chmod(0o755)
    (tmp_path / "libllama.so.0.5.0").write_bytes(b"lib")
    (tmp_path / "libllama.so.0").symlink_to("libllama.so.0.5.0")
    (tmp_path / "libllama-bench-impl.so").write_bytes(b"bench")
    (tmp_path / "model.gguf").write_bytes(b"weights")
    (tmp_path / "libother.so").write_bytes(b"not llama.cpp's")
    d = build_digest(str(exe), None)
    sha = {x: hashlib.sha256(x.encode()).hexdigest() for x in ("exe", "lib", "bench")}
    assert d == {
        "sha256": hashlib.sha256(
            f"{sha['bench']}  libllama-bench-impl.so\n{sha['lib']}  libllama.so.0.5.0\n"
            f"{sha['exe']}  llama-server\n".encode()
        ).hexdigest(),
        "files": {
            "libllama-bench-impl.so": sha["bench"],
            "libllama.so.0.5.0": sha["lib"],
            "llama-server": sha["exe"],
        },
        "bytes": 3 + 3 + 5,
        "path": str(exe.resolve()),
        "from": "directory",
    }
    assert build_digest(str(tmp_path / "absent"), None) is None


def test_the_version_route_follows_the_engine_named_owner_first() -> None:
    vllm = ("/version", "version", "vllm")
    llama = ("/props", "build_info", "llama-server")
    assert version_routes("vllm", None) == [vllm]
    assert version_routes("llamacpp", "vllm") == [llama]  # what the endpoint says over what was declared
    assert version_routes("openai", "llamacpp") == [llama]
    assert version_routes(None, "sglang") == [("/version", "version", None), llama]


def test_a_version_is_read_only_from_a_json_object_answer() -> None:
    assert version_in(httpx.Response(200, content=b'{"version":"0.32.0"}'), "version") == "0.32.0"
    assert version_in(httpx.Response(404, content=b'{"version":"0.32.0"}'), "version") is None
    assert version_in(httpx.Response(200, content=b"<html>ok</html>"), "version") is None
    assert version_in(httpx.Response(200, content=b'["0.32.0"]'), "version") is None
    assert version_in(httpx.Response(200, content=b'{"version": 3}'), "version") is None
    assert version_in(httpx.Response(200, content=b'{"build_info": " "}'), "build_info") is None
