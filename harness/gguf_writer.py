"""Random-weight llama GGUFs, written with the `gguf` package (`make_gguf`).

A SentencePiece-style vocabulary with the 256 byte tokens, F32/F16/Q8_0 weights, and an output layer
biased away from EOS, control and byte tokens and from pieces that would re-tokenize differently, so
every generation runs to `max_tokens` with one printable word piece per token, and the streamed text
tokenizes back to exactly the tokens generated (what a throughput test needs; the text itself is
meaningless). Weights are windows of one random pool, so a model of Llama-3.1-8B's size is written in
about a minute.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import numpy as np

from harness.model_errors import ModelError

# of make_gguf's output: 2 scales weights by fan-in (1 let forbidden tokens through); 3 keeps stream-safe
# pieces in vocabularies too small for every piece
GENERATOR_VERSION = 3


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
    want = size - len(tokens)
    seen = dict.fromkeys(pieces)
    n = 0
    while len(seen) < want:
        a, b = string.ascii_lowercase[n % 26], string.ascii_lowercase[(n // 26) % 26]
        seen.setdefault(f"\u2581{b}{a}{n // 676 or ''}")
        n += 1
    uniq = list(seen)
    if want < len(uniq):
        # too small for every piece: the single-letter word starts first, the pieces a model can emit
        # that re-tokenize to themselves (`stream_safe`); without them every token would be as likely
        # as the byte and control tokens
        first = ["\u2581" + c for c in string.ascii_lowercase]
        uniq = (first + [p for p in uniq if p not in first])[:want]
    tokens += uniq
    types += [gguf.TokenType.NORMAL] * len(uniq)
    scores = [0.0] * 259 + [-float(i) / 10 for i in range(len(uniq))]
    return tokens, scores, [int(t) for t in types]


def stream_safe(tokens: list[str]) -> np.ndarray:
    """Mask of the pieces a model may emit so that re-tokenizing the streamed text gives them back.

    A piece qualifies when it starts a word ("\u2581...") and every prefix of it is a piece too: the
    tokenizer's merges then rebuild it one character at a time, and nothing merges across words.
    """
    vocab = set(tokens)
    return np.array(
        [
            t.startswith("\u2581") and len(t) > 1 and all(t[:i] in vocab for i in range(2, len(t)))
            for t in tokens
        ]
    )


# Weights are windows of one random pool: a prime length, so windows at random offsets never line up,
# and generating a 16 GB Llama-3.1-8B-size model costs memory copies, not 8e9 random draws.
_POOL_BLOCKS = 32_749  # Q8_0 blocks of 32 values: 1,047,968 values in the pool
_Q8 = 32


class _Weights:
    """Deterministic pseudo-random tensors (from `seed`) in F32, F16 or Q8_0 bytes."""

    def __init__(self, dtype: str, seed: int) -> None:
        import gguf

        self.gguf = gguf
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.standard_normal(_POOL_BLOCKS * _Q8, dtype=np.float32)
        self._pools: dict[float, np.ndarray] = {}

    def _scaled(self, scale: float) -> np.ndarray:
        """The pool at `scale`, in the file's type (Q8_0: one row of 34 bytes per block)."""
        if scale not in self._pools:
            v = self.pool * np.float32(scale)
            if self.dtype == "f16":
                v = v.astype(np.float16)
            elif self.dtype == "q8_0":
                v = self._quantize(v.reshape(-1, _Q8))
            self._pools[scale] = v
        return self._pools[scale]

    def _quantize(self, a: np.ndarray) -> np.ndarray:
        return self.gguf.quants.quantize(a.astype(np.float32), self.gguf.GGMLQuantizationType.Q8_0)

    def _window(self, pool: np.ndarray, n: int) -> np.ndarray:
        start = int(self.rng.integers(len(pool)))
        return np.resize(np.concatenate((pool[start:], pool[:start])), (n, *pool.shape[1:]))

    def nbytes(self, rows: int, cols: int) -> int:
        per = {"f32": 4 * cols, "f16": 2 * cols}.get(self.dtype, cols // _Q8 * 34)
        return rows * per

    def matrix(
        self,
        rows: int,
        cols: int,
        scale: float,
        zero_row0: bool = False,
        col0: np.ndarray | np.floating[Any] | None = None,
    ) -> np.ndarray:
        """A (rows, cols) weight; row 0 zeroed and/or column 0 set to `col0` when asked."""
        pool = self._scaled(scale)
        if self.dtype != "q8_0":
            m = self._window(pool, rows * cols).reshape(rows, cols)
            if col0 is not None:
                m[:, 0] = col0
        else:
            m = self._window(pool, rows * cols // _Q8).reshape(rows, cols // _Q8 * 34)
            if col0 is not None:  # re-quantize the first block of every row around the new column 0
                first = self._window(self.pool * np.float32(scale), rows * _Q8).reshape(rows, _Q8)
                first[:, 0] = col0
                m[:, :34] = self._quantize(first)
        if zero_row0:
            m[0, :] = 0  # Q8_0 too: a zero scale and zero quants
        return m


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
    """Write a random-weight llama GGUF to `path` (atomically, one tensor at a time) and return it."""
    import gguf

    from harness.scenario.sources import synthetic_shape_problems

    if problems := synthetic_shape_problems(hidden, heads, kv_heads, ffn, dtype):
        raise ModelError("; ".join(problems))
    wt = _Weights(dtype, seed)
    tokens, scores, types = _vocab(vocab)
    n_vocab = len(tokens)
    head_dim = hidden // heads
    kv = kv_heads * head_dim
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.part{os.getpid()}")
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
    # streamed text starts with its own space (" word"): no second, implicit one, so that re-tokenizing
    # the streamed text gives back exactly the generated tokens
    w.add_add_space_prefix(False)

    # Residual dimension 0 carries a constant: embeddings set it, no block writes to it (row 0 of the
    # output projections is zero), so the output layer can push forbidden tokens (unk, control,
    # bytes, pieces that would not survive re-tokenizing) far down through its column 0. Weights are
    # scaled by 1/sqrt(fan-in), so the residual stays near unit size at any width and depth (a block
    # adds ~0.2 per dimension) and the other logits vary by ~1: the -50 on column 0, times dimension
    # 0's normalized value (~5 at Llama-3.1-8B's shape), stays hundreds of logits below them.
    head_col0 = np.where(stream_safe(tokens), 0.0, -50.0).astype(np.float32)
    ones = np.ones(hidden, dtype=np.float32)
    s_in, s_out, s_ffn = hidden**-0.5, 0.2 * hidden**-0.5, 0.2 * ffn**-0.5
    plan: list[tuple[str, tuple[int, ...], Any]] = [
        ("token_embd.weight", (n_vocab, hidden), lambda: wt.matrix(n_vocab, hidden, 0.5, col0=np.float32(8))),
    ]
    for i in range(layers):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (hidden,), lambda: ones),
            (b + "attn_q.weight", (hidden, hidden), lambda: wt.matrix(hidden, hidden, s_in)),
            (b + "attn_k.weight", (kv, hidden), lambda: wt.matrix(kv, hidden, s_in)),
            (b + "attn_v.weight", (kv, hidden), lambda: wt.matrix(kv, hidden, s_in)),
            (b + "attn_output.weight", (hidden, hidden), lambda: wt.matrix(hidden, hidden, s_out, True)),
            (b + "ffn_norm.weight", (hidden,), lambda: ones),
            (b + "ffn_gate.weight", (ffn, hidden), lambda: wt.matrix(ffn, hidden, s_in)),
            (b + "ffn_up.weight", (ffn, hidden), lambda: wt.matrix(ffn, hidden, s_in)),
            (b + "ffn_down.weight", (hidden, ffn), lambda: wt.matrix(hidden, ffn, s_ffn, True)),
        ]
    plan += [
        ("output_norm.weight", (hidden,), lambda: ones),
        ("output.weight", (n_vocab, hidden), lambda: wt.matrix(n_vocab, hidden, s_in, col0=head_col0)),
    ]
    raw = {"f32": None, "f16": None}.get(dtype, gguf.GGMLQuantizationType.Q8_0)
    np_dtype = {"f32": np.float32, "f16": np.float16}.get(dtype, np.uint8)
    for name, shape, _ in plan:
        if len(shape) == 1:
            w.add_tensor_info(name, shape, np.dtype(np.float32), 4 * shape[0])
            continue
        rows, cols = shape
        byte_shape = (rows, cols // _Q8 * 34) if raw is not None else shape
        w.add_tensor_info(name, byte_shape, np.dtype(np_dtype), wt.nbytes(rows, cols), raw_dtype=raw)
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for _, _, make in plan:
            w.write_tensor_data(make())
        w.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a disk that filled, Ctrl-C: no half-written model left behind
    return path
