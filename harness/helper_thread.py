"""A blocking call on a daemon thread of its own, which the caller waits for as long as it chooses (a
call that hangs, on a network or a GPU falling off the bus, is left in its thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class HelperCall(Generic[T]):
    """`call()` started on a daemon thread named `name`; `thread` to wait on, `result()` once it ended."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._got: list[T] = []
        self._raised: list[BaseException] = []

        def run() -> None:
            try:
                self._got.append(call())
            except BaseException as e:  # raised again in the caller, by `result`
                self._raised.append(e)

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def result(self) -> T:
        """What the call returned, or what it raised raised again; only once its thread has ended."""
        assert not self.thread.is_alive()
        if self._raised:
            raise self._raised[0]
        return self._got[0]
