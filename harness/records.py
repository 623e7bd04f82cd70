"""One record per request: raw integer perf_counter_ns stamps and what the server reported.

Everything else (TTFT, TPOT, throughput, ...) is derived from these by pure functions in
`harness.metrics`. Records are written to `requests.jsonl` as they complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# error kinds (a request that did not complete normally)
ERROR_KINDS = ("http", "connect", "timeout", "protocol", "disconnected", "cancelled", "empty")


@dataclass
class RequestRecord:
    """Timing and accounting of one streamed request.

    Stamps are `time.perf_counter_ns()` integers taken in the client process that sent the request (the
    harness, or one of its `load.workers` processes: one clock on Linux):
    `scheduled_ns` when the load generator intended to send it (open loop) or picked it up (closed loop),
    `sent_ns` just before the HTTP request was written, `first_token_ns` at the first chunk carrying
    content, `chunk_ns` at every content chunk (first included), `done_ns` when the stream ended.
    `connect_s`: the seconds spent opening the new connection the request went on (TCP, and TLS for https),
    up to the connection's being made (the client loop's delay in going on from there is not in it), before
    `sent_ns`; None where it went on an open keep-alive connection.
    `warmup` marks a request outside the measured window (warmup before it or cooldown after it);
    `cooldown` the ones after it (cooldown requests, and measured ones sent unmeasured past `duration_s`).
    """

    request_id: int
    point_id: str
    scheduled_ns: int
    sent_ns: int = 0
    first_token_ns: int | None = None
    done_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    expected_output_tokens: int | None = None
    expected_input_tokens: int | None = None
    asked_input_tokens: int | None = None  # the workload's length for a synthetic prompt (exact or not)
    cached_prompt_tokens: int | None = None  # prompt tokens the engine took from its prompt cache
    # usage's completion_tokens_details.reasoning_tokens (within output_tokens), where the server gives it
    reasoning_tokens: int | None = None
    reasoning_streamed: bool = False  # a reasoning delta (reasoning_content / reasoning) came in the stream
    finish_reason: str | None = None
    server_timings: dict[str, Any] | None = None
    status_code: int | None = None
    error_kind: str | None = None
    error: str | None = None
    warmup: bool = False
    cooldown: bool = (
        False  # of the `warmup` ones, those after the measured requests (records of older runs lack it)
    )
    attempt: int = 0  # 0: first run of the point; n: its n-th `--resume`
    output_text_chars: int = 0
    output_tokens_source: str | None = None  # usage | max_tokens (finish_reason length) | tokenizer | chunks
    output_text: str | None = None  # the streamed text, when the run keeps it (to count its tokens)
    output_text_tokens: int | None = None  # tokenizer count of output_text (filled after the point)
    # usage | prompt_fit (no usage in the stream: the server's own count of the prompt as it was built)
    prompt_tokens_source: str | None = None
    connect_s: float | None = None  # see the class docstring

    @property
    def ok(self) -> bool:
        return self.error_kind is None and self.done_ns is not None

    def set_status(self, status: int) -> None:
        """The response's HTTP status, as soon as its head is in (a stream that then times out keeps it)."""
        self.status_code = status

    def to_json(self) -> dict[str, Any]:
        """The fields as they are, lists shared, not copied: `dataclasses.asdict` deep-copied every stamp
        of `chunk_ns` on the event loop (22 ms for a 32k-token stream, against 3 ms to write it)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RequestRecord:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
