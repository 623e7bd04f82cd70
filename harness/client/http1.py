"""A lean HTTP/1.1 client on asyncio protocols, built for timing streamed responses.

Why not httpx: on a loaded 2-core machine httpx spent ~2 ms per request between the caller's
send stamp and the request bytes reaching the socket (request building, pool, anyio, h11
events; headers and body in two `send()` calls), and that time landed in every measured TTFT.
Here the request bytes are built before the send stamp, written with one `transport.write`, and
the response is parsed inside `data_received`, where every byte is stamped with
`perf_counter_ns()` at the moment the event loop hands it over. Bytes that arrive in the same
read share a stamp: they did arrive together.

Scope: HTTP/1.1 over TCP or TLS, `Content-Length` and `Transfer-Encoding: chunked` bodies,
keep-alive connection reuse. No redirects, proxies, compression or HTTP/2.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

# body bytes with the perf_counter_ns stamp of the read that delivered them
OnBody = Callable[[bytes, int], None]
HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")


class HttpError(Exception):
    """Base of the transport errors; `kind` is a `RequestRecord.error_kind`."""

    kind = "protocol"


class ConnectError(HttpError):
    kind = "connect"


class Disconnected(HttpError):
    kind = "disconnected"


class ProtocolError(HttpError):
    kind = "protocol"


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    end_ns: int = 0  # stamp of the read that completed the response
    body: bytearray = field(default_factory=bytearray)  # what `on_body` did not take (non-200 bodies)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; parses at most one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.made_ns = 0
        self._buf = bytearray()
        self._fut: asyncio.Future[Response] | None = None
        self._resp: Response | None = None
        self._on_body: OnBody | None = None
        self._on_head: Callable[[int], None] | None = None
        self._sink: OnBody | None = None
        self._now = 0
        self._state = "idle"  # idle | head | length | chunk_size | chunk_data | chunk_crlf | trailer | eof
        self._left = 0
        self._got_bytes = False
        self._keep_alive = True

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.made_ns = time.perf_counter_ns()  # connected (TLS: handshake done), before the loop resumes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._now = time.perf_counter_ns()
        fut = self._fut
        if fut is not None and not fut.done():
            if self._state == "eof" and self._resp is not None and exc is None:
                self._finish()  # a body that ends with the connection: a clean close is its end, a reset not
            else:
                where = "before any response byte" if not self._got_bytes else f"in state {self._state}"
                fut.set_exception(Disconnected(f"connection closed {where}" + (f": {exc}" if exc else "")))

    def eof_received(self) -> bool | None:
        return False

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self._fut is None or self._fut.done():
            return  # unsolicited bytes (a server that talks out of turn): ignored, connection dropped later
        self._got_bytes = True
        self._buf += data
        self._now = now
        try:
            self._parse(now)
        except ProtocolError as e:
            self._fail(e)

    # -- request/response
    def request(
        self, raw: bytes, on_body: OnBody | None, on_head: Callable[[int], None] | None = None
    ) -> asyncio.Future[Response]:
        """Write one request and return the future of its response.

        A connection that closed before the write (a peer gone between its being opened or picked from
        the idle ones and this write) fails the future as Disconnected: uvloop would raise from the write,
        and asyncio's would drop the bytes and leave the future waiting for an answer that cannot come."""
        assert self.transport is not None
        fut = self.expect(on_body, on_head)
        if self.closed or self.transport.is_closing():
            fut.set_exception(Disconnected("connection closed before the request was written"))
            return fut
        try:
            self.transport.write(raw)
        except RuntimeError as e:  # uvloop: a handle closed under the write (is_closing has said so first)
            fut.set_exception(Disconnected(f"connection closed before the request was written: {e}"))
        return fut

    def expect(
        self, on_body: OnBody | None, on_head: Callable[[int], None] | None = None
    ) -> asyncio.Future[Response]:
        """Get ready to parse one response (body bytes to `on_body`, its status to `on_head` as soon as
        its head is in); `data_received` feeds it."""
        assert self._state == "idle"
        loop = asyncio.get_running_loop()
        self._fut = loop.create_future()
        self._resp = Response()
        self._on_body = on_body
        self._on_head = on_head
        self._sink = None
        self._state = "head"
        self._got_bytes = False
        self._keep_alive = True
        self._buf.clear()
        return self._fut

    def _fail(self, e: Exception) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(e)
        self.close()

    def _finish(self) -> None:
        self._state = "idle"
        fut, resp = self._fut, self._resp
        self._fut, self._resp, self._on_body, self._sink = None, None, None, None
        if resp is not None:
            resp.end_ns = self._now or time.perf_counter_ns()
        if not self._keep_alive:
            self.close()
        if fut is not None and not fut.done() and resp is not None:
            fut.set_result(resp)

    def _emit(self, data: bytes, now: int) -> None:
        if not data:
            return
        if self._sink is not None:
            self._sink(data, now)
        elif self._resp is not None:
            self._resp.body += data

    def _parse(self, now: int) -> None:
        buf = self._buf
        while True:
            st = self._state
            if st == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        raise ProtocolError("response head over 64 KiB")
                    return
                self._head(bytes(buf[:end]))
                del buf[: end + 4]
            elif st == "chunk_size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                if not HEX_DIGITS.fullmatch(line):  # int() also takes `-5`, `0x10`, `1_0`
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}")
                self._left = int(line, 16)
                self._state = "chunk_data" if self._left else "trailer"
            elif st == "chunk_data" or st == "length":
                if not buf:
                    return
                take = min(self._left, len(buf))
                self._emit(bytes(buf[:take]), now)
                del buf[:take]
                self._left -= take
                if self._left:
                    return
                if st == "length":
                    self._finish()
                    return
                self._state = "chunk_crlf"
            elif st == "chunk_crlf":
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self._state = "chunk_size"
            elif st == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    self._finish()
                    return
            elif st == "eof":  # body until the server closes
                if buf:
                    self._emit(bytes(buf), now)
                    buf.clear()
                return
            else:
                return

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad status line {lines[0][:80]!r}") from None
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the response's own head follows
        headers: dict[str, str] = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        assert self._resp is not None
        self._resp.status, self._resp.headers = status, headers
        if self._on_head is not None:
            self._on_head(status)
        self._sink = self._on_body if status == 200 else None
        conn = headers.get("connection", "").lower()
        self._keep_alive = conn != "close" and parts[0] == "HTTP/1.1"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = "chunk_size"
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length") from None
            self._state = "length"
            if self._left == 0:
                self._finish()
        elif status in (204, 304, 101):
            self._keep_alive = self._keep_alive and status != 101  # switched to another protocol: not HTTP
            self._finish()
        else:
            self._state = "eof"
            self._keep_alive = False

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def tls_context() -> ssl.SSLContext:
    """The certificates every https request of the harness trusts, loaded once for each setting of
    $SSL_CERT_FILE and $SSL_CERT_DIR: those where set, else certifi's (httpx's own choice)."""
    import os

    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()  # reads the two variables itself


def direct() -> dict[str, Any]:
    """httpx keyword arguments for every request besides the timed streams (health checks, model lists,
    tokenizer calls, /metrics scrapes): no proxy from the environment, as the timed streams take none,
    and the certificates they trust (`tls_context`; httpx's `trust_env=False` alone drops
    $SSL_CERT_FILE too)."""
    return {"trust_env": False, "verify": tls_context()}


def trust_env_problem() -> str | None:
    """Why $SSL_CERT_FILE or $SSL_CERT_DIR cannot be read, where one is set: httpx (every health check,
    over http too) and the https client load their certificates from there, and a missing file would
    surface as a bare FileNotFoundError."""
    import os

    for var, ok, kind in (
        ("SSL_CERT_FILE", os.path.isfile, "a readable file (a PEM bundle)"),
        ("SSL_CERT_DIR", os.path.isdir, "a readable directory"),
    ):
        where = os.environ.get(var)
        if where and not (ok(where) and os.access(where, os.R_OK)):
            return (
                f"{var}={where}: not {kind}; the engines' health checks and https endpoints read "
                "certificates there (unset it, or point it at one)"
            )
    try:
        tls_context()  # a file that reads but holds no PEM certificate (an empty file, a DER one)
    except (ssl.SSLError, OSError) as e:
        named = [f"{v}={os.environ[v]}" for v in ("SSL_CERT_FILE", "SSL_CERT_DIR") if os.environ.get(v)]
        return (
            f"{' '.join(named) or 'the default certificates'}: cannot load certificates from it ({e}); "
            "the engines' health checks and https endpoints need them (unset it, or point it at a PEM bundle)"
        )
    return None


@dataclass
class Http1Pool:
    """Keep-alive connections to one origin (`http://host:port` or `https://...`)."""

    base_url: str
    max_connections: int = 1024
    connect_timeout_s: float = 30.0
    _idle: list[_Conn] = field(default_factory=list)
    _open: int = 0
    _sem: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        u = urlsplit(self.base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"base_url {self.base_url!r}: need http://host[:port] or https://...")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = u.scheme == "https"
        # one context for every connection (loading the CA bundle takes milliseconds), the one the health
        # and metrics requests use too (`tls_context`)
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            self._ssl = tls_context()
        self.prefix = u.path.rstrip("/")
        default_port = 443 if self.tls else 80
        name = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address in brackets
        self.host_header = name if self.port == default_port else f"{name}:{self.port}"

    def build(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        """The full request bytes (head and body) for one write."""
        lines = [
            f"{method} {self.prefix}{path} HTTP/1.1",
            f"Host: {self.host_header}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _acquire(self) -> _Conn:
        while self._idle:
            c = self._idle.pop()
            if not c.closed and c.transport is not None and not c.transport.is_closing():
                c.reused = True
                return c
            self._open -= 1
        return await self._connect()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        ctx = self._ssl
        try:
            # not `wait_for`: on 3.11 a cancel (the point cut) that lands as the connection opens is dropped,
            # and the request would go on; awaited here, a cut closes the new connection
            async with asyncio.timeout(self.connect_timeout_s):
                _, proto = await loop.create_connection(
                    _Conn, self.host, self.port, ssl=ctx, server_hostname=self.host if ctx else None
                )
        except (OSError, TimeoutError) as e:
            raise ConnectError(f"{type(e).__name__}: {e}") from None
        self._open += 1
        return proto

    def _release(self, c: _Conn) -> None:
        if c.closed or c._state != "idle":
            c.close()
            self._open -= 1
        else:
            self._idle.append(c)

    async def request(
        self,
        raw: bytes,
        on_send: Callable[[float | None], None] | None = None,
        on_body: OnBody | None = None,
        on_head: Callable[[int], None] | None = None,
    ) -> Response:
        """Send prepared request bytes and wait for the whole response (body to `on_body` if given, the
        status to `on_head` once the head is in: a response that then times out still has one).

        `on_send` runs right before the bytes are written (the caller's send stamp), with the seconds spent
        opening a new connection for them (None on an open keep-alive connection). A reused
        keep-alive connection that turns out to be closed before any response byte arrived is
        replaced once and the request written again.
        """
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.max_connections)
        async with self._sem:
            for attempt in (0, 1):
                t0_ns = time.perf_counter_ns()
                c = await self._acquire()
                if on_send is not None:
                    # up to the connection's being made: the loop's lateness in resuming after it is the
                    # client's own, and stays in the send lag
                    on_send(None if c.reused else max(0, c.made_ns - t0_ns) / 1e9)
                fut = c.request(raw, on_body, on_head)
                try:
                    resp = await fut
                except Disconnected:
                    retry = attempt == 0 and c.reused and not c._got_bytes
                    c.close()
                    self._release(c)
                    if retry:
                        continue
                    raise
                except BaseException:
                    c.close()
                    self._release(c)
                    raise
                self._release(c)
                return resp
        raise Disconnected("unreachable")  # pragma: no cover

    async def preconnect(self, n: int) -> int:
        """Open connections until `n` are idle (at most `max_connections`), all at once; returns how many
        are. One that cannot be opened is left to the request that needs it (which then says why)."""
        want = max(0, min(n, self.max_connections) - len(self._idle))

        async def one() -> None:
            try:
                c = await self._connect()
            except ConnectError:
                return
            self._idle.append(c)

        await asyncio.gather(*(one() for _ in range(want)))
        return len(self._idle)

    async def aclose(self) -> None:
        for c in self._idle:
            c.close()
        self._idle.clear()
        self._open = 0
