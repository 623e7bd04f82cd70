"""Event loop choice: uvloop where installed (faster wake-ups and socket I/O), else asyncio's."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
