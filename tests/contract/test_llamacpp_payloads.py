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


def test_metrics_payload_gives_the_counter_compared_with_the_client() -> None:
    """llama.cpp's `llamacpp:` names, cleaned as the harness keeps them; the generated-token counter is
    what server_comparison sets against the client's count (12 tokens in the recorded streams)."""
    from harness.server_view import server_comparison
    from harness.telemetry.prometheus import parse_metrics, window_columns

    snap = parse_metrics((PAYLOADS / "llamacpp_metrics.txt").read_text())
    assert snap["llamacpp_tokens_predicted_total"] == ("counter", 12.0)
    assert snap["llamacpp_predicted_tokens_seconds"][0] == "gauge"
    # the largest sequence seen is typed a counter, but is a high-water mark: its value, not its rise
    assert snap["llamacpp_n_tokens_max"] == ("gauge", 27.0) and "llamacpp_n_tokens_max_total" not in snap
    before = {**snap, "llamacpp_n_tokens_max": ("gauge", 20.0)}
    cols = window_columns(before, snap, [])
    assert (cols["server_llamacpp_n_tokens_max"], cols["server_llamacpp_n_tokens_max_max"]) == (27.0, 27.0)
    assert not any(k.startswith("server_llamacpp_n_tokens_max_total") for k in cols)
    row = {"output_tokens": 12, "server_llamacpp_tokens_predicted_total_delta": 12.0}
    assert server_comparison(row) == {"server_output_tokens": 12, "server_output_tokens_diff": 0}
    # its prompt counter leaves out the tokens taken from its cache, counted beside it: the two together
    # are the prompt tokens the client's usage says (without the cached one, a build is not compared)
    assert snap["llamacpp_prompt_tokens_total"] == ("counter", 31.0)
    prompts = {"input_tokens": 40, "server_llamacpp_prompt_tokens_total_delta": 31.0}
    assert "server_input_tokens" not in server_comparison(prompts)
    prompts["server_llamacpp_prompt_tokens_cached_total_delta"] = 9.0
    assert server_comparison(prompts) == {"server_input_tokens": 40, "server_input_tokens_diff": 0}
    assert all(type(v) is int for v in server_comparison(prompts).values())  # counts, not 40.0 in the tables
    # a measured request failed (cut, timed out, cancelled): the engine counted its tokens, the client's
    # total has the successful ones only, so no diff is made (it read -806 after a Ctrl-C)
    assert server_comparison({**row, "output_tokens": 4, "errors": 1}) == {"server_output_tokens": 12}
