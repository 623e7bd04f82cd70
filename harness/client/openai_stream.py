"""Async streaming client for OpenAI-compatible `/v1/completions` and `/v1/chat/completions`.

One `RequestRecord` per request. Errors are recorded on the record, never raised: a benchmark
must keep going and report how many requests failed and why.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.records import RequestRecord


@dataclass(frozen=True)
class RequestSpec:
    """What to send: prompt (text or chat messages) and how many tokens to ask for."""

    prompt: str
    max_tokens: int
    input_tokens: int | None = None


@dataclass
class StreamClient:
    """Sends streamed completions to `base_url` (e.g. http://127.0.0.1:8080) and times them."""

    base_url: str
    model: str
    api: str = "completion"  # completion | chat
    temperature: float = 0.0
    seed: int | None = 0
    timeout_s: float = 600.0
    extra_body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    max_connections: int = 1024
    keep_text: bool = False
    _client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> StreamClient:
        limits = httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_connections
        )
        timeout = httpx.Timeout(self.timeout_s, connect=min(30.0, self.timeout_s))
        self._client = httpx.AsyncClient(
            base_url=self.base_url, limits=limits, timeout=timeout, headers=self.headers
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def body(self, spec: RequestSpec) -> dict[str, Any]:
        b: dict[str, Any] = {
            "model": self.model,
            "max_tokens": spec.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
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
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"

    async def send(self, rec: RequestRecord, spec: RequestSpec) -> RequestRecord:
        """Stream one request, filling `rec` in place; returns it (also on error)."""
        assert self._client is not None, "use `async with StreamClient(...)`"
        rec.expected_output_tokens = spec.max_tokens
        rec.expected_input_tokens = spec.input_tokens
        body = self.body(spec)
        try:
            rec.sent_ns = time.perf_counter_ns()
            async with self._client.stream("POST", self.path, json=body) as resp:
                rec.status_code = resp.status_code
                if resp.status_code != 200:
                    text = (await resp.aread()).decode(errors="replace")
                    rec.error_kind, rec.error = "http", f"HTTP {resp.status_code}: {text[:300]}"
                    rec.done_ns = time.perf_counter_ns()
                    return rec
                saw_done = await self._consume(resp, rec)
            rec.done_ns = time.perf_counter_ns()
            if rec.error_kind is None and not saw_done and rec.finish_reason is None:
                rec.error_kind, rec.error = "disconnected", "stream ended without [DONE] or finish_reason"
            elif rec.error_kind is None and rec.first_token_ns is None:
                rec.error_kind, rec.error = "empty", "stream carried no content"
        except httpx.TimeoutException as e:
            rec.error_kind, rec.error = "timeout", f"{type(e).__name__}: {e}"
        except httpx.ConnectError as e:
            rec.error_kind, rec.error = "connect", f"{type(e).__name__}: {e}"
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as e:
            rec.error_kind, rec.error = "disconnected", f"{type(e).__name__}: {e}"
        except httpx.HTTPError as e:
            rec.error_kind, rec.error = "http", f"{type(e).__name__}: {e}"
        except asyncio.CancelledError:
            rec.error_kind, rec.error = "cancelled", "cancelled"
            rec.done_ns = rec.done_ns or time.perf_counter_ns()
            raise
        if rec.done_ns is None:
            rec.done_ns = time.perf_counter_ns()
        return rec

    async def _consume(self, resp: httpx.Response, rec: RequestRecord) -> bool:
        if self.keep_text:
            rec.output_text = ""
        async for line in resp.aiter_lines():
            now = time.perf_counter_ns()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return True
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                rec.error_kind, rec.error = "protocol", f"bad SSE JSON: {data[:200]}"
                return False
            if "error" in chunk and not chunk.get("choices"):
                rec.error_kind, rec.error = "http", f"error in stream: {str(chunk['error'])[:300]}"
                return False
            apply_chunk(rec, chunk, now)
        return False


def chunk_text(choice: dict[str, Any]) -> str:
    """Content carried by one streamed choice (completions: `text`; chat: `delta.content`)."""
    if "text" in choice:
        return choice.get("text") or ""
    delta = choice.get("delta") or {}
    return delta.get("content") or ""


def apply_chunk(rec: RequestRecord, chunk: dict[str, Any], now_ns: int) -> None:
    """Fold one parsed SSE chunk into the record: content stamps, usage, finish reason, timings."""
    for choice in chunk.get("choices") or []:
        text = chunk_text(choice)
        if text:
            if rec.first_token_ns is None:
                rec.first_token_ns = now_ns
            rec.chunk_ns.append(now_ns)
            rec.output_text_chars += len(text)
            if rec.output_text is not None:
                rec.output_text += text
        if choice.get("finish_reason"):
            rec.finish_reason = choice["finish_reason"]
    usage = chunk.get("usage")
    if usage:
        if usage.get("completion_tokens") is not None:
            rec.output_tokens = int(usage["completion_tokens"])
            rec.output_tokens_source = "usage"
        if usage.get("prompt_tokens") is not None:
            rec.prompt_tokens = int(usage["prompt_tokens"])
    if chunk.get("timings"):
        rec.server_timings = dict(chunk["timings"])
