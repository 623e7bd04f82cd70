"""Event loop choice: uvloop where installed (faster wake-ups and socket I/O), else asyncio's; no full
garbage collection while a point's loop runs; and a task cancelled when the run is asked to stop."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_on_abort(
    task: asyncio.Future[Any], should_abort: Callable[[], str | None], interval_s: float
) -> str | None:
    """Wait for `task`, asking `should_abort` every `interval_s` (the run's own Ctrl-C handler only sets
    a flag): on a reason, cancel the task once and return the reason; None when the task ended first."""
    while not task.done():
        if reason := should_abort():
            task.cancel()
            return reason
        await asyncio.wait({task}, timeout=interval_s)
    return None


def loop_name() -> str:
    """`uvloop` or `asyncio`: what `run_loop` will use."""
    if os.environ.get("HARNESS_NO_UVLOOP") == "1":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)` on uvloop when it is installed (HARNESS_NO_UVLOOP=1 turns it off)."""
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


@contextmanager
def no_full_collections() -> Iterator[None]:
    """While a point's loop runs, only the young generations are collected.

    A full collection walks every object alive, the point's records (with their stamps) included, and
    stops the loop meanwhile: in points of 300k to 1M requests the pauses grew to 0.25-2 s, each a gap
    in the sends and a tail in TTFT and E2E that no other figure showed. What a request leaves behind dies
    young and is still collected. Everything made before the point (its planned requests) is collected
    once now and then frozen out of later collections; afterwards the thresholds are set back. (An
    incremental collector, which scans the old objects a step at a time, ignores the third threshold.)"""
    was = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(was[0], was[1], 2**31 - 1)
    try:
        yield
    finally:
        gc.set_threshold(*was)
        gc.unfreeze()
