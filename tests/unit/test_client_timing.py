"""The streaming client's stamps against the fake server's scripted timing."""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import metrics
from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.process import ManagedProcess, free_port
from harness.records import RequestRecord
from harness.testing.fake_server import FakeScript, FakeServer


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[str]:
    """`harness serve-fake` in its own process (no GIL shared with the client under test)."""
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "harness",
            "serve-fake",
            "--port",
            str(port),
            "--ttft-ms",
            "80",
            "--itl-ms",
            "20",
        ],
        tmp_path / "fake.log",
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_healthy(url + "/health", 30)
    yield url
    proc.stop()


def _send(base_url: str, api: str, n: int, max_tokens: int) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        async with StreamClient(base_url, "fake", api=api) as c:
            out = []
            for i in range(n):
                rec = RequestRecord(i, "p", 0)
                out.append(await c.send(rec, RequestSpec("hello world", max_tokens)))
            return out

    return asyncio.run(go())


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_ttft_and_itl_within_2ms_of_script(fake: str, api: str) -> None:
    recs = _send(fake, api, 5, 10)
    assert all(r.ok for r in recs), [r.error for r in recs]
    for r in recs:
        assert r.output_tokens == 10 and len(r.chunk_ns) == 10
        assert r.prompt_tokens == 2
        assert r.finish_reason == "length"
    ttfts = [metrics.ttft_s(r) for r in recs]
    itls = [x for r in recs for x in metrics.itl_s(r)]
    assert abs(statistics.median(ttfts) - 0.080) < 0.002, ttfts
    assert abs(statistics.median(itls) - 0.020) < 0.002
    assert max(abs(x - 0.020) for x in itls) < 0.010  # no single gap wildly off


def test_http_error_is_recorded_not_raised() -> None:
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0, fail_every=1)).start_in_thread()
    try:
        (rec,) = _send(srv.base_url, "completion", 1, 4)
    finally:
        srv.stop()
    assert rec.error_kind == "http" and rec.status_code == 500 and not rec.ok


def test_stream_cut_mid_way_is_recorded_as_disconnected() -> None:
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.001, drop_after_tokens=3)).start_in_thread()
    try:
        (rec,) = _send(srv.base_url, "completion", 1, 8)
    finally:
        srv.stop()
    assert rec.error_kind == "disconnected"
    assert len(rec.chunk_ns) == 3


def test_connection_refused_is_recorded() -> None:
    (rec,) = _send(f"http://127.0.0.1:{free_port()}", "completion", 1, 4)
    assert rec.error_kind == "connect"
