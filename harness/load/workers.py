"""Several client processes for one point, each with its own event loop.

One event loop is one core: at high rates a single client process saturates before the server
does. Here the jobs of a point are dealt in turn to `load.workers` processes, in proportion to the
slots each holds (`deal`). All stamps
are `perf_counter_ns()`, which on Linux reads CLOCK_MONOTONIC, one clock for every process of
the host, so the records merge without any offset (checked at start-up: each worker reports
its clock and a mismatch stops the point). Open loop: every worker keeps the absolute
schedule of its share (same `t0`), so the merged arrivals are the planned process; a
`max_concurrency` cap is split between the workers, each enforcing its share (a request can wait for
a slot in its process while another has one free: for one exact cap, use one worker). Closed loop:
the concurrency is split between the workers, and the warmup requests run first, from this process,
once every worker is ready: no worker starts measuring on a server still warming up. Records come
back over a pipe as each request ends and go to `on_record` at once. A worker whose measured share
is done keeps sending its cooldown until every worker's is (the parent then stops them all), so the
load stays up until the last measured request ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from multiprocessing.connection import Connection
from typing import Any

from harness.client.openai_stream import StreamClient
from harness.load.driver import Job, OnRecord, PointLoad, PointOutcome, run_jobs_here, run_warmup_here
from harness.records import RequestRecord

START_TIMEOUT_S = 120.0
MAX_DELIVERY_NS = 120_000_000_000  # a "ready" message older than this means another clock


def split(n: int | None, k: int, workers: int) -> int | None:
    """Share of worker k of a total n (concurrency, cap): n // workers, plus one for the first n % workers."""
    if n is None:
        return None
    return max(1, n // workers + (1 if k < n % workers else 0))


def deal(jobs: Sequence[Job], weights: Sequence[int]) -> list[list[Job]]:
    """Jobs dealt to workers in proportion to `weights` (their slots: concurrency or cap share), in
    turn: each job goes to the worker furthest below its share so far (ties: the lower index). A
    worker with 2 of 3 slots gets 2 of every 3 jobs, so its slots stay as busy as the other's and the
    point runs at the concurrency asked for until its end (equal shares would leave it idle early);
    in open loop each worker's arrivals stay spread over the whole schedule."""
    total = sum(weights)
    out: list[list[Job]] = [[] for _ in weights]
    for i, job in enumerate(jobs):
        k = max(range(len(weights)), key=lambda k: ((i + 1) * weights[k] / total - len(out[k]), -k))
        out[k].append(job)
    return out


def _client_config(client: StreamClient) -> dict[str, Any]:
    # not `heard_ns`: each process hears its own streams, the parent reads the records they send back
    return {
        f.name: getattr(client, f.name)
        for f in fields(client)
        if not f.name.startswith("_") and f.name != "heard_ns"
    }


def _worker_main(conn: Connection, cfg: dict[str, Any], load: dict[str, Any], jobs: list[Job]) -> None:
    from harness.client.aio import run_loop
    from harness.load.cpu import CpuMeter, LoopLagProbe

    async def main() -> None:
        meter = CpuMeter()
        probe = LoopLagProbe()
        probe.start()
        conn.send(("ready", time.perf_counter_ns()))
        loop = asyncio.get_running_loop()
        msg = await loop.run_in_executor(None, conn.recv)
        if msg[0] != "go":
            return
        t0_ns = msg[1]
        out = PointOutcome()
        pl = PointLoad(**load)

        def on_record(rec: RequestRecord) -> None:
            conn.send(("rec", rec.to_json()))

        def on_start(t_ns: int) -> None:
            meter.restart()  # this worker's share of a core over its measured requests
            # called off the event loop in open loop: the pipe is written from the loop's thread only
            loop.call_soon_threadsafe(conn.send, ("start", t_ns))

        async with StreamClient(**cfg) as client:
            run = asyncio.create_task(
                run_jobs_here(
                    client,
                    pl,
                    jobs,
                    on_record,
                    out,
                    t0_ns,
                    on_start,
                    lambda: conn.send(("mdone",)),
                )
            )
            stop = loop.run_in_executor(None, conn.recv)
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
        probe.stop()
        cpu_s, wall_s = meter.read()
        conn.send(("done", cpu_s, wall_s, probe.lag_p99_s()))

    try:
        run_loop(main())
    finally:
        conn.close()


async def run_jobs_in_workers(
    client: StreamClient,
    load: PointLoad,
    jobs: Sequence[Job],
    on_record: OnRecord,
    out: PointOutcome,
    t0_ns: int,
    on_measure_start: Callable[[int], None] | None = None,
) -> None:
    """Run `jobs` in `load.workers` processes; fills `out.records` and `out.client['worker_cpu']` (each
    process's CPU seconds, wall seconds and event-loop lag p99)."""
    n = load.workers
    ctx = mp.get_context("spawn")
    cfg = _client_config(client)
    pipes: list[Connection] = []
    procs: list[Any] = []
    closed = load.rate_rps is None
    warm = [j for j in jobs if j.role == "warmup"] if closed else []
    dealt = [j for j in jobs if j.role != "warmup"] if closed else list(jobs)
    slots = [split(load.concurrency if closed else load.max_concurrency, k, n) for k in range(n)]
    shares = deal(dealt, [w or 1 for w in slots])
    for k in range(n):
        share = shares[k]
        wl = replace(  # `workers` stays: a worker sends its share of the rate (the busy-wait choice)
            load,
            concurrency=split(load.concurrency, k, n),
            max_concurrency=split(load.max_concurrency, k, n),
        )
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(child, cfg, asdict(wl), share), daemon=True)
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    loop = asyncio.get_running_loop()
    ready: list[int] = []
    finished: dict[int, tuple[float, float, float | None]] = {}  # CPU s, wall s, loop lag p99 s
    measured_done: set[int] = set()
    all_done = asyncio.Event()
    all_ready = asyncio.Event()
    dead: list[int] = []
    lost: list[int] = []  # workers gone mid-point
    edge_taken = False  # the window's edge samples taken before the workers were let go
    problems: list[str] = []

    def stop_all() -> None:
        for other in pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                other.send(("stop",))

    def handle(k: int) -> None:
        c = pipes[k]
        try:
            while c.poll():
                msg = c.recv()
                kind = msg[0]
                if kind == "rec":
                    rec = RequestRecord.from_json(msg[1])
                    out.records.append(rec)
                    on_record(rec)
                elif kind == "ready":
                    # the message was stamped before it was read: on one shared clock this is
                    # the (small, positive) delivery time; anything else is another clock
                    delay = time.perf_counter_ns() - msg[1]
                    if not 0 <= delay < MAX_DELIVERY_NS:
                        problems.append(f"client worker {k} is on another clock ({delay} ns): use workers: 1")
                        all_ready.set()
                    ready.append(k)
                    if len(ready) == n:
                        all_ready.set()
                elif kind == "start":
                    # the earliest worker's start, not the first one read: another worker's message can
                    # arrive first though it started measuring later
                    first = not out.started_ns
                    out.started_ns = msg[1] if first else min(out.started_ns, msg[1])
                    if first and on_measure_start is not None and not edge_taken:
                        on_measure_start(msg[1])
                elif kind == "mdone":
                    # the measured requests of every worker are done: stop all cooldowns
                    measured_done.add(k)
                    if len(measured_done) == n:
                        stop_all()
                elif kind == "done":
                    finished[k] = (msg[1], msg[2], msg[3])
                    loop.remove_reader(c.fileno())
                    c.send(("bye",))  # releases the worker's thread waiting for a stop
                    if len(finished) == n:
                        all_done.set()
                    return
        except (EOFError, OSError):
            loop.remove_reader(c.fileno())
            if k not in ready:
                dead.append(k)
                all_ready.set()  # wake the start-up wait: it reports the dead worker
            elif k not in finished:
                # killed (out of memory) or failed mid-point: its unsent and in-flight requests are lost,
                # often the slow tail, so the point is not whole; the others stop now, not after cooldown
                lost.append(k)
                stop_all()
            finished.setdefault(k, (0.0, 0.0, None))
            if len(finished) == n:
                all_done.set()

    for k, c in enumerate(pipes):
        loop.add_reader(c.fileno(), handle, k)
    try:
        await asyncio.wait_for(all_ready.wait(), START_TIMEOUT_S)
        if problems:
            raise RuntimeError(problems[0])
        if dead:
            procs[dead[0]].join(5)
            raise RuntimeError(f"client worker {dead[0]} exited at start (code {procs[dead[0]].exitcode})")
        if warm:  # closed loop: warm the server up before any worker measures
            await run_warmup_here(client, load, warm, on_record, out)
        if on_measure_start is not None and (closed or (dealt and dealt[0].role == "measured")):
            # nothing is in flight (closed loop after its warmup, open loop without one): the window's edge
            # samples are taken before any worker sends; otherwise when the first worker starts measuring
            on_measure_start(time.perf_counter_ns())
            edge_taken = True
        t0 = max(t0_ns, time.perf_counter_ns() + 20_000_000)
        for c in pipes:
            with contextlib.suppress(OSError):  # a worker gone during the warmup: `lost` says so below
                c.send(("go", t0))
        await all_done.wait()
        if lost:
            procs[lost[0]].join(5)
            out.aborted = out.aborted or (
                f"client worker {lost[0]} exited mid-point (code {procs[lost[0]].exitcode}): "
                "its requests were not all measured"
            )
    finally:
        if not all_done.is_set():
            for c in pipes:
                try:
                    c.send(("stop",))
                except (OSError, BrokenPipeError):
                    pass
            try:
                await asyncio.wait_for(all_done.wait(), 10)
            except TimeoutError:
                pass
        for c in pipes:
            try:
                loop.remove_reader(c.fileno())
            except (ValueError, OSError):
                pass
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
        out.client["worker_cpu"] = list(finished.values())
