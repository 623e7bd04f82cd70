"""The httpx-based send loop the client used before the lean HTTP/1.1 one, kept as a baseline.

Same stamps as `StreamClient` (sent before the request, each SSE line as httpx yields it), so
the benchmark shows what the transport alone costs.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from harness.client.openai_stream import RequestSpec, StreamClient, apply_chunk
from harness.records import RequestRecord


class HttpxStreamClient(StreamClient):
    _hx: Any = None

    async def __aenter__(self) -> HttpxStreamClient:
        limits = httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_connections
        )
        self._hx = httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=self.timeout_s)
        await super().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._hx.aclose()
        await super().__aexit__(*exc)

    async def send(self, rec: RequestRecord, spec: RequestSpec, raw: bytes | None = None) -> RequestRecord:
        rec.expected_output_tokens = spec.max_tokens
        try:
            rec.sent_ns = time.perf_counter_ns()
            async with self._hx.stream("POST", self.path, json=self.body(spec)) as resp:
                rec.status_code = resp.status_code
                async for line in resp.aiter_lines():
                    now = time.perf_counter_ns()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    apply_chunk(rec, json.loads(data), now)
        except httpx.HTTPError as e:
            rec.error_kind, rec.error = "http", str(e)
        rec.done_ns = time.perf_counter_ns()
        return rec
