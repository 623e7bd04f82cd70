from __future__ import annotations

import pytest

from harness.catalog import CatalogError, get_model, models


def test_every_entry_validates_and_has_a_source() -> None:
    ms = models()
    assert {"llama-3.1-8b", "llama-3.1-70b", "mistral-7b", "gemma-3-270m"} <= set(ms)
    for m in ms.values():
        assert m.source
        assert m.heads % m.kv_heads == 0, m.name


def test_llama_70b_kv_bytes_per_token_matches_reference() -> None:
    # 2 x 80 layers x 8 kv heads x 128 head dim x 2 bytes (bf16) = 327,680 B
    assert get_model("llama-3.1-70b").kv_bytes_per_token(2) == 327_680


def test_hidden_equals_heads_times_head_dim_for_llama_family() -> None:
    for name in ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mistral-7b"):
        m = get_model(name)
        assert m.hidden == m.heads * m.head_dim


def test_unknown_model_lists_allowed_names() -> None:
    with pytest.raises(CatalogError, match=r"allowed: .*llama-3\.1-70b"):
        get_model("llama-4")
