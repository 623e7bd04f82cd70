"""A client worker's messages to the parent: written off the event loop, in order, and never stuck on a
parent that is gone."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest

from harness.load.workers import _Outbox

BIG = ("rec", {"chunk_ns": list(range(10**12, 10**12 + 200_000))})  # over a megabyte pickled


def test_a_record_larger_than_the_pipe_holds_is_queued_without_waiting_for_the_reader() -> None:
    parent, child = mp.Pipe()
    outbox = _Outbox(child)
    put = threading.Thread(target=lambda: (outbox.put(BIG), outbox.put(("mdone",))))
    put.start()
    put.join(10)
    # nothing has read the pipe yet: a send from the caller's thread would still be blocked in the write
    assert not put.is_alive()
    assert parent.recv() == BIG and parent.recv() == ("mdone",)
    outbox.close()
    assert not parent.poll(0.1)


def test_a_parent_gone_ends_the_writing_and_close_returns() -> None:
    parent, child = mp.Pipe()
    outbox = _Outbox(child)
    parent.close()
    for _ in range(3):
        outbox.put(BIG)
    closer = threading.Thread(target=outbox.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()


def test_a_worker_whose_run_fails_says_so_instead_of_done_and_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in a worker's own run (not a cancel) left its remaining requests unrun: it tells the
    parent `failed` with the error, where `done` would have passed the point off as whole, and it still
    ends once the parent answers (its read of the parent's stop is let go)."""
    import signal
    import time

    from harness.load import workers

    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(workers, "run_jobs_here", boom)
    parent, child = mp.Pipe()
    said: list[tuple[object, ...]] = []

    def the_parent() -> None:
        said.append(parent.recv())  # ready
        parent.send(("go", time.perf_counter_ns(), None))
        while (msg := parent.recv())[0] not in ("failed", "done"):
            said.append(msg)
        said.append(msg)
        parent.send(("bye",))  # what the parent answers either: the worker's read of a stop is let go

    talk = threading.Thread(target=the_parent, daemon=True)
    talk.start()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)}
    try:
        workers._worker_main(child, {"base_url": "http://127.0.0.1:9", "model": "m"}, {"point_id": "p"}, [])
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    talk.join(10)
    assert said[0][0] == "ready"
    assert said[-1] == ("failed", "RuntimeError: boom")
    assert all(m[0] != "done" for m in said)
