"""A real loopback HTTP server speaking the OpenAI streaming protocol with scripted timing.

It answers `/v1/completions` and `/v1/chat/completions` with `stream: true`: the first content
chunk `ttft_s` after the request arrived, then one chunk per token every `itl_s`, then a usage
chunk (if `stream_options.include_usage`) and `data: [DONE]`. Chunks are written at absolute
deadlines (no drift). It exists to test the client's timing; `harness serve-fake` runs it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeScript:
    """What the server does for every request."""

    ttft_s: float = 0.05
    itl_s: float | list[float] = 0.01
    default_max_tokens: int = 16
    prompt_tokens: int | None = None  # default: words in the prompt
    fail_every: int = 0  # every n-th request answers HTTP 500 (0: never)
    drop_after_tokens: int | None = None  # close the stream after this many tokens (no [DONE])
    include_usage: bool = True

    def gap_s(self, i: int) -> float:
        if isinstance(self.itl_s, list):
            return self.itl_s[i % len(self.itl_s)] if self.itl_s else 0.0
        return self.itl_s


@dataclass
class FakeServer:
    script: FakeScript = field(default_factory=FakeScript)
    host: str = "127.0.0.1"
    port: int = 0
    requests_seen: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- HTTP plumbing
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                arrived = time.perf_counter()
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                keep = await self._route(method, path, body, arrived, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    @staticmethod
    def _simple(
        writer: asyncio.StreamWriter, code: int, payload: Any, ctype: str = "application/json"
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        reason = {200: "OK", 404: "Not Found", 400: "Bad Request", 500: "Internal Server Error"}[code]
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
            f"Connection: keep-alive\r\n\r\n".encode()
            + data
        )

    async def _route(
        self, method: str, path: str, body: bytes, arrived: float, writer: asyncio.StreamWriter
    ) -> bool:
        path = path.split("?", 1)[0]
        if method == "GET" and path == "/health":
            self._simple(writer, 200, {"status": "ok"})
        elif method == "GET" and path == "/v1/models":
            self._simple(writer, 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        elif method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            return await self._complete(
                path.endswith("chat/completions"), json.loads(body or b"{}"), arrived, writer
            )
        else:
            self._simple(writer, 404, {"error": f"no route {method} {path}"})
        await writer.drain()
        return True

    async def _complete(
        self, chat: bool, req: dict[str, Any], arrived: float, writer: asyncio.StreamWriter
    ) -> bool:
        s = self.script
        self.requests_seen += 1
        if s.fail_every and self.requests_seen % s.fail_every == 0:
            self._simple(writer, 500, {"error": {"message": "scripted failure"}})
            await writer.drain()
            return True
        n = int(req.get("max_tokens") or s.default_max_tokens)
        prompt = (
            req.get("prompt") if not chat else " ".join(m.get("content", "") for m in req.get("messages", []))
        )
        n_prompt = s.prompt_tokens if s.prompt_tokens is not None else len(str(prompt or "").split())
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        await writer.drain()
        obj = "chat.completion.chunk" if chat else "text_completion"
        deadline = arrived + s.ttft_s
        for i in range(n):
            if s.drop_after_tokens is not None and i >= s.drop_after_tokens:
                return False  # connection closed mid-stream
            await _sleep_until(deadline)
            text = f" t{i}"
            choice: dict[str, Any] = (
                {"index": 0, "delta": {"content": text}, "finish_reason": None}
                if chat
                else {"index": 0, "text": text, "finish_reason": None}
            )
            if i == n - 1:
                choice["finish_reason"] = "length"
            await self._event(writer, {"id": "fake", "object": obj, "model": "fake", "choices": [choice]})
            deadline += s.gap_s(i)
        if s.include_usage and (req.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n, "total_tokens": n_prompt + n}
            await self._event(
                writer, {"id": "fake", "object": obj, "model": "fake", "choices": [], "usage": usage}
            )
        await self._raw(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _event(self, writer: asyncio.StreamWriter, payload: dict[str, Any]) -> None:
        await self._raw(writer, b"data: " + json.dumps(payload).encode() + b"\n\n")

    @staticmethod
    async def _raw(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    # -- lifecycle
    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        async with self._server:
            await self._server.serve_forever()

    def start_in_thread(self) -> FakeServer:
        """Serve from a daemon thread (tests); returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()

            async def main() -> None:
                self._server = await asyncio.start_server(self._handle, self.host, self.port)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
                async with self._server:
                    await self._server.serve_forever()

            try:
                self._loop.run_until_complete(main())
            except (asyncio.CancelledError, RuntimeError):
                pass

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(timeout=5)


async def _sleep_until(deadline: float) -> None:
    """Sleep until perf_counter() reaches `deadline`: coarse sleep, then a short spin for precision."""
    remaining = deadline - time.perf_counter()
    if remaining > 0.002:
        await asyncio.sleep(remaining - 0.0015)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)
