"""Whole HTTP answers that are not the stream asked for, from a raw socket server: how the client
classifies them (a protocol error, not a dropped connection or a success)."""

from __future__ import annotations

import asyncio
import json

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.records import RequestRecord


def _answer_once(head: bytes, body: bytes) -> RequestRecord:
    """Serve one request with `head` (status line and headers) and `body`, then close; send it."""

    async def go() -> RequestRecord:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, StreamClient(f"http://127.0.0.1:{port}", "m", timeout_s=10) as c:
            rec = RequestRecord(0, "p", 0)
            return await c.send(rec, RequestSpec("hello", 4))

    return asyncio.run(go())


def test_a_json_completion_where_a_stream_was_asked_is_a_protocol_error() -> None:
    """An endpoint that ignored `stream: true` answers one JSON completion: nothing was cut off."""
    completion = {
        "choices": [{"text": " a b c d", "finish_reason": "length"}],
        "usage": {"completion_tokens": 4},
    }
    rec = _answer_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", json.dumps(completion).encode()
    )
    assert rec.error_kind == "protocol" and not rec.ok
    assert rec.error == "the response is not an event stream (Content-Type: application/json)"
    page = _answer_once(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n", b"<html>proxy login</html>")
    assert page.error_kind == "protocol" and "text/html" in (page.error or "")


def test_usage_counts_that_are_not_token_counts_are_protocol_errors() -> None:
    def stream(usage: object) -> bytes:
        chunks = [{"choices": [{"text": " a", "finish_reason": "length"}]}, {"choices": [], "usage": usage}]
        return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"

    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    for bad in (-5, 2.5, "4"):
        rec = _answer_once(head, stream({"completion_tokens": bad, "prompt_tokens": 3}))
        assert rec.error_kind == "protocol" and "completion_tokens is not a count of tokens" in (
            rec.error or ""
        )
        assert rec.output_tokens is None
    good = _answer_once(head, stream({"completion_tokens": 1, "prompt_tokens": 3}))
    assert good.ok and good.output_tokens == 1 and good.prompt_tokens == 3
