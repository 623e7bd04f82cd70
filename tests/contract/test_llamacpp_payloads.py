"""Parse SSE streams recorded from a real llama.cpp server (xllamacpp, Gemma-3-270M)."""

from __future__ import annotations

import json

from .sse import PAYLOADS, replay


def test_completion_stream_usage_timings_and_content_chunks() -> None:
    rec = replay("llamacpp_completions_stream.txt")
    assert rec.output_tokens == 4 and rec.prompt_tokens == 3
    assert rec.finish_reason == "length"
    assert rec.server_timings is not None and rec.server_timings["predicted_n"] == 4
    assert rec.server_timings["predicted_per_second"] > 0
    # the final chunk has empty text: it is not a content chunk
    assert len(rec.chunk_ns) == 4
    assert rec.first_token_ns == rec.chunk_ns[0]


def test_chat_stream_role_chunk_is_not_the_first_token() -> None:
    rec = replay("llamacpp_chat_stream.txt")
    lines = [
        json.loads(x[6:])
        for x in (PAYLOADS / "llamacpp_chat_stream.txt").read_text().splitlines()
        if x.startswith("data: {")
    ]
    assert lines[0]["choices"][0]["delta"]["content"] is None  # role-only chunk as recorded
    assert rec.first_token_ns == 20  # second chunk, not the role chunk at t=10
    assert rec.output_tokens is not None and rec.output_tokens == len(rec.chunk_ns)


def test_metrics_payload_parses_with_prometheus_client() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    fams = {
        f.name: f for f in text_string_to_metric_families((PAYLOADS / "llamacpp_metrics.txt").read_text())
    }
    assert "llamacpp:tokens_predicted" in fams or "llamacpp:tokens_predicted_total" in fams
