"""A client worker's messages to the parent: written off the event loop, in order, and never stuck on a
parent that is gone."""

from __future__ import annotations

import multiprocessing as mp
import threading

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
