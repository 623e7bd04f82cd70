"""What the synthetic server does for every request (`FakeScript`), and what it measured of its own
writes (`ServerStats`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeScript:
    """What the server does for every request."""

    ttft_s: float = 0.05
    itl_s: float | list[float] = 0.01
    default_max_tokens: int = 16
    prompt_tokens: int | None = None  # default: words in the prompt
    fail_every: int = 0  # every n-th request answers HTTP `fail_status` (0: never)
    fail_status: int = 500
    drop_after_tokens: int | None = None  # close the stream after this many tokens (no [DONE])
    bad_json_after_tokens: int | None = None  # send a malformed SSE event after this many tokens
    stall_after_tokens: int | None = None  # stop sending (connection kept open) after this many tokens
    # end the response cleanly after this many tokens with neither a finish_reason nor [DONE]: a server
    # (or a proxy) that stopped early without saying why
    end_after_tokens: int | None = None
    # /health answers only while no stream runs, as llama-cpp-python's /v1/models waits for the model
    # lock (a busy server whose health check says nothing of its health)
    health_waits_for_streams: bool = False
    # end the stream with a server error after this many tokens, as `error_as` says real servers do:
    # "data" — `data: {"error": {...}}` and no [DONE] (vLLM, llama.cpp since its server-http rewrite);
    # "field" — an `error: {...}` line, then `data: [DONE]` (earlier llama.cpp servers)
    error_after_tokens: int | None = None
    error_as: str = "data"
    include_usage: bool = True
    # the model ends its answer (EOS, finish_reason "stop") after this many tokens, unless the request
    # says ignore_eos, as vLLM and llama.cpp honour it
    stop_after_tokens: int | None = None
    api_key: str | None = None  # when set, the API routes want `Authorization: Bearer <api_key>`
    # where the API routes are: /v1/models, /v1/completions; a hosted API's own prefix (Gemini's
    # /v1beta/openai) tries the harness against such a base URL
    api_prefix: str = "/v1"
    # what /v1/models says owns the model, as vLLM (`vllm`), SGLang and llama-server name themselves there
    # (None: no owned_by field)
    owned_by: str | None = None
    # a keep-alive connection that served this many requests is closed when the next one arrives, before
    # any byte of an answer, as a server whose idle timeout ran out as the request came (0: never)
    close_after_requests: int = 0
    # answer POST /tokenize as vLLM does (`fake_tokenizer`: a word a token); without, it is not there
    tokenize: bool = False
    # False: /tokenize takes a prompt only (as SGLang's), and a chat's messages get HTTP 400
    tokenize_messages: bool = True
    # chat prompts are rendered in a ChatML template (`fake_tokenizer`), in their usage and /tokenize:
    # two tokens before a one-message chat's text, three after it; without, a chat is its contents' words
    chat_template: bool = False
    spin_streams: int = 16

    def gap_s(self, i: int) -> float:
        if isinstance(self.itl_s, list):
            return self.itl_s[i % len(self.itl_s)] if self.itl_s else 0.0
        return self.itl_s


@dataclass
class ServerStats:
    """Write lateness (actual write - deadline) of content chunks since the last reset."""

    requests: int = 0
    chunks: int = 0
    late_ns: list[int] = field(default_factory=list)
    # per streamed request, in arrival order: [arrived_ns, [write_ns of each content chunk]]
    traces: deque[list[Any]] = field(default_factory=lambda: deque(maxlen=4096))

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.late_ns)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1e9 if lat else None

        return {
            "requests": self.requests,
            "chunks": self.chunks,
            "write_late_s_p50": pct(50),
            "write_late_s_p99": pct(99),
            "write_late_s_max": lat[-1] / 1e9 if lat else None,
        }
