"""How busy the client is: CPU time of this process, and how late its event loop wakes up.

A single asyncio event loop runs on one core; when it nears 100 % of that core, timers fire
late, sends go out late and chunk stamps lag the network. Both numbers are reported per point
so a reader can tell whether the client kept up.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np


class CpuMeter:
    """CPU seconds (user + system) and wall seconds of this process since creation or `restart`."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Count from now (the measured part of a point: start-up and warmup would dilute the share)."""
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()

    def read(self) -> tuple[float, float]:
        """(cpu_s, wall_s) since creation or the last restart."""
        return time.process_time() - self._cpu0, time.perf_counter() - self._wall0


class LoopLagProbe:
    """Sleeps `interval_s` again and again and records how much later than asked it woke up."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.lags_s: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.lags_s.append(time.perf_counter() - t - self.interval_s)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def lag_p99_s(self) -> float | None:
        """99th percentile of the wake-up lateness in seconds (None before the first wake-up)."""
        return float(np.percentile(self.lags_s, 99)) if self.lags_s else None
