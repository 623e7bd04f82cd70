"""What a Ctrl-C (the run's abort check) or a stopped server cuts short ends at once, not after a timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.process import set_abort_check
from harness.load import tokens
from harness.records import RequestRecord
from harness.testing.fake_server import FakeScript, FakeServer


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that takes connections and never answers (an engine frozen mid-load)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(s.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    for c in held:
        c.close()


class _Engine:
    name = "fake"

    def tokenize(self, text: str) -> int:
        return len(text.split())


def test_a_ctrl_c_stops_the_prompt_length_probe(silent_url: str) -> None:
    """The probe request that calibrates prompt lengths waited out request_timeout_s (600 s by default)
    on an engine that does not answer, whatever the user pressed."""
    t0 = time.monotonic()
    set_abort_check(lambda: "interrupted by SIGINT" if time.monotonic() - t0 > 0.3 else None)
    try:
        client = StreamClient(silent_url, "fake", timeout_s=30.0)
        with pytest.raises(
            tokens.TokenizerError, match="the probe request was stopped: interrupted by SIGINT"
        ):
            tokens.prepare_counter(None, _Engine(), client)
    finally:
        set_abort_check(None)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("script", [FakeScript(stall_after_tokens=2), FakeScript(itl_s=0.05)])
def test_a_stopped_fake_server_drops_its_connections(script: FakeScript) -> None:
    """`FakeServer.stop()` left accepted connections open: a client mid-stream waited out its timeout
    (recorded `timeout`) instead of seeing the server go (`disconnected`), as it does when a real
    engine's process ends."""
    srv = FakeServer(script).start_in_thread()
    rec = RequestRecord(0, "p", 0)

    async def go() -> float:
        async with StreamClient(srv.base_url, "fake", timeout_s=8.0, extra_body={"ignore_eos": True}) as c:
            sent: Any = asyncio.create_task(c.send(rec, RequestSpec("hello world", 1000)))
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            await asyncio.to_thread(srv.stop)
            await sent
            return time.monotonic() - t0

    took_s = asyncio.run(go())
    assert rec.error_kind == "disconnected", rec.error
    assert took_s < 3, took_s
