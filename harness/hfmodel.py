"""Hugging Face model directories written locally from the model catalog, for dummy-weight engine runs.

vLLM's `--load-format dummy` fills the weights with random values; what it still needs from disk is the
model's `config.json` (the architecture: what sets bytes moved per step, KV cache size and FLOPs) and a
tokenizer. The catalog has the config fields (with their source); the tokenizer is made here, because the
real ones live on a model hub this tool never calls:

- a BPE over printable ASCII (plus tab and newline) whose vocabulary has exactly the model's `vocab` ids:
  3 special tokens (`<unk>` 0, `<s>` 1, `</s>` 2), the characters, then merges of pairs and triples of
  characters, most frequent English letters first, until the vocabulary is full;
- every id decodes to printable text, so random weights that pick any id still stream one content chunk
  per token (no partial UTF-8 held back by the detokenizer);
- BOS is added to every prompt (as Llama does); a small chat template makes the chat API usable.

`precision: int8` adds a compressed-tensors W8A8 `quantization_config` (int8 weights per channel, int8
activations per token, dynamic; `lm_head` left out), which is how int8 checkpoints made by llm-compressor
describe themselves; vLLM then builds its int8 kernels and the dummy loader fills them like any weight.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from harness.catalog import ModelArch, get_model
from harness.models import cache_dir, writing_into_cache
from harness.scenario import DUMMY_PRECISIONS

SPECIALS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
# printable ASCII in rough English frequency order (so common pairs get the low ids), then the rest
_FREQ = " etaoinshrdlcumwfgypbvkjxqz"
ALPHABET = "".join(dict.fromkeys(_FREQ + _FREQ[1:].upper() + "".join(map(chr, range(32, 127))) + "\n\t"))
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
FORMAT_VERSION = 2  # bump when the files written here change, so cached directories are rebuilt
TOKENIZER_DIR = "tokenizer"  # the tokenizer files again, for vLLM's --tokenizer (see write_model_dir)

W8A8_CONFIG: dict[str, Any] = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "quantization_status": "compressed",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {
                "num_bits": 8,
                "type": "int",
                "symmetric": True,
                "strategy": "channel",
                "dynamic": False,
            },
            "input_activations": {
                "num_bits": 8,
                "type": "int",
                "symmetric": True,
                "strategy": "token",
                "dynamic": True,
            },
        }
    },
    "ignore": ["lm_head"],
}


class HfModelError(Exception):
    """A catalog model that cannot be written as a model directory; message is for the user."""


def vocab_pieces(size: int) -> list[str]:
    """The `size` token strings, by id: specials, characters, then character pairs and triples."""
    base = len(SPECIALS) + len(ALPHABET)
    if size < base:
        raise HfModelError(f"vocab {size} is smaller than the {base} base tokens of the generated tokenizer")
    pieces = [*SPECIALS, *ALPHABET]
    need = size - len(pieces)
    pairs = [a + b for a in ALPHABET for b in ALPHABET]
    pieces += pairs[:need]
    need = size - len(pieces)
    if need > 0:
        max_triples = len(pairs) * len(ALPHABET)
        if need > max_triples:
            raise HfModelError(f"vocab {size} is larger than this tokenizer can fill")
        out = []
        for ab in pairs:
            for c in ALPHABET:
                out.append(ab + c)
                if len(out) == need:
                    break
            if len(out) == need:
                break
        pieces += out
    return pieces


def tokenizer_json(size: int) -> dict[str, Any]:
    """A `tokenizers` BPE tokenizer (tokenizer.json contents) with exactly `size` ids."""
    pieces = vocab_pieces(size)
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [[p[:-1], p[-1]] for p in pieces[len(SPECIALS) + len(ALPHABET) :]]
    bos = SPECIALS[BOS_ID]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": s,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, s in enumerate(SPECIALS)
        ],
        "normalizer": None,
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [BOS_ID], "tokens": [bos]}},
        },
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": SPECIALS[UNK_ID],
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def hf_config(arch: ModelArch, precision: str = "auto") -> dict[str, Any]:
    """config.json for `arch` (the fields the catalog sourced from the published config)."""
    dtype = "float16" if precision == "fp16" else "bfloat16"
    cfg: dict[str, Any] = {
        "architectures": [arch.architecture],
        "model_type": arch.model_type,
        "hidden_size": arch.hidden,
        "intermediate_size": arch.intermediate,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab,
        "max_position_embeddings": arch.max_position,
        "rope_theta": arch.rope_theta,
        "rms_norm_eps": arch.rms_norm_eps,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "hidden_act": "gelu_pytorch_tanh" if arch.model_type.startswith("gemma") else "silu",
        "torch_dtype": dtype,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": None,
        "attention_bias": arch.model_type == "qwen2",
    }
    if arch.rope_scaling:
        cfg["rope_scaling"] = dict(arch.rope_scaling)
    if arch.sliding_window:
        cfg["sliding_window"] = arch.sliding_window
    if precision == "int8":
        cfg["quantization_config"] = W8A8_CONFIG
    return cfg


def tokenizer_config(arch: ModelArch) -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": SPECIALS[UNK_ID],
        "bos_token": SPECIALS[BOS_ID],
        "eos_token": SPECIALS[EOS_ID],
        "model_max_length": arch.max_position,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }


def write_model_dir(target: Path, arch: ModelArch, precision: str = "auto") -> Path:
    """Write config.json, generation_config.json and the tokenizer files into `target` (atomically).

    The tokenizer files also go into `tokenizer/`, with a config.json that says only `model_type: llama`:
    loaded from the model directory, transformers replaces the tokenizer class for some model types
    (qwen2: its own Qwen2Tokenizer, which rebuilds the pre-tokenizer and decoder, drops the spaces
    and adds a token beyond the vocabulary); from there it takes `PreTrainedTokenizerFast` as written.
    """
    if precision not in DUMMY_PRECISIONS:
        raise HfModelError(
            f"precision {precision!r} needs a pre-quantized checkpoint (model source: path); "
            f"dummy weights allow: {', '.join(DUMMY_PRECISIONS)}"
        )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": hf_config(arch, precision),
        "generation_config.json": {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID},
        "tokenizer.json": tokenizer_json(arch.vocab),
        "tokenizer_config.json": tokenizer_config(arch),
        "special_tokens_map.json": {
            "unk_token": SPECIALS[UNK_ID],
            "bos_token": SPECIALS[BOS_ID],
            "eos_token": SPECIALS[EOS_ID],
        },
    }
    tok = {k: files[k] for k in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")}
    for d, content in ((tmp, files), (tmp / TOKENIZER_DIR, {**tok, "config.json": {"model_type": "llama"}})):
        d.mkdir(exist_ok=True)
        for name, data in content.items():
            (d / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        os.replace(tmp, target)
    except OSError:  # another process wrote it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def catalog_model_dir(name: str, precision: str = "auto") -> Path:
    """Cached model directory for catalog model `name` at `precision` (written on first use)."""
    arch = get_model(name)
    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, arch.model_dump(), precision], sort_keys=True).encode()
    ).hexdigest()[:12]
    target = cache_dir() / "hf" / f"{name}-{precision}-{key}"
    if not (target / "config.json").is_file():
        with writing_into_cache(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_model_dir(target, arch, precision)
    return target
