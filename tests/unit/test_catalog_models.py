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


def test_each_models_parameter_count_follows_from_its_shape() -> None:
    """Weights in bytes are params x bytes per parameter, so a wrong count moves every roofline of the
    model (tiny-llama's was 1.7x its shape's). Counted as a decoder of this family: embeddings (and an
    untied output layer), attention (Q, K, V, O), a gated MLP (gate, up, down) and the norms; biases and
    per-head norms are left out, so within 1 %."""
    from harness.catalog import models

    for key, m in models().items():
        attn = m.hidden * m.head_dim * (2 * m.heads + 2 * m.kv_heads)
        mlp = 3 * m.hidden * m.intermediate
        embed = m.vocab * m.hidden * (1 if m.tie_word_embeddings else 2)
        count = embed + m.layers * (attn + mlp + 2 * m.hidden) + m.hidden
        assert abs(count / (m.params_b * 1e9) - 1) < 0.01, (key, count, m.params_b)
