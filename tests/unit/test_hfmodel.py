"""Model directories for dummy-weight runs: config from the catalog, a tokenizer with exactly `vocab` ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.catalog import get_model
from harness.hfmodel import (
    ALPHABET,
    BOS_ID,
    SPECIALS,
    HfModelError,
    catalog_model_dir,
    hf_config,
    tokenizer_json,
    vocab_pieces,
)

tokenizers = pytest.importorskip("tokenizers")


def test_vocab_sizes_are_exact_and_pieces_unique() -> None:
    base = len(SPECIALS) + len(ALPHABET)
    assert base == 3 + 97  # printable ASCII, tab, newline
    for size in (base, 2048, 32000, 128256, 262144):
        pieces = vocab_pieces(size)
        assert len(pieces) == size == len(set(pieces))
    with pytest.raises(HfModelError, match="smaller than"):
        vocab_pieces(50)


def test_every_id_decodes_to_printable_text(tmp_path: Path) -> None:
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(tokenizer_json(2048)))
    tok = tokenizers.Tokenizer.from_file(str(p))
    assert tok.get_vocab_size() == 2048
    for i in range(len(SPECIALS), 2048):
        text = tok.decode([i])
        assert text and all(c in ALPHABET for c in text), (i, text)


def test_round_trip_bos_and_merges(tmp_path: Path) -> None:
    p = tmp_path / "tokenizer.json"
    p.write_text(json.dumps(tokenizer_json(128256)))
    tok = tokenizers.Tokenizer.from_file(str(p))
    text = "The quick brown fox\njumps over the lazy dog."
    enc = tok.encode(text)
    assert enc.ids[0] == BOS_ID
    assert tok.decode(enc.ids) == text  # BOS is skipped, nothing else is lost
    # pairs and triples merge: far fewer tokens than characters
    assert len(enc.ids) - 1 < len(text) / 2
    assert tok.encode(text, add_special_tokens=False).ids[0] != BOS_ID


def test_config_fields_come_from_the_catalog() -> None:
    arch = get_model("llama-3.1-8b")
    cfg = hf_config(arch, "bf16")
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (32, 4096, 14336)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (32, 8, 128)
    assert cfg["vocab_size"] == 128256 and cfg["rope_scaling"]["rope_type"] == "llama3"
    assert cfg["torch_dtype"] == "bfloat16" and "quantization_config" not in cfg
    assert hf_config(arch, "fp16")["torch_dtype"] == "float16"
    assert hf_config(get_model("mistral-7b"))["sliding_window"] == 4096


def test_catalog_dir_is_cached_per_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    a = catalog_model_dir("tiny-llama", "bf16")
    assert sorted(f.name for f in a.iterdir()) == [
        "config.json",
        "generation_config.json",
        "special_tokens_map.json",
        "tokenizer",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    tok = a / "tokenizer"  # the tokenizer again, where transformers keeps the class it names (see vllm.md)
    assert sorted(f.name for f in tok.iterdir()) == [
        "config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert json.loads((tok / "config.json").read_text()) == {"model_type": "llama"}
    assert (tok / "tokenizer.json").read_text() == (a / "tokenizer.json").read_text()
    mtime = (a / "tokenizer.json").stat().st_mtime_ns
    assert catalog_model_dir("tiny-llama", "bf16") == a and (a / "tokenizer.json").stat().st_mtime_ns == mtime
    b = catalog_model_dir("tiny-llama", "int8")
    assert b != a and "quantization_config" in json.loads((b / "config.json").read_text())
    with pytest.raises(HfModelError, match="pre-quantized checkpoint"):
        catalog_model_dir("tiny-llama", "awq")
