"""Async streaming client for OpenAI-compatible `/v1/completions` and `/v1/chat/completions`.

One `RequestRecord` per request. Errors are recorded on the record, never raised: a benchmark
must keep going and report how many requests failed and why.

Timing: the request bytes are built first (`prepare`), then `sent_ns` is stamped and the bytes
are written in one call; each SSE event carries the stamp of the network read that delivered it
(see `harness.client.http1`), and `done_ns` is the stamp of the read that ended the response.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from harness.client.http1 import Http1Pool, HttpError
from harness.client.sse import SseEvents
from harness.records import RequestRecord


@dataclass(frozen=True)
class RequestSpec:
    """What to send: prompt (text or chat messages) and how many tokens to ask for.

    `input_tokens` is the prompt length the server is expected to report as
    `usage.prompt_tokens` (see `harness.load.workload`), or None when unknown; `asked_input_tokens`
    the length the workload asked for (a synthetic prompt without a tokenizer only approximates it).
    """

    prompt: str
    max_tokens: int
    input_tokens: int | None = None
    asked_input_tokens: int | None = None


@dataclass
class StreamClient:
    """Sends streamed completions to `base_url` (e.g. http://127.0.0.1:8080) and times them; the API's
    routes are under `api_prefix` there (`/v1/completions`)."""

    base_url: str
    model: str
    api_prefix: str = "/v1"
    api: str = "completion"  # completion | chat
    temperature: float | None = 0.0  # None: not sent (the server's default)
    seed: int | None = None  # None: not sent
    max_tokens_field: str = "max_tokens"  # or max_completion_tokens (chat)
    timeout_s: float = 600.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    max_connections: int = 4096
    keep_text: bool = False
    # [perf_counter_ns of the last event any stream of this client received]: whether an engine whose
    # health check does not answer is still producing (read from another thread; one int store a chunk)
    heard_ns: list[int] = field(default_factory=lambda: [0])
    _pool: Http1Pool | None = None

    async def __aenter__(self) -> StreamClient:
        self._pool = Http1Pool(
            self.base_url, max_connections=self.max_connections, connect_timeout_s=min(30.0, self.timeout_s)
        )
        return self

    async def preconnect(self, n: int) -> int:
        """Open `n` keep-alive connections ahead (see `Http1Pool.preconnect`); how many are open."""
        return await self._pool.preconnect(n) if self._pool is not None else 0

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def body(self, spec: RequestSpec) -> dict[str, Any]:
        b: dict[str, Any] = {
            "model": self.model,
            self.max_tokens_field: spec.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.temperature is not None:
            b["temperature"] = self.temperature
        if self.seed is not None:
            b["seed"] = self.seed
        if self.api == "chat":
            b["messages"] = [{"role": "user", "content": spec.prompt}]
        else:
            b["prompt"] = spec.prompt
        b.update(self.extra_body)
        return b

    @property
    def path(self) -> str:
        return self.api_prefix + ("/chat/completions" if self.api == "chat" else "/completions")

    def prepare(self, spec: RequestSpec) -> bytes:
        """The complete HTTP request for `spec`, ready to write (build before the send stamp)."""
        pool = self._pool or Http1Pool(self.base_url)
        data = json.dumps(self.body(spec), separators=(",", ":")).encode()
        hdrs = {"Content-Type": "application/json", "Accept": "text/event-stream", **self.headers}
        return pool.build("POST", self.path, data, hdrs)

    async def send(self, rec: RequestRecord, spec: RequestSpec, raw: bytes | None = None) -> RequestRecord:
        """Stream one request, filling `rec` in place; returns it (also on error).

        `raw` is the output of `prepare(spec)` when the caller built it ahead of time.
        """
        rec.expected_output_tokens = spec.max_tokens
        rec.expected_input_tokens = spec.input_tokens
        rec.asked_input_tokens = spec.asked_input_tokens
        if self._pool is None:  # the point was stopped and the client closed: nothing is sent
            rec.error_kind, rec.error = "cancelled", "client closed (use `async with StreamClient(...)`)"
            rec.done_ns = time.perf_counter_ns()
            return rec
        if raw is None:
            raw = self.prepare(spec)
        decoder = StreamDecoder(rec, [] if self.keep_text else None, self.heard_ns)
        events = SseEvents(decoder)

        def on_send(connect_s: float | None) -> None:
            rec.sent_ns = time.perf_counter_ns()
            rec.connect_s = connect_s

        failed: tuple[str, str] | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                resp = await self._pool.request(raw, on_send, events.feed, rec.set_status)
        except TimeoutError:
            failed = "timeout", f"no complete response within {self.timeout_s} s"
        except HttpError as e:
            failed = e.kind, f"{type(e).__name__}: {e}"
        except asyncio.CancelledError:
            decoder.finish()
            if rec.error_kind is None:
                rec.error_kind, rec.error = "cancelled", "cancelled"
            rec.done_ns = rec.done_ns or time.perf_counter_ns()
            raise
        if failed is not None:
            rec.done_ns = time.perf_counter_ns()
            # what arrived before the failure still counts (e.g. tokens of a cut stream); the transport
            # failure is the error, unless the stream had said what went wrong first
            decoder.finish()
            if rec.error_kind is None:
                rec.error_kind, rec.error = failed
            return rec
        rec.status_code = resp.status
        rec.done_ns = resp.end_ns
        if resp.status != 200:
            text = bytes(resp.body).decode(errors="replace")
            rec.error_kind, rec.error = "http", f"HTTP {resp.status}: {text[:300]}"
            return rec
        events.close(resp.end_ns)
        decoder.finish()
        ctype = resp.headers.get("content-type", "")
        if rec.error_kind is None and rec.first_token_ns is None and "text/event-stream" not in ctype:
            # a whole answer of another kind (a JSON completion: the endpoint ignored `stream`, a proxy's
            # HTML page): no connection was lost
            rec.error_kind = "protocol"
            rec.error = f"the response is not an event stream (Content-Type: {ctype or 'none'})"
        elif rec.error_kind is None and not decoder.saw_done and rec.finish_reason is None:
            rec.error_kind, rec.error = "disconnected", "stream ended without [DONE] or finish_reason"
        elif rec.error_kind is None and rec.first_token_ns is None:
            rec.error_kind, rec.error = "empty", "stream carried no content"
        return rec


class StreamDecoder:
    """Folds each SSE event into a record as it completes (`SseEvents` calls it with the stamp of the
    read that delivered the event). Decoding one chunk takes microseconds; decoding a whole stream at
    its end would hold the event loop for milliseconds and stamp other streams' reads late.

    After `[DONE]`, a JSON error or an `error` event, later events are ignored."""

    __slots__ = ("heard_ns", "rec", "saw_done", "stopped", "texts")

    def __init__(
        self, rec: RequestRecord, texts: list[str] | None = None, heard_ns: list[int] | None = None
    ) -> None:
        self.rec, self.texts = rec, texts
        self.heard_ns = heard_ns  # [stamp]: set at every event, shared by a client's streams
        self.saw_done = self.stopped = False

    def __call__(self, now_ns: int, data: bytes) -> None:
        if self.heard_ns is not None:
            self.heard_ns[0] = now_ns
        if self.stopped:
            return
        rec = self.rec
        if data == b"[DONE]":
            self.saw_done = self.stopped = True
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            self.stopped = True
            if rec.error_kind is None:
                rec.error_kind = "protocol"
                rec.error = f"bad SSE JSON: {data[:200].decode(errors='replace')}"
            return
        if not isinstance(chunk, dict):
            return
        if "error" in chunk and not chunk.get("choices"):
            self.stopped = True
            if rec.error_kind is None:
                rec.error_kind, rec.error = "http", f"error in stream: {str(chunk['error'])[:300]}"
            return
        try:
            apply_chunk(rec, chunk, now_ns, self.texts)
        except (ValueError, TypeError, AttributeError, ArithmeticError) as e:  # "n/a" or 1e999 tokens
            self.stopped = True
            if rec.error_kind is None:
                rec.error_kind = "protocol"
                rec.error = f"bad SSE chunk ({type(e).__name__}: {e}): {data[:200].decode(errors='replace')}"

    def finish(self) -> None:
        """The stream is over: the kept text goes to the record."""
        if self.texts is not None:
            self.rec.output_text = "".join(self.texts)


def chunk_text(choice: dict[str, Any]) -> str:
    """Generated text carried by one streamed choice: completions `text`; chat `delta.content`, and the
    delta's reasoning (`reasoning_content` as llama.cpp's server, SGLang and older vLLM send it,
    `reasoning` as vLLM 0.32 does) and tool calls' function names and arguments, which are generated
    tokens too (counted in `usage`)."""
    if "text" in choice:
        return choice.get("text") or ""
    delta = choice.get("delta") or {}
    parts = [reasoning_of(delta), delta.get("content")]
    for call in delta.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            parts += [fn.get("name"), fn.get("arguments")]
    return "".join(p for p in parts if isinstance(p, str))


def reasoning_of(delta: dict[str, Any]) -> Any:
    """The reasoning a chat delta carries (`reasoning_content`, else `reasoning`): a server that fills
    both fields sends the same text twice, so one is taken."""
    return delta.get("reasoning_content") or delta.get("reasoning")


def _token_count(value: Any, name: str) -> int:
    """A usage count: a whole number >= 0 (anything else is the stream's protocol error)."""
    n = int(value)
    if n < 0 or n != value:
        raise ValueError(f"usage {name} is not a count of tokens: {value!r}")
    return n


def apply_chunk(
    rec: RequestRecord, chunk: dict[str, Any], now_ns: int, texts: list[str] | None = None
) -> None:
    """Fold one parsed SSE chunk into the record: content stamps, usage, finish reason, timings.

    Content text goes to `texts` when given, else to `rec.output_text` if that is not None.
    """
    for choice in chunk.get("choices") or []:
        text = chunk_text(choice)
        if text:
            if not rec.reasoning_streamed:
                rec.reasoning_streamed = bool(reasoning_of(choice.get("delta") or {}))
            if rec.first_token_ns is None:
                rec.first_token_ns = now_ns
            rec.chunk_ns.append(now_ns)
            rec.output_text_chars += len(text)
            if texts is not None:
                texts.append(text)
            elif rec.output_text is not None:
                rec.output_text += text
        if choice.get("finish_reason"):
            rec.finish_reason = choice["finish_reason"]
    usage = chunk.get("usage")
    if usage:
        if usage.get("completion_tokens") is not None:
            rec.output_tokens = _token_count(usage["completion_tokens"], "completion_tokens")
            rec.output_tokens_source = "usage"
        if usage.get("prompt_tokens") is not None:
            rec.prompt_tokens = _token_count(usage["prompt_tokens"], "prompt_tokens")
            rec.prompt_tokens_source = "usage"
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and details.get("cached_tokens") is not None:
            rec.cached_prompt_tokens = _token_count(details["cached_tokens"], "cached_tokens")
        out_details = usage.get("completion_tokens_details")
        if isinstance(out_details, dict) and out_details.get("reasoning_tokens") is not None:
            rec.reasoning_tokens = _token_count(out_details["reasoning_tokens"], "reasoning_tokens")
    timings = chunk.get("timings")
    if timings:
        rec.server_timings = dict(timings)
        if rec.cached_prompt_tokens is None and timings.get("cache_n") is not None:  # llama.cpp
            rec.cached_prompt_tokens = int(timings["cache_n"])
