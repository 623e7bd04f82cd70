"""Drives one load point: warmup, then closed-loop concurrency or open-loop arrivals.

Every finished request (also failed or cancelled ones) is handed to `on_record` at once, so the
caller can append it to disk before anything else happens. A watchdog polls `should_abort()`
(engine died, Ctrl-C) and cancels the point; records completed so far are kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.load.arrivals import offsets_s
from harness.records import RequestRecord

OnRecord = Callable[[RequestRecord], None]


@dataclass
class PointLoad:
    """How one point applies load."""

    point_id: str
    concurrency: int | None = None  # closed loop
    rate_rps: float | None = None  # open loop
    arrival: str = "poisson"
    burstiness: float = 1.0
    max_concurrency: int | None = None
    duration_s: float | None = None
    seed: int = 0


@dataclass
class PointOutcome:
    records: list[RequestRecord] = field(default_factory=list)
    aborted: str | None = None
    started_ns: int = 0
    ended_ns: int = 0


async def _one(
    client: StreamClient, rec: RequestRecord, spec: RequestSpec, out: PointOutcome, on_record: OnRecord
) -> None:
    try:
        await client.send(rec, spec)
    finally:
        out.records.append(rec)
        on_record(rec)


async def _closed(
    client: StreamClient,
    specs: Sequence[RequestSpec],
    first_id: int,
    load: PointLoad,
    warmup: bool,
    out: PointOutcome,
    on_record: OnRecord,
    deadline: float | None,
) -> None:
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < len(specs):
            if deadline is not None and time.monotonic() >= deadline:
                return
            i = next_i
            next_i += 1
            rec = RequestRecord(first_id + i, load.point_id, time.perf_counter_ns(), warmup=warmup)
            await _one(client, rec, specs[i], out, on_record)

    n = min(load.concurrency or 1, len(specs))
    await asyncio.gather(*(worker() for _ in range(n)))


async def _open(
    client: StreamClient,
    specs: Sequence[RequestSpec],
    first_id: int,
    load: PointLoad,
    out: PointOutcome,
    on_record: OnRecord,
    deadline: float | None,
) -> None:
    assert load.rate_rps is not None
    offs = offsets_s(len(specs), load.rate_rps, load.arrival, load.burstiness, load.seed)
    sem = asyncio.Semaphore(load.max_concurrency) if load.max_concurrency else None
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter_ns()

    async def gated(rec: RequestRecord, spec: RequestSpec) -> None:
        if sem is None:
            await _one(client, rec, spec, out, on_record)
            return
        async with sem:
            await _one(client, rec, spec, out, on_record)

    try:
        for i, spec in enumerate(specs):
            when_ns = t0 + int(offs[i] * 1e9)
            delay = (when_ns - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            if deadline is not None and time.monotonic() >= deadline:
                break
            rec = RequestRecord(first_id + i, load.point_id, when_ns)
            tasks.append(asyncio.create_task(gated(rec, spec)))
        if tasks:
            await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def run_point(
    client: StreamClient,
    load: PointLoad,
    warmup_specs: Sequence[RequestSpec],
    specs: Sequence[RequestSpec],
    first_id: int,
    on_record: OnRecord,
    should_abort: Callable[[], str | None] = lambda: None,
    watch_interval_s: float = 0.2,
    on_measure_start: Callable[[int], None] | None = None,
) -> PointOutcome:
    """Run warmup (closed loop, excluded from metrics) then the measured requests of one point."""
    out = PointOutcome()

    async def body() -> None:
        if warmup_specs:
            wl = PointLoad(load.point_id, concurrency=min(len(warmup_specs), load.concurrency or 1))
            await _closed(client, warmup_specs, first_id, wl, True, out, on_record, None)
        out.started_ns = time.perf_counter_ns()
        if on_measure_start is not None:
            on_measure_start(out.started_ns)
        deadline = time.monotonic() + load.duration_s if load.duration_s else None
        mid = first_id + len(warmup_specs)
        if load.rate_rps is not None:
            await _open(client, specs, mid, load, out, on_record, deadline)
        else:
            await _closed(client, specs, mid, load, False, out, on_record, deadline)

    task = asyncio.create_task(body())
    while not task.done():
        reason = should_abort()
        if reason:
            out.aborted = reason
            task.cancel()
            break
        await asyncio.wait({task}, timeout=watch_interval_s)
    try:
        await task
    except asyncio.CancelledError:
        if out.aborted is None:
            raise
    out.ended_ns = time.perf_counter_ns()
    return out
