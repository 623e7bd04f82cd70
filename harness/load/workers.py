"""Several client processes for one point, each with its own event loop.

One event loop is one core: at high rates a single client process saturates before the server
does. Here the jobs of a point go to `load.workers` processes: in closed loop every process holds the
whole list and claims its next job from it as one of its slots frees (`claimer`, an index they share),
so all slots stay busy until the list is done whatever the requests' lengths; in open loop they are
dealt in turn, in proportion to the slots each holds (`deal`). All stamps
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
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from multiprocessing.connection import Connection
from typing import Any

from harness.client.openai_stream import StreamClient
from harness.load.driver import (
    Job,
    OnRecord,
    PointLoad,
    PointOutcome,
    WorkerStartFailed,
    run_jobs_here,
    run_warmup_here,
)
from harness.records import RequestRecord

START_TIMEOUT_S = 120.0
CLAIM_TIMEOUT_S = 2.0  # a claim takes microseconds; a lock held this long belongs to a dead process
MAX_DELIVERY_NS = 120_000_000_000  # a "ready" message older than this means another clock


def split(n: int | None, k: int, workers: int) -> int | None:
    """Share of worker k of a total n (concurrency, cap): n // workers, plus one for the first
    n % workers, at least 1 each."""
    if n is None:
        return None
    return max(1, n // workers + (1 if k < n % workers else 0))


def ended(exitcode: int | None) -> str:
    """How a client process ended: `was killed by SIGKILL` (code -9), `exited (code 1)`."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name} (code {exitcode})"
        except ValueError:
            pass
    return f"exited (code {exitcode})"


def deal(jobs: Sequence[Job], weights: Sequence[int]) -> list[list[Job]]:
    """Jobs dealt to workers in proportion to `weights` (their `max_concurrency` shares), in turn: each
    job goes to the worker furthest below its share so far (ties: the lower index), so each worker's
    arrivals stay spread over the whole schedule (open loop; closed loop claims jobs instead)."""
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


class _Outbox:
    """A worker's messages to the parent, written to its pipe by a thread of their own, in the order they
    were put. A record of a long stream pickles to hundreds of kB, more than a pipe holds: written from
    the event loop, it held the loop (and the stamps of every other stream) until the parent had read
    it all. A parent gone (killed) ends the writing; `close` waits for what is queued."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._q: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="worker-outbox", daemon=True)
        self._thread.start()

    def put(self, msg: tuple[Any, ...]) -> None:
        """Queue one message (from any thread)."""
        self._q.put(msg)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()

    def _write(self) -> None:
        while (msg := self._q.get()) is not None:
            try:
                self._conn.send(msg)
            except (EOFError, OSError):  # the parent is gone: nobody to tell, drain and stop
                while self._q.get() is not None:
                    pass
                return
            except Exception:  # one message that cannot be sent (not picklable): said, and the rest go on
                with contextlib.suppress(OSError):
                    traceback.print_exc()


def claimer(jobs: Sequence[Job], taken: Any) -> Callable[[], Job | None]:
    """The next unclaimed job of `jobs`, a list every client process of a point holds, by the index
    `taken` (a multiprocessing Value shared by them); None when all are claimed."""

    lock = taken.get_lock()

    def claim() -> Job | None:
        # a process killed holding it (out of memory) would hold every other one here, its loop frozen
        if not lock.acquire(timeout=CLAIM_TIMEOUT_S):
            raise RuntimeError(
                f"the shared job list was locked for {CLAIM_TIMEOUT_S:g} s (a client process killed?)"
            )
        try:
            i = taken.value
            if i >= len(jobs):
                return None
            taken.value = i + 1
        finally:
            lock.release()
        return jobs[i]

    return claim


def _worker_main(
    conn: Connection, cfg: dict[str, Any], load: dict[str, Any], jobs: list[Job], taken: Any = None
) -> None:
    # a terminal's Ctrl-C or hangup, or a SIGTERM to the group, reaches these processes too: the parent
    # stops the point and tells each worker over its pipe, so none dies with its requests in flight (a
    # worker's own KeyboardInterrupt was a traceback of some 15 lines each). One that arrives while the
    # interpreter starts, before this, kills the worker: `run_point` then says the point was interrupted.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    from harness.client.aio import no_full_collections, run_loop
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
        t0_ns, measured_from_ns = msg[1], msg[2]
        out = PointOutcome()
        pl = PointLoad(**load)
        outbox = _Outbox(conn)

        def on_record(rec: RequestRecord) -> None:
            outbox.put(("rec", rec.to_json()))  # the record is whole: nothing changes it after this

        def on_start(t_ns: int) -> None:
            meter.restart()  # this worker's share of a core over its measured requests
            outbox.put(("start", t_ns))  # called off the event loop in open loop: the queue takes both

        stop: asyncio.Future[Any] | None = None
        failed: Exception | None = None
        try:
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
                        lambda: outbox.put(("mdone",)),
                        measured_from_ns,
                        claimer(jobs, taken) if taken is not None else None,
                    )
                )
                stop = loop.run_in_executor(None, conn.recv)
                await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not run.done():
                    run.cancel()
                (ran,) = await asyncio.gather(run, return_exceptions=True)
                failed = ran if isinstance(ran, Exception) else None  # not a cancel: requests left unrun
            probe.stop()
            cpu_s, wall_s = meter.read()
        except Exception as e:  # the client's own set-up or teardown
            failed = e
        try:
            if stop is not None and stop.done() and stop.exception() is not None:
                return  # EOF: the parent is gone, nobody to tell
            if failed is not None:  # the parent answers with a stop, which ends the read in `stop`
                outbox.put(("failed", "".join(traceback.format_exception_only(failed)).strip()))
                with contextlib.suppress(OSError):  # a terminal gone (hangup): nowhere to print it
                    traceback.print_exception(failed)
            else:
                outbox.put(("done", cpu_s, wall_s, probe.lag_p99_s()))
        finally:  # what was queued reaches the parent
            outbox.close()

    try:
        with no_full_collections():
            run_loop(main())
    except (EOFError, OSError):  # the parent is gone (killed): its pipe closed under a send or a read
        pass
    finally:
        conn.close()


class _Workers:
    """The parent's side of a point's client processes: their pipes, and what each has said so far.
    `handle` reads a process's messages as they arrive (an event-loop reader per pipe)."""

    def __init__(
        self, out: PointOutcome, on_record: OnRecord, on_measured: Callable[[], None] | None = None
    ) -> None:
        self.out, self.on_record = out, on_record
        self.on_measured = on_measured  # called once every worker's measured requests are done
        self.loop = asyncio.get_running_loop()
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        self.ready: list[int] = []
        # CPU s, wall s, loop lag p99 s of each process that said it is done (zeros: it died or failed)
        self.finished: dict[int, tuple[float, float, float | None]] = {}
        self.measured_done: set[int] = set()
        self.all_done = asyncio.Event()
        self.all_ready = asyncio.Event()
        self.dead: list[int] = []  # gone before they were ready
        self.lost: list[int] = []  # gone or failed mid-point
        self.failed: dict[int, str] = {}  # an error in their own run (what it was)
        self.problems: list[str] = []
        self.spawned = False  # every process started and read from
        self.error: Exception | None = None  # raised by `on_record`: the point fails with it
        self.taken: Any = None  # closed loop: the shared index of the next job to claim (`spawn`)

    def spawn(
        self, cfg: dict[str, Any], loads: list[PointLoad], shares: list[list[Job]], shared: bool = False
    ) -> None:
        """Start a process for each load and share; `shared`: the shares are one list, which the processes
        claim their jobs from one at a time (closed loop)."""
        ctx = mp.get_context("spawn")
        # the next job of the list to claim; held here until the processes are joined: its lock is a
        # named semaphore, unlinked when the last reference in this process goes (before a process
        # started later had opened it)
        self.taken = ctx.Value("q", 0) if shared else None
        for load, share in zip(loads, shares, strict=True):
            parent, child = ctx.Pipe()
            args = (child, cfg, asdict(load), share, self.taken)
            p = ctx.Process(target=_worker_main, args=args, daemon=True)
            p.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(p)
        for k, c in enumerate(self.pipes):
            self.loop.add_reader(c.fileno(), self.handle, k)
        self.spawned = True

    def stop_all(self) -> None:
        for other in self.pipes:
            with contextlib.suppress(OSError, BrokenPipeError):
                other.send(("stop",))

    def handle(self, k: int) -> None:
        c = self.pipes[k]
        while True:
            try:
                if not c.poll():
                    return
                msg = c.recv()
            except (EOFError, OSError):
                self._gone(k)
                return
            try:
                if self._message(k, msg):
                    return
            except Exception as e:  # `on_record` (the record's write) failed: not the pipe; the point fails
                if self.error is None:
                    self.error = e
                    self.stop_all()

    def _message(self, k: int, msg: tuple[Any, ...]) -> bool:
        """Act on one message of process `k`; True when it was its last (`done` or `failed`)."""
        n, out, kind = len(self.pipes), self.out, msg[0]
        if kind == "rec":
            rec = RequestRecord.from_json(msg[1])
            out.records.append(rec)
            self.on_record(rec)
        elif kind == "ready":
            # the message was stamped before it was read: on one shared clock this is the (small,
            # positive) delivery time; anything else is another clock
            delay = time.perf_counter_ns() - msg[1]
            if not 0 <= delay < MAX_DELIVERY_NS:
                self.problems.append(f"client worker {k} is on another clock ({delay} ns): use workers: 1")
                self.all_ready.set()
            self.ready.append(k)
            if len(self.ready) == n:
                self.all_ready.set()
        elif kind == "start":
            # the earliest worker's start, not the first one read: another worker's message can arrive
            # first though it started measuring later
            out.started_ns = min(out.started_ns, msg[1]) if out.started_ns else msg[1]
        elif kind == "mdone":
            # the measured requests of every worker are done: stop all cooldowns
            self.measured_done.add(k)
            if len(self.measured_done) == n:
                self.stop_all()
                if self.on_measured is not None:
                    self.on_measured()
        elif kind in ("done", "failed"):
            if kind == "failed":  # an error in the worker's own run: its requests were not all run
                self.failed[k] = msg[1]
                self.lost.append(k)
                self.stop_all()
            self.finished[k] = (msg[1], msg[2], msg[3]) if kind == "done" else (0.0, 0.0, None)
            self.loop.remove_reader(self.pipes[k].fileno())
            with contextlib.suppress(OSError):
                self.pipes[k].send(("bye",))  # releases the worker's thread waiting for a stop
            if len(self.finished) == n:
                self.all_done.set()
            return True
        return False

    def _gone(self, k: int) -> None:
        self.loop.remove_reader(self.pipes[k].fileno())
        if k not in self.ready:
            self.dead.append(k)
            self.all_ready.set()  # wake the start-up wait: it reports the dead worker
        elif k not in self.finished:
            # killed (out of memory) or failed mid-point: its unsent and in-flight requests are lost,
            # often the slow tail, so the point is not whole; the others stop now, not after cooldown
            self.lost.append(k)
            self.stop_all()
        self.finished.setdefault(k, (0.0, 0.0, None))
        if len(self.finished) == len(self.pipes):
            self.all_done.set()

    async def close(self) -> None:
        """Stop what still runs (a point cut short), reap the processes (a start that failed part-way has
        no readers to say they are done: not waited for), and close the pipes. The processes ignore
        SIGTERM (`_worker_main`): one still running after its wait, or when a second Ctrl-C cuts the wait
        short, is killed."""
        try:
            if self.spawned and not self.all_done.is_set():
                self.stop_all()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.all_done.wait(), 10)
        finally:
            for c in self.pipes:
                with contextlib.suppress(ValueError, OSError):
                    self.loop.remove_reader(c.fileno())
            if not self.spawned:
                self.stop_all()
            try:
                until = time.monotonic() + 5
                for p in self.procs:
                    p.join(timeout=max(0.0, until - time.monotonic()))
            finally:
                for p in self.procs:
                    if p.is_alive():
                        p.kill()
                        p.join(timeout=5)
                for c in self.pipes:
                    c.close()


async def run_jobs_in_workers(
    client: StreamClient,
    load: PointLoad,
    jobs: Sequence[Job],
    on_record: OnRecord,
    out: PointOutcome,
    t0_ns: int,
    on_measure_start: Callable[[int], None] | None = None,
    on_measure_end: Callable[[], None] | None = None,
) -> None:
    """Run `jobs` in `load.workers` processes; fills `out.records` and `out.client['worker_cpu']` (each
    process's CPU seconds, wall seconds and event-loop lag p99). `on_measure_end()` is called once every
    process's measured requests are done, as they are told to stop (before they wind down and are
    joined)."""
    n = load.workers
    closed = load.rate_rps is None
    warm = [j for j in jobs if j.role == "warmup"] if closed else []
    dealt = [j for j in jobs if j.role != "warmup"] if closed else list(jobs)
    slots = [split(load.concurrency if closed else load.max_concurrency, k, n) for k in range(n)]
    # closed loop: one list, each process claiming its next job as a slot frees (dealt in advance, a
    # process whose share held shorter requests ran out early and the point ran under its concurrency);
    # open loop: each process keeps its share of the schedule
    shares = [dealt] * n if closed else deal(dealt, [w or 1 for w in slots])
    # `workers` stays in each share's load: a worker sends its share of the rate (the busy-wait choice)
    loads = [
        replace(
            load, concurrency=split(load.concurrency, k, n), max_concurrency=split(load.max_concurrency, k, n)
        )
        for k in range(n)
    ]
    w = _Workers(out, on_record, on_measure_end)
    edge: asyncio.Task[None] | None = None
    opening: list[bool] = []  # the window's edge samples have started (set by `_open_window_at`)
    try:
        w.spawn(_client_config(client), loads, shares, shared=closed)
        # not `wait_for`: on 3.11 it swallows a cancel (the point cut by a Ctrl-C) that lands in the turn its
        # wait is done, and the whole point would then run
        async with asyncio.timeout(START_TIMEOUT_S):
            await w.all_ready.wait()
        if w.problems:
            raise RuntimeError(w.problems[0])
        if w.dead:
            k = w.dead[0]
            w.procs[k].join(5)
            # a fault, or a Ctrl-C while its interpreter started (`run_point` tells them apart)
            raise WorkerStartFailed(f"client worker {k} {ended(w.procs[k].exitcode)} at start")
        if warm:  # closed loop: warm the server up before any worker measures
            await run_warmup_here(client, load, warm, on_record, out)
        first = min((j for j in dealt if j.role == "measured"), key=lambda j: j.offset_ns, default=None)
        edge_now = closed or (first is not None and first.offset_ns == min(j.offset_ns for j in dealt))
        if on_measure_start is not None and edge_now:
            # nothing is in flight (closed loop after its warmup, open loop without one): the window's edge
            # samples are taken before any worker sends
            on_measure_start(time.perf_counter_ns())
        t0 = max(t0_ns, time.perf_counter_ns() + 20_000_000)
        # open loop: the point's first measured arrival, for every worker (its deadline counts from it)
        measured_from = t0 + first.offset_ns if first is not None and not closed else None
        for c in w.pipes:
            with contextlib.suppress(OSError):  # a worker gone during the warmup: `lost` says so below
                c.send(("go", t0, measured_from))
        if on_measure_start is not None and not edge_now and first is not None:
            edge = asyncio.create_task(_open_window_at(on_measure_start, t0, dealt, first, opening))
        await w.all_done.wait()
        if closed and (sends := [r.sent_ns for r in out.records if not r.warmup and r.sent_ns]):
            # the first measured send: the processes said when they began, before opening their
            # connections (milliseconds that the window, and its energy, must not hold)
            out.started_ns = min(sends)
        if w.error is not None:
            raise w.error
        if w.lost:
            k = w.lost[0]
            w.procs[k].join(5)
            how = f"failed ({w.failed[k]})" if k in w.failed else ended(w.procs[k].exitcode)
            out.aborted = out.aborted or f"client worker {k} {how} mid-point: its requests were not all run"
    finally:
        if w.spawned and not w.all_done.is_set():
            w.stop_all()  # cut: no more load while the window's edge samples end
        if edge is not None:
            if not opening:  # cut short before its first measured arrival: no window is opened
                edge.cancel()
            await asyncio.gather(edge, return_exceptions=True)  # else it is open before the point ends
        await w.close()
        out.client["worker_cpu"] = list(w.finished.values())


async def _open_window_at(
    on_measure_start: Callable[[int], None], t0_ns: int, jobs: Sequence[Job], first: Job, opening: list[bool]
) -> None:
    """Open loop after warmup sends: the window opens at the first measured arrival of the whole point,
    known here from the schedule (the first worker to say it started measuring may not hold that
    arrival). Its edge samples are taken off the event loop from the arrival before it on, as in one
    process; `opening` gets an item once they have started (from then on the task is waited for, not
    cancelled: the samples run on in their thread)."""
    before = max((j.offset_ns for j in jobs if j.offset_ns < first.offset_ns), default=0)
    await asyncio.sleep(max(0.0, (t0_ns + before - time.perf_counter_ns()) / 1e9))
    opening.append(True)
    await asyncio.get_running_loop().run_in_executor(None, on_measure_start, t0_ns + first.offset_ns)
