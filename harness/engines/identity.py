"""What identifies the engine that served a run: its version where an endpoint says it (`version_routes`),
and for a locally built engine, sha256 digests of its executable and of the shared libraries of its own
build that it loaded (`build_digest`). llama.cpp built from a tree without git metadata says `build 0, commit
unknown` (its /props: `b0-unknown`) whatever its code, so two such builds look alike by version alone.

Which files count: the executable, and each shared library the running process mapped (Linux's
/proc/PID/maps: those it linked, and those it opened later, such as ggml's backends `libggml-cpu*.so`,
`libggml-cuda.so`) that lies in the executable's own directory, where a build tree puts them and its
RUNPATH finds them, or that is llama.cpp's own by name (`libggml*`, `libllama*`, `libmtmd*`) wherever it
was found. The system's libraries (libc, libstdc++, libgomp, CUDA's runtime) are not: they belong to the
machine, which the manifest's host and hardware describe. Without /proc (macOS) the executable's directory
stands in: llama.cpp's own libraries there. sha256 reads about 1 GB/s on one core (100 MiB in 0.1 s
measured), once per file and modification time in a process.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx

OWN_LIBRARIES = ("libggml", "libllama", "libmtmd")
_SHARED_LIBRARY = re.compile(r"\.(?:so(?:\.\d+)*|dylib|dll)$")
_DELETED = " (deleted)"  # /proc/PID/maps' mark of a file replaced or removed since it was mapped

_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 hex


def mapped_files(pid: int) -> list[str] | None:
    """The files process `pid` has mapped, in the order first mapped (its executable, its libraries, its
    model file), as /proc/PID/maps names them (a replaced file ends with ` (deleted)`); None without
    /proc or once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return None
    out: dict[str, None] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            out.setdefault(parts[5])
    return list(out)


def is_build_library(path: str, home: Path) -> bool:
    """Whether the mapped file `path` is a shared library of the engine's build: in its executable's
    directory `home`, or named as llama.cpp's own (libggml-cuda.so, libllama.so.0)."""
    name = Path(path.removesuffix(_DELETED)).name
    if not _SHARED_LIBRARY.search(name):
        return False
    return Path(path).parent == home or name.startswith(OWN_LIBRARIES)


def build_files(exe: str, mapped: list[str] | None) -> list[str]:
    """The executable `exe` (a resolved path) and the files of its build: the libraries `mapped` that
    `is_build_library`, or without a process's map, llama.cpp's own libraries beside it."""
    home = Path(exe.removesuffix(_DELETED)).parent
    if mapped is None:
        beside = sorted(str(p.resolve()) for p in home.iterdir() if p.name.startswith(OWN_LIBRARIES))
        mapped = [p for p in dict.fromkeys(beside) if _SHARED_LIBRARY.search(p)]
    return [exe, *(p for p in mapped if p != exe and is_build_library(p, home))]


def file_sha256(path: str) -> str | None:
    """sha256 of a file as hex, reused while its size and modification time stay; None where it is gone
    (replaced since the process mapped it) or unreadable."""
    if path.endswith(_DELETED):
        return None
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _digests:
            with open(path, "rb") as f:
                _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _digests[key]
    except OSError:
        return None


def combined_sha256(files: dict[str, str | None]) -> str | None:
    """One digest of a build: sha256 over `DIGEST  NAME` lines sorted by name (as sha256sum writes them);
    None where a file could not be read, as the build is then not known."""
    if not files or any(d is None for d in files.values()):
        return None
    lines = "".join(f"{files[n]}  {n}\n" for n in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def build_digest(argv0: str, pid: int | None) -> dict[str, Any] | None:
    """The `build` entry of an engine's manifest entry: `sha256` (`combined_sha256`), `files` (each one's
    sha256 by file name, its path where two share a name; null where unreadable), `bytes` (their sizes
    summed), `path` (the executable), `from` (`loaded`: the files the process `pid` mapped; `directory`:
    the executable's directory, without /proc). None where the executable is not found."""
    mapped = mapped_files(pid) if pid else None
    exe: str | None = None
    if mapped is not None:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            mapped = None
    if exe is None:
        found = shutil.which(argv0)
        if found is None:
            return None
        exe = str(Path(found).resolve())
    try:
        paths = build_files(exe, mapped)
    except OSError:  # the directory is gone
        paths = [exe]
    files: dict[str, str | None] = {}
    size = 0
    for p in paths:
        name = Path(p.removesuffix(_DELETED)).name
        files[p if name in files else name] = file_sha256(p)
        try:
            size += os.stat(p).st_size
        except OSError:
            pass
    return {
        "sha256": combined_sha256(files),
        "files": dict(sorted(files.items())),
        "bytes": size,
        "path": exe.removesuffix(_DELETED),
        "from": "loaded" if mapped is not None else "directory",
    }


# the routes that say an engine's version, and the name the manifest gives it by: vLLM's GET /version
# ({"version": "0.32.0"}) and llama-server's GET /props (its `build_info`, `b<build number>-<commit>`)
VERSION_ROUTES = {
    "vllm": ("/version", "version", "vllm"),
    "llamacpp": ("/props", "build_info", "llama-server"),
}
VERSION_TIMEOUT_S = 3.0


def version_routes(owner: str | None, declared: str | None) -> list[tuple[str, str, str | None]]:
    """Where to ask an endpoint its engine's version, as (route, field, engine name): the route of the
    engine its /models names as owner, else of the one the scenario declares (`served_by`), else both,
    where only llama-server's field (`build_info`) names the engine: a bare `version` field does not."""
    for engine in (owner, declared):
        if engine in VERSION_ROUTES:
            return [VERSION_ROUTES[engine]]
    route, field, _ = VERSION_ROUTES["vllm"]
    return [(route, field, None), VERSION_ROUTES["llamacpp"]]


def version_in(r: httpx.Response, field: str) -> str | None:
    """The text of `field` in a 200 JSON object answer; None for any other answer."""
    if r.status_code != 200:
        return None
    try:
        data = r.json()
    except ValueError:
        return None
    v = data.get(field) if isinstance(data, dict) else None
    return v.strip() if isinstance(v, str) and v.strip() else None
