"""HTTP/1.1 framing and SSE splitting, fed in arbitrary pieces, against a whole-buffer parse."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.client.http1 import Http1Pool, _Conn
from harness.client.sse import SseEvents

EVENTS = [b'{"a":1}', b'{"text":" t1"}', b"[DONE]"]
SSE = b"".join(b"data: " + e + b"\n\n" for e in EVENTS)


def chunked(body: bytes, size: int) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        part = body[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


def test_sse_events_with_crlf_comments_and_multiline_data() -> None:
    ev = SseEvents()
    ev.feed(b": keep-alive\r\ndata: one\r\ndata: two\r\n\r\nevent: x\ndata: [DONE]\n\n", 5)
    assert ev.events == [(5, b"one\ntwo"), (5, b"[DONE]")]


def test_sse_error_line_becomes_an_error_event() -> None:
    # earlier llama.cpp servers: `error: {...}` (not an SSE field), a blank line, then data: [DONE]
    ev = SseEvents()
    ev.feed(b'data: {"a":1}\n\nerror: {"code":500,"message":"x"}\n\ndata: [DONE]\n\n', 7)
    assert [d for _, d in ev.events] == [b'{"a":1}', b'{"error":{"code":500,"message":"x"}}', b"[DONE]"]


def test_sse_unterminated_event_counts_at_close() -> None:
    ev = SseEvents()
    ev.feed(b"data: last\n", 1)
    ev.close(2)
    assert ev.events == [(2, b"last")]


def test_each_event_is_decoded_into_the_record_when_it_completes() -> None:
    """Not in a burst at the stream's end, which would hold the loop and stamp other streams late."""
    from harness.client.openai_stream import StreamDecoder
    from harness.records import RequestRecord

    rec = RequestRecord(request_id=0, point_id="p", scheduled_ns=0)
    dec = StreamDecoder(rec, [])
    ev = SseEvents(dec)
    ev.feed(b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"te', 10)
    assert (rec.first_token_ns, rec.chunk_ns) == (10, [10]) and ev.events == []
    ev.feed(b'xt":"b"}]}\n\ndata: {"choices":[],"usage":{"completion_tokens":2}}\n\n', 20)
    assert rec.chunk_ns == [10, 20] and rec.output_tokens == 2
    ev.feed(b'data: [DONE]\n\ndata: {"choices":[{"text":"late"}]}\n\n', 30)
    dec.finish()
    assert dec.saw_done and rec.chunk_ns == [10, 20] and rec.output_text == "ab"
    # bad JSON stops the stream's decoding with a protocol error; what came before stays
    rec = RequestRecord(request_id=1, point_id="p", scheduled_ns=0)
    dec = StreamDecoder(rec)
    SseEvents(dec).feed(
        b'data: {"choices":[{"text":"a"}]}\n\ndata: {oops\n\ndata: {"choices":[{"text":"b"}]}\n\n', 5
    )
    assert rec.error_kind == "protocol" and rec.chunk_ns == [5] and not dec.saw_done


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.integers(1, 17))
def test_chunked_sse_split_anywhere(cuts: list[int], chunk_size: int) -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(SSE, chunk_size)
    got = _feed(resp, cuts)
    assert got[0] == 200
    assert [d for _, d in got[1]] == EVENTS
    # stamps are non-decreasing (which read stamps which event: the test below)
    stamps = [t for t, _ in got[1]]
    assert stamps == sorted(stamps)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_each_event_carries_the_stamp_of_the_read_that_completed_it(cuts: list[int]) -> None:
    """An event split over reads arrived with the read holding its closing blank line: stamped with an
    earlier read, TTFT and ITL would read early."""
    ev = SseEvents()
    ends = [SSE.index(b"\n\n", SSE.index(b"data: " + e)) + 1 for e in EVENTS]  # each blank line's byte
    i, k, read_of = 0, 0, {}
    while i < len(SSE):
        n = cuts[k % len(cuts)]
        ev.feed(SSE[i : i + n], 1000 + k)  # read k stamped 1000 + k
        read_of.update({b: 1000 + k for b in range(i, min(i + n, len(SSE)))})
        i, k = i + n, k + 1
    assert ev.events == [(read_of[end], e) for end, e in zip(ends, EVENTS, strict=True)]


def test_content_length_body_for_errors() -> None:
    body = b'{"error":"nope"}'
    resp = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    status, events, raw = _feed(resp, [7])
    assert status == 500 and events == [] and raw == body


def _feed(resp: bytes, cuts: list[int]) -> tuple[int, list[tuple[int, bytes]], bytes]:
    async def go() -> tuple[int, list[tuple[int, bytes]], bytes]:
        conn = _Conn()
        ev = SseEvents()
        fut = conn.expect(ev.feed)
        i, k = 0, 0
        while i < len(resp):
            n = cuts[k % len(cuts)]
            conn.data_received(resp[i : i + n])
            i, k = i + n, k + 1
        r = await asyncio.wait_for(fut, 1)
        return r.status, ev.events, bytes(r.body)

    return asyncio.run(go())


def test_request_bytes_are_one_buffer_with_length() -> None:
    pool = Http1Pool("http://127.0.0.1:9/base/")
    raw = pool.build("POST", "/v1/completions", b'{"x":1}', {"Content-Type": "application/json"})
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /base/v1/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert b"Content-Length: 7" in head and body == b'{"x":1}'


def test_sse_plain_text_error_line_is_still_an_error_event() -> None:
    ev = SseEvents()
    ev.feed(b"error: upstream failed\n\n", 1)
    assert ev.events == [(1, b'{"error":"upstream failed"}')]


def test_every_error_kind_the_client_records_is_a_listed_one() -> None:
    """`ERROR_KINDS` is what reports and docs name: every kind the client code sets must be in it."""
    import re
    from pathlib import Path

    from harness.client import http1
    from harness.records import ERROR_KINDS

    source = (Path(http1.__file__).parent / "openai_stream.py").read_text()
    set_here = set(re.findall(r'rec\.error_kind(?:, rec\.error)? = "(\w+)"', source))
    transport = {
        c.kind for c in vars(http1).values() if isinstance(c, type) and issubclass(c, http1.HttpError)
    }
    assert len(set_here) >= 5 and transport == {"protocol", "connect", "disconnected"}
    assert set_here | transport <= set(ERROR_KINDS), (set_here | transport) - set(ERROR_KINDS)


def test_an_ipv6_engine_host_gets_brackets_in_urls_and_host_headers() -> None:
    import socket

    import pytest

    from harness.engines.process import EngineError, free_port, http_url

    assert http_url("::1", 8080) == "http://[::1]:8080" and http_url("127.0.0.1", 80) == "http://127.0.0.1:80"
    pool = Http1Pool("http://[::1]:8080")
    assert (pool.host, pool.port, pool.host_header) == ("::1", 8080, "[::1]:8080")
    with pytest.raises(EngineError, match=r"engine\.host 'no-such-host\.invalid': cannot listen there"):
        free_port("no-such-host.invalid")  # an error the run reports, not a traceback
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    assert 0 < free_port("::1") < 65536  # an AF_INET socket raised gaierror here


def test_a_chunk_with_a_field_of_the_wrong_type_is_a_protocol_error() -> None:
    """It raised inside the connection's data callback, which closed the socket: recorded as a
    disconnect, which sets off the dead-engine checks."""
    from harness.client.openai_stream import StreamDecoder
    from harness.records import RequestRecord

    rec = RequestRecord(request_id=0, point_id="p", scheduled_ns=0)
    dec = StreamDecoder(rec)
    ev = SseEvents(dec)
    ev.feed(
        b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[],"usage":{"completion_tokens":"n/a"}}\n\n', 3
    )
    assert (
        rec.error_kind == "protocol" and "bad SSE chunk (ValueError" in str(rec.error) and rec.chunk_ns == [3]
    )


def test_an_infinite_token_count_is_a_protocol_error_too() -> None:
    from harness.client.openai_stream import StreamDecoder
    from harness.records import RequestRecord

    rec = RequestRecord(request_id=0, point_id="p", scheduled_ns=0)
    SseEvents(StreamDecoder(rec)).feed(b'data: {"choices":[],"usage":{"completion_tokens":1e999}}\n\n', 3)
    assert rec.error_kind == "protocol" and "OverflowError" in str(rec.error)


def test_an_interim_100_continue_is_skipped_for_the_response_that_follows() -> None:
    """A server may send `100 Continue` (or 103 Early Hints) unasked; it was taken as the answer."""
    resp = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(SSE, 9)
    )
    for cuts in ([len(resp)], [3], [5, 17]):
        status, events, _ = _feed(resp, cuts)
        assert status == 200 and [d for _, d in events] == EVENTS


def test_a_chunk_size_that_is_not_plain_hex_is_a_protocol_error() -> None:
    """int(x, 16) also reads `-5`, `0x10` and `1_0`."""
    import pytest

    from harness.client.http1 import ProtocolError

    for size in (b"-5", b"0x10", b"1_0", b"+a", b""):
        resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\n" + b"x" * 16
        with pytest.raises(ProtocolError, match="bad chunk size line"):
            _feed(resp, [len(resp)])
    ok = b"HTTP/1.1 500 E\r\nTransfer-Encoding: chunked\r\n\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n"
    assert _feed(ok, [4])[2] == b"0123456789"


def test_a_body_ended_by_the_connection_is_whole_on_a_close_and_cut_on_a_reset() -> None:
    """A response with neither a length nor chunks ends when the server closes; a reset there is a
    lost connection, not the end of the answer."""
    import pytest

    from harness.client.http1 import Disconnected

    async def go(exc: Exception | None) -> bytes:
        conn = _Conn()
        fut = conn.expect(None)
        conn.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + SSE)
        conn.connection_lost(exc)
        return bytes((await asyncio.wait_for(fut, 1)).body)

    assert asyncio.run(go(None)) == SSE
    with pytest.raises(Disconnected, match="Connection reset"):
        asyncio.run(go(ConnectionResetError("Connection reset by peer")))


def test_a_connection_switched_to_another_protocol_is_not_kept_for_http() -> None:
    async def go() -> tuple[int, bool]:
        conn = _Conn()
        fut = conn.expect(None)
        conn.data_received(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        return (await asyncio.wait_for(fut, 1)).status, conn.closed

    assert asyncio.run(go()) == (101, True)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_closed_before_the_write_fails_its_request_as_disconnected(loop: str) -> None:
    """A peer can go between a connection's being opened (or picked from the idle ones) and the request's
    write: the request then fails as Disconnected, under either loop (uvloop raised from the write, and
    asyncio's dropped the bytes and left the answer waited for)."""
    from harness.client.http1 import Disconnected

    async def go() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}")
        conn = await pool._connect()
        assert conn.transport is not None
        conn.transport.close()
        await asyncio.sleep(0.05)  # connection_lost has run: the handle is gone
        fut = conn.request(pool.build("GET", "/health", b"", {}), None)
        with pytest.raises(Disconnected, match="before the request was written"):
            await asyncio.wait_for(fut, 1)
        server.close()
        await server.wait_closed()

    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(go())
    else:
        asyncio.run(go())
