"""A real loopback HTTP server speaking the OpenAI streaming protocol with scripted timing.

It answers `/v1/completions` and `/v1/chat/completions` with `stream: true`: the first content
chunk `ttft_s` after the request arrived (its last body byte was read), then one chunk per
token every `itl_s`, then a usage chunk (if `stream_options.include_usage`) and `data: [DONE]`.
Chunks are due at absolute deadlines (no drift). While at most `spin_streams` streams are active
the server busy-waits the last 1.5 ms before a deadline, so writes land within tens of
microseconds of it; above that it relies on the event loop's timers (about 1 ms granularity).
`GET /stats` reports how late the writes were and `GET /trace` the arrival and write stamps
(`perf_counter_ns`, a clock shared by all processes of a Linux host) of the last 4096 streams;
`POST /stats/reset` clears both. With them a test or benchmark can tell server error from
client error. `harness serve-fake` runs it (`fake_processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from harness.testing.fake_script import FakeScript, ServerStats
from harness.testing.fake_tokenizer import chat_ids, tokenize_answer

__all__ = ["FakeScript", "FakeServer", "ServerStats"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _frame(data: bytes) -> bytes:
    """One HTTP chunk (chunked transfer encoding)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Conn(asyncio.Protocol):
    def __init__(self, server: FakeServer) -> None:
        self.srv = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.last_rx = 0.0  # perf_counter() of the latest read
        self.auth = ""  # the Authorization header of the request being served
        self.served = 0  # requests answered on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.srv.connected_ns.append(time.perf_counter_ns())
        self.srv._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.srv._conns.discard(self)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.perf_counter()
        self.buf += data
        if not self.busy:
            self._next(self.last_rx)

    def _next(self, arrived: float) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        length, auth = 0, ""
        for h in head[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
            elif k.strip().lower() == "authorization":
                auth = v.strip()
        if len(self.buf) < end + 4 + length:
            return  # body not complete yet: the request has not arrived
        body = bytes(self.buf[end + 4 : end + 4 + length])
        del self.buf[: end + 4 + length]
        try:
            method, path, _ = head[0].split(" ", 2)
        except ValueError:
            self._simple(400, {"error": "bad request line"})
            return
        limit = self.srv.script.close_after_requests
        if limit and self.served >= limit:
            self.srv.dropped_on_reuse += 1
            self.close()
            return
        self.busy, self.auth = True, auth
        task = asyncio.get_running_loop().create_task(
            self._serve(method, path.split("?", 1)[0], body, arrived)
        )
        self.srv._tasks.add(task)
        task.add_done_callback(self.srv._tasks.discard)

    async def _serve(self, method: str, path: str, body: bytes, arrived: float) -> None:
        try:
            keep = await self.srv._route(self, method, path, body, arrived)
        except (ConnectionError, RuntimeError):
            keep = False
        self.busy = False
        self.served += 1
        if not keep:
            self.close()
        elif self.buf:
            self._next(self.last_rx)  # a request that arrived while this one was streaming

    def _simple(self, code: int, payload: Any, ctype: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.write(
            f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
            f"Connection: keep-alive\r\n\r\n".encode()
            + data
        )

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("client went away")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class FakeServer:
    script: FakeScript = field(default_factory=FakeScript)
    host: str = "127.0.0.1"
    port: int = 0
    reuse_port: bool = False
    tls: ssl.SSLContext | None = None  # serve https with this server context
    requests_seen: int = 0
    dropped_on_reuse: int = 0  # requests met by close_after_requests
    connected_ns: list[int] = field(default_factory=list)  # perf_counter_ns() of each connection accepted
    active_streams: int = 0
    stats: ServerStats = field(default_factory=ServerStats)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _conns: set[_Conn] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        from harness.engines.process import http_url

        return http_url(self.host, self.port, "https" if self.tls else "http")

    async def _route(self, conn: _Conn, method: str, path: str, body: bytes, arrived: float) -> bool:
        key, api = self.script.api_key, self.script.api_prefix
        # as vLLM's --api-key: the /v1 routes want the key, /health and the rest do not
        if key and path.startswith(api + "/") and conn.auth != f"Bearer {key}":
            conn._simple(401, {"error": {"message": "invalid api key", "code": 401}})
            return True
        if method == "GET" and path == "/health":
            while self.script.health_waits_for_streams and self.active_streams:
                await asyncio.sleep(0.01)  # as a health route that takes the model's lock
            conn._simple(200, {"status": "ok"})
        elif method == "GET" and path == api + "/models":
            card = {"id": "fake", "object": "model"}
            if self.script.owned_by is not None:
                card["owned_by"] = self.script.owned_by
            conn._simple(200, {"object": "list", "data": [card]})
        elif method == "GET" and path == "/stats":
            conn._simple(200, self.stats.summary())
        elif method == "GET" and path == "/trace":
            conn._simple(200, list(self.stats.traces))
        elif method == "POST" and path == "/stats/reset":
            self.stats = ServerStats()
            conn._simple(200, {"status": "ok"})
        elif method == "POST" and path == "/tokenize" and self.script.tokenize:
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                conn._simple(400, {"error": {"message": "body is not JSON"}})
                return True
            conn._simple(*tokenize_answer(req, self.script.chat_template, self.script.tokenize_messages))
        elif method == "POST" and path in (api + "/completions", api + "/chat/completions"):
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                conn._simple(400, {"error": {"message": "body is not JSON"}})
                return True
            return await self._complete(conn, path.endswith("chat/completions"), req, arrived)
        else:
            conn._simple(404, {"error": f"no route {method} {path}"})
        return True

    async def _complete(self, conn: _Conn, chat: bool, req: dict[str, Any], arrived: float) -> bool:
        s = self.script
        self.requests_seen += 1
        self.stats.requests += 1
        if s.fail_every and self.requests_seen % s.fail_every == 0:
            conn._simple(s.fail_status, {"error": {"message": "scripted failure"}})
            return True
        n = int(req.get("max_completion_tokens") or req.get("max_tokens") or s.default_max_tokens)
        stops = s.stop_after_tokens is not None and s.stop_after_tokens < n and not req.get("ignore_eos")
        if stops:
            n = max(1, s.stop_after_tokens or 0)
        last = b'"stop"' if stops else b'"length"'
        if s.prompt_tokens is not None:
            n_prompt = s.prompt_tokens
        elif chat:
            n_prompt = len(chat_ids(req.get("messages") or [], s.chat_template))
        else:
            n_prompt = len(str(req.get("prompt") or "").split())
        conn.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        obj = "chat.completion.chunk" if chat else "text_completion"
        pre = b'data: {"id":"fake","object":"%s","model":"fake","choices":[{"index":0,' % obj.encode()
        deadline = arrived + s.ttft_s
        stats = self.stats
        writes: list[int] = []
        stats.traces.append([int(arrived * 1e9), writes])
        self.active_streams += 1
        try:
            for i in range(n):
                if s.drop_after_tokens is not None and i >= s.drop_after_tokens:
                    return False  # connection closed mid-stream
                if s.bad_json_after_tokens is not None and i == s.bad_json_after_tokens:
                    conn.write(_frame(b'data: {"choices": [{"text": "unterminated\n\n'))  # then go on
                if s.stall_after_tokens is not None and i >= s.stall_after_tokens:
                    await asyncio.sleep(3600)  # hang with the connection open
                if s.end_after_tokens is not None and i >= s.end_after_tokens:
                    conn.write(b"0\r\n\r\n")  # the chunked body's end: the HTTP response is whole
                    return True
                if s.error_after_tokens is not None and i >= s.error_after_tokens:
                    err = b'{"code":500,"message":"scripted error mid-stream","type":"server_error"}'
                    if s.error_as == "field":
                        conn.write(
                            _frame(b"error: " + err + b"\n\n") + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
                        )
                    else:
                        conn.write(_frame(b'data: {"error":' + err + b"}\n\n") + b"0\r\n\r\n")
                    return True
                await _sleep_until(deadline, self.active_streams <= s.spin_streams)
                fin = last if i == n - 1 else b"null"
                if chat:
                    piece = b'"delta":{"content":" t%d"},"finish_reason":%s}]}\n\n' % (i, fin)
                else:
                    piece = b'"text":" t%d","finish_reason":%s}]}\n\n' % (i, fin)
                now = time.perf_counter()
                conn.write(_frame(pre + piece))
                writes.append(int(now * 1e9))
                stats.late_ns.append(int((now - deadline) * 1e9))
                stats.chunks += 1
                deadline += s.gap_s(i)
        finally:
            self.active_streams -= 1
        tail = b""
        if s.include_usage and (req.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n, "total_tokens": n_prompt + n}
            payload = {"id": "fake", "object": obj, "model": "fake", "choices": [], "usage": usage}
            tail += _frame(b"data: " + json.dumps(payload).encode() + b"\n\n")
        conn.write(tail + _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return True

    # -- lifecycle
    async def _start(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Conn(self),
            self.host,
            self.port,
            reuse_port=self.reuse_port or None,
            backlog=4096,
            ssl=self.tls,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    async def serve(self, on_listening: Callable[[], None] | None = None) -> None:
        """Serve forever; `on_listening` is called once the port is bound."""
        srv = await self._start()
        if on_listening is not None:
            on_listening()
        async with srv:
            await srv.serve_forever()

    def start_in_thread(self) -> FakeServer:
        """Serve from a daemon thread (tests); returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()

            async def main() -> None:
                srv = await self._start()
                ready.set()
                async with srv:
                    await srv.serve_forever()

            loop = self._loop
            try:
                loop.run_until_complete(main())
            except (asyncio.CancelledError, RuntimeError):
                pass
            finally:  # closed here: left to the garbage collector, its close failed on a socket gone first
                left = asyncio.all_tasks(loop)
                for t in left:
                    t.cancel()
                if left:
                    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
                # a stopped server closes its connections, as a process that exits does (3.11's
                # Server.close leaves accepted ones open: their clients waited out their timeouts)
                for c in list(self._conns):
                    if c.transport is not None:
                        c.transport.abort()
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake server did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            with contextlib.suppress(RuntimeError):  # stopped before: its loop is closed
                self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(timeout=5)


async def _sleep_until(deadline: float, spin: bool) -> None:
    """Sleep until perf_counter() reaches `deadline`; with `spin`, busy-wait the last 1.5 ms."""
    remaining = deadline - time.perf_counter()
    if not spin:
        if remaining > 0:
            await asyncio.sleep(remaining)
        return
    if remaining > 0.002:
        await asyncio.sleep(remaining - 0.0015)
    while time.perf_counter() < deadline:
        await asyncio.sleep(0)
