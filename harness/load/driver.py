"""Drives one load point: warmup, measured requests and cooldown, closed or open loop.

Closed loop: `concurrency` workers each send their next request when the previous one ends;
warmup requests run first and are not measured. Open loop: a seeded arrival draw
(`harness.load.arrivals`) schedules the measured and cooldown requests, the same whether warmup
precedes them or not (warmup gaps come from a stream of their own, before it), so the measured ones
meet a server already at its steady state and leave it loaded until they end.
Each record keeps its *scheduled* time; TTFT/E2E are measured from it (no coordinated omission)
and `sent_ns - scheduled_ns` is how late the harness sent it. Once every measured request is
done, the cooldown requests still queued or in flight are cancelled: they only kept the load up.
With `duration_s`, the measured requests not sent before the deadline (open loop: not *scheduled*
before it, however late a busy event loop dispatches them) go out unmeasured, as cooldown, so the
measured ones still in flight end under the same load rather than on a server that is emptying.

Every finished request (also failed or cancelled ones) is handed to `on_record` as soon as the
event loop goes on from its end (a closed-loop sender has sent its next request by then), and all
of them before the point returns, so the caller can append each to disk as it comes. A watchdog
polls `should_abort()` (engine died, Ctrl-C) and cancels the point; records completed so far are
kept. With
`workers > 1` the requests are spread over that many client processes
(`harness.load.workers`), each with its own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.client.aio import cancel_on_abort
from harness.client.openai_stream import RequestSpec, StreamClient
from harness.load.arrivals import intervals_s, offsets_s
from harness.load.cpu import CpuMeter, LoopLagProbe
from harness.records import RequestRecord

OnRecord = Callable[[RequestRecord], None]
Claim = Callable[[], "Job | None"]  # the next job of a list shared by client processes; None: none left
# at or below this rate per client process (rate_rps / workers) the sender busy-waits the last ms before
# a send
SPIN_MAX_RATE_RPS = 100.0


class WorkerStartFailed(RuntimeError):
    """A client process ended before it was ready (`harness.load.workers`)."""


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
    workers: int = 1


@dataclass
class PointOutcome:
    records: list[RequestRecord] = field(default_factory=list)
    aborted: str | None = None
    started_ns: int = 0
    ended_ns: int = 0
    client: dict[str, Any] = field(default_factory=dict)  # client_* columns (CPU, loop lag)


@dataclass
class Job:
    """One request to send: its id, spec, prebuilt bytes, role and (open loop) offset from t0."""

    request_id: int
    spec: RequestSpec
    raw: bytes
    role: str  # warmup | measured | cooldown
    offset_ns: int = 0


def plan_jobs(
    client: StreamClient,
    load: PointLoad,
    warmup: Sequence[RequestSpec],
    measured: Sequence[RequestSpec],
    cooldown: Sequence[RequestSpec],
    first_id: int,
) -> list[Job]:
    """Jobs in send order with prebuilt request bytes; open loop: with arrival offsets."""
    roles = ["warmup"] * len(warmup) + ["measured"] * len(measured) + ["cooldown"] * len(cooldown)
    specs = [*warmup, *measured, *cooldown]
    jobs = [
        Job(first_id + i, s, client.prepare(s), r) for i, (s, r) in enumerate(zip(specs, roles, strict=True))
    ]
    if load.rate_rps is not None and jobs:
        # the measured (and cooldown) requests' schedule is its own draw, the same whether warmup comes
        # first or not (`warmup_scope: engine` warms only a variant's first point, and a resume another);
        # warmup gaps come from a stream of their own, before it
        n_w = len(warmup)
        rest = offsets_s(len(jobs) - n_w, load.rate_rps, load.arrival, load.burstiness, load.seed)
        warm_gaps = intervals_s(n_w, load.rate_rps, load.arrival, load.burstiness, [load.seed, 1])
        warm = np.concatenate([[0.0], np.cumsum(warm_gaps)])
        offs = np.concatenate([warm[:-1], rest + warm[-1]])
        for j, o in zip(jobs, offs, strict=True):
            j.offset_ns = round(o * 1e9)  # nearest: a cumulative sum of gaps lands a hair early
    return jobs


class _Run:
    """State shared by the senders of one point in one process."""

    def __init__(
        self, client: StreamClient, load: PointLoad, point_id: str, out: PointOutcome, on_record: OnRecord
    ) -> None:
        self.client, self.load, self.point_id = client, load, point_id
        self.out, self.on_record = out, on_record
        self.measured_left = 0  # measured requests not yet ended
        self.measured_running = 0  # measured requests let through `gate` and not yet ended (open loop:
        # also those still waiting for a `max_concurrency` slot: they were due before the deadline)
        self.cut = False  # the deadline passed with measured requests left unsent
        # one of several client processes: its cooldown goes on until the parent stops it (when the
        # measured requests of every process are done), not when its own share is
        self.stop_cooldown_when_done = True
        self.all_measured_done = asyncio.Event()
        self.deadline_ns: int | None = None
        self.on_measure_start: Callable[[int], None] | None = None
        # closed loop in one of several processes that claim jobs from one shared list: this process's
        # measured requests are done once no measured job is left to claim and none of its own runs
        self.none_left_to_claim = False
        self._unhanded: list[RequestRecord] = []  # ended, not yet handed to `on_record`
        self._hand_on_error: Exception | None = None

    def past_deadline(self, at_ns: int | None = None) -> bool:
        """`at_ns` (default: now) is at or after the deadline."""
        at = time.perf_counter_ns() if at_ns is None else at_ns
        return self.deadline_ns is not None and at >= self.deadline_ns

    def _check_done(self) -> None:
        """Measured requests are done: all of them ended, or the deadline cut the rest and none is
        still running."""
        if self.measured_left <= 0 or ((self.cut or self.none_left_to_claim) and self.measured_running == 0):
            self.all_measured_done.set()

    def cut_if_late(self, job: Job, at_ns: int | None = None) -> bool:
        """A measured job at `at_ns` (default: now) at or after the deadline is cut: the point measures no
        more, and is over once no measured request runs. True when it was cut."""
        if job.role != "measured" or not self.past_deadline(at_ns):
            return False
        self.cut = True
        self._check_done()
        return True

    def gate(self, job: Job, scheduled_ns: int | None = None) -> Job | None:
        """The job to send now, or None to stop sending. Past `duration_s` a measured job is sent
        unmeasured instead (as cooldown: the load stays up while the measured ones in flight end);
        cooldown jobs go out only while measured requests are still running. `scheduled_ns`: the
        job's time in an open-loop schedule, which decides whether it falls before the deadline (a
        loop woken late must not turn a job due before it into cooldown)."""
        if self._hand_on_error is not None:
            raise self._hand_on_error
        if self.out.aborted:
            return None
        if self.cut_if_late(job, scheduled_ns):
            job = replace(job, role="cooldown")
        if job.role == "cooldown" and self.stop_cooldown_when_done and self.all_measured_done.is_set():
            return None
        self.measured_running += job.role == "measured"
        return job

    async def one(self, job: Job, scheduled_ns: int) -> None:
        rec = self._record(job, scheduled_ns)
        try:
            await self.client.send(rec, job.spec, job.raw)
        finally:
            self._ended(rec)

    def _record(self, job: Job, scheduled_ns: int) -> RequestRecord:
        role = job.role
        return RequestRecord(
            job.request_id,
            self.point_id,
            scheduled_ns,
            warmup=role != "measured",
            cooldown=role == "cooldown",
        )

    def _ended(self, rec: RequestRecord) -> None:
        self.out.records.append(rec)
        # `on_record` (the record's write, the progress display) runs once the loop has gone on: a
        # closed-loop sender sends its next request first (done in it, 0.3 ms a request kept the server
        # short of one and req/s low). A failed one goes at once: its check for a dead engine
        # (`run_point`) must stop the senders before their next send
        self._unhanded.append(rec)
        if rec.error_kind is not None:
            self.hand_on()
        elif len(self._unhanded) == 1:
            asyncio.get_running_loop().call_soon(self._hand_on_quietly)
        if not rec.warmup:
            self.measured_running -= 1
            self.measured_left -= 1
            self._check_done()

    def hand_on(self) -> None:
        """Hand the ended records to `on_record`, raising what it raised (the point fails with it; kept,
        to be raised again by every later call: the records after it are not handed on)."""
        if self._hand_on_error is not None:
            raise self._hand_on_error
        recs, self._unhanded = self._unhanded, []
        for i, rec in enumerate(recs):
            try:
                self.on_record(rec)
            except BaseException as e:  # a Ctrl-C in it too: the records after it stay to be handed on
                self._unhanded = recs[i + 1 :] + self._unhanded
                if isinstance(e, Exception):
                    self._hand_on_error = e
                raise

    def _hand_on_quietly(self) -> None:
        """`hand_on` as a loop callback: what it raises is raised again in the next sender to `gate` a
        job, and at the senders' end (a loop callback's exception would only be logged)."""
        with contextlib.suppress(Exception):
            self.hand_on()

    def never_sent(self, job: Job, scheduled_ns: int, why: str) -> None:
        """A measured job let through `gate` that was cancelled before it was sent: recorded as cancelled
        (a point that was stopped counts it among its requests, as it does those cancelled in flight)."""
        rec = self._record(job, scheduled_ns)
        rec.error_kind, rec.error, rec.done_ns = "cancelled", why, time.perf_counter_ns()
        self._ended(rec)

    async def closed(self, jobs: Sequence[Job], concurrency: int, claim: Claim | None = None) -> None:
        """`concurrency` senders, each taking the next job as its last one ends: from `jobs`, or with
        `claim` from a list shared with other processes (`claim()` None: none left)."""
        it = iter(jobs) if claim is None else iter(claim, None)

        async def worker() -> None:
            for job in it:
                if claim is not None and job.role != "measured" and not self.none_left_to_claim:
                    self.none_left_to_claim = True  # measured jobs come first in the list
                    self._check_done()
                sent = self.gate(job)
                if sent is None:
                    return
                await self.one(sent, time.perf_counter_ns())

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(jobs))))))
        finally:
            self.hand_on()
        if claim is not None and not self.none_left_to_claim:  # the list ran out on a measured job
            self.none_left_to_claim = True
            self._check_done()

    async def open(self, jobs: Sequence[Job], t0_ns: int) -> None:
        sem = asyncio.Semaphore(self.load.max_concurrency) if self.load.max_concurrency else None
        tasks: list[asyncio.Task[None]] = []
        spin = (self.load.rate_rps or 0) / max(1, self.load.workers) <= SPIN_MAX_RATE_RPS
        started = False
        edge: asyncio.Future[None] | None = None

        async def gated(job: Job, when_ns: int) -> None:
            if sem is None:
                await self.one(job, when_ns)
                return
            try:
                await sem.acquire()
            except asyncio.CancelledError:
                # a measured request (the point was stopped: at its normal end every measured one is
                # done); cooldown left waiting there is the end of the load, not a request, as before
                if job.role == "measured":
                    self.never_sent(job, when_ns, "cancelled while waiting for a max_concurrency slot")
                raise
            try:
                # a cooldown request whose slot freed as the last measured one ended is not sent: the
                # engine would only take its prefill into the point's end scrape
                if not (
                    job.role == "cooldown"
                    and self.stop_cooldown_when_done
                    and self.all_measured_done.is_set()
                ):
                    await self.one(job, when_ns)
            finally:
                sem.release()

        if (
            jobs
            and jobs[0].role == "measured"
            and self.on_measure_start is not None
            and self.stop_cooldown_when_done
        ):
            # nothing is in flight yet (no warmup) and this process keeps the whole schedule: the window's
            # edge samples (a /metrics scrape, NVML, CPU) are taken first, and the schedule starts after
            # them, so the engine's counters are read before any measured request reaches it
            self.on_measure_start(time.perf_counter_ns())
            shift = max(0, time.perf_counter_ns() + 5_000_000 - t0_ns)
            t0_ns += shift
            if self.deadline_ns is not None:
                self.deadline_ns += shift
            started = True
            self.out.started_ns = t0_ns + jobs[0].offset_ns
        try:
            for job in jobs:
                when_ns = t0_ns + job.offset_ns
                if job.role == "measured" and not started:
                    started = True
                    self.out.started_ns = when_ns
                    if self.on_measure_start is not None:
                        # after warmup sends: the edge samples are taken off the event loop, from one
                        # arrival gap before the first measured send on (in the loop they would hold back
                        # the requests due meanwhile, whose latencies count from their scheduled times);
                        # warmup still in flight at the engine rules out its token-count comparison
                        edge = asyncio.get_running_loop().run_in_executor(
                            None, self.on_measure_start, when_ns
                        )
                # due after duration_s: cut now, not once its time comes (at a low rate the wait is a
                # whole arrival gap); with no measured request running the point is over
                self.cut_if_late(job, when_ns)
                await _sleep_until_ns(when_ns, spin)
                sent = self.gate(job, when_ns)
                if sent is None:
                    break
                tasks.append(asyncio.create_task(gated(sent, when_ns)))
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if edge is not None:  # the window is open before the point ends
                await asyncio.gather(edge, return_exceptions=True)
            self.hand_on()


async def _sleep_until_ns(when_ns: int, spin: bool) -> None:
    """Sleep until `when_ns` (perf_counter_ns), never returning before it: latencies count from the
    scheduled time, so an early send would shorten them. With `spin` the last millisecond busy-waits
    (sends on time); without, the timer sleeps all the way and only the part it woke early is
    busy-waited (uvloop rounds timers to whole milliseconds on a cached clock: up to ~1.2 ms early)."""
    delay = (when_ns - time.perf_counter_ns()) / 1e9
    if spin:
        if delay > 0.0015:
            await asyncio.sleep(delay - 0.001)
    elif delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter_ns() < when_ns:
        await asyncio.sleep(0)


async def run_warmup_here(
    client: StreamClient, load: PointLoad, jobs: Sequence[Job], on_record: OnRecord, out: PointOutcome
) -> None:
    """Send warmup `jobs` closed loop, at most `load.concurrency` at a time, in this process."""
    await _Run(client, load, load.point_id, out, on_record).closed(jobs, load.concurrency or 1)


async def run_jobs_here(
    client: StreamClient,
    load: PointLoad,
    jobs: Sequence[Job],
    on_record: OnRecord,
    out: PointOutcome,
    t0_ns: int,
    on_measure_start: Callable[[int], None] | None = None,
    on_measured_done: Callable[[], None] | None = None,
    measured_from_ns: int | None = None,
    claim: Claim | None = None,
) -> None:
    """Run `jobs` in this process's event loop (one client process, or one worker of several).

    Alone, it returns once its measured requests are done (cancelling the cooldown). As a worker
    (`on_measured_done` given) it reports that moment and keeps sending cooldown until cancelled.
    `measured_from_ns`: in open loop, the point's first measured arrival, where `duration_s` counts
    from (a worker's own share may start later); by default this share's first. `claim`: closed loop,
    `jobs` is the list every worker claims its next job from (`claim()`), so none idles while another
    has jobs queued (requests of unequal lengths left a share done early and the point under its
    concurrency)."""
    run = _Run(client, load, load.point_id, out, on_record)
    run.on_measure_start = on_measure_start
    run.stop_cooldown_when_done = on_measured_done is None
    # claiming: how many measured jobs are this process's is known only as they are claimed
    run.measured_left = sys.maxsize if claim is not None else sum(1 for j in jobs if j.role == "measured")
    if not run.measured_left:
        run.all_measured_done.set()

    async def body() -> None:
        if load.rate_rps is not None:
            await run.open(jobs, t0_ns)
            return
        warm = [j for j in jobs if j.role == "warmup"]
        rest = [j for j in jobs if j.role != "warmup"]
        if warm:
            await run.closed(warm, min(len(warm), load.concurrency or 1))
        t_ns = time.perf_counter_ns()
        if on_measure_start is not None:  # edge samples before the first measured request is sent
            on_measure_start(t_ns)
        # a connection for every worker before the first measured send: opened all at once by the first
        # round instead, 64 of them held up the client's loop (TTFT p99 127 ms where 55 ms with them open).
        # After the edge samples: a server that gives each open connection a thread (llama-server) could
        # leave none for the metrics scrape
        await client.preconnect(min(load.concurrency or 1, len(rest)))
        # tok/s counts from the first send; the telemetry window opened at t_ns, so it also holds the
        # edge samples' moment, with nothing running
        out.started_ns = time.perf_counter_ns()
        if load.duration_s:
            run.deadline_ns = out.started_ns + int(load.duration_s * 1e9)
        await run.closed(rest, load.concurrency or 1, claim)

    if load.duration_s and load.rate_rps is not None:
        if measured_from_ns is None:
            measured_from_ns = t0_ns + next((j.offset_ns for j in jobs if j.role == "measured"), 0)
        run.deadline_ns = measured_from_ns + int(load.duration_s * 1e9)
    task = asyncio.create_task(body())
    waiter = asyncio.create_task(run.all_measured_done.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
            if on_measured_done is not None and run.all_measured_done.is_set():
                run.hand_on()  # every measured record is out before the parent hears they are done
                on_measured_done()
        elif on_measured_done is not None:
            run.hand_on()
            on_measured_done()
            await task  # cooldown until the parent cancels this worker
    finally:
        # measured requests all done (or we are cancelled): stop the cooldown ones
        waiter.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    # the records that ended as the cooldown was cancelled, and a write that failed meanwhile (the
    # cancelled body's own raise of it went into the gather's results)
    run.hand_on()


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
    cooldown_specs: Sequence[RequestSpec] = (),
    on_measure_end: Callable[[], None] | None = None,
) -> PointOutcome:
    """Run one point: warmup and cooldown are recorded with `warmup=True` (not measured).
    `on_measure_start(t_ns)` takes the window's edge samples before the first measured send;
    `on_measure_end()` those at its end, as soon as the measured requests are done, before the client
    is torn down."""
    out = PointOutcome()
    jobs = plan_jobs(client, load, warmup_specs, specs, cooldown_specs, first_id)
    meter = CpuMeter()
    probe = LoopLagProbe()
    task: asyncio.Task[None] | None = None

    def measure_start(t_ns: int) -> None:
        meter.restart()  # the client's CPU share over the measured requests, not its warmup
        if on_measure_start is not None:
            on_measure_start(t_ns)

    def record_and_watch(rec: RequestRecord) -> None:
        on_record(rec)
        # a dead engine fails requests faster than the watchdog polls: check at once
        if rec.error_kind in ("connect", "disconnected") and out.aborted is None:
            reason = should_abort()
            if reason:
                out.aborted = reason
                if task is not None:
                    task.cancel()

    async def body() -> None:
        probe.start()
        t0_ns = time.perf_counter_ns() + 5_000_000
        if load.workers > 1:
            from harness.load.workers import run_jobs_in_workers

            await run_jobs_in_workers(
                client, load, jobs, record_and_watch, out, t0_ns, measure_start, on_measure_end
            )
        else:
            await run_jobs_here(client, load, jobs, record_and_watch, out, t0_ns, measure_start)
            if on_measure_end is not None:
                on_measure_end()

    task = asyncio.create_task(body())
    # once a failed record has cut the point (`record_and_watch`), its teardown is let finish: a second
    # cancel landed in it and left the client processes unjoined
    if reason := await cancel_on_abort(
        task, lambda: None if out.aborted is not None else should_abort(), watch_interval_s
    ):
        out.aborted = reason
    try:
        await task
    except asyncio.CancelledError:
        if out.aborted is None:
            raise
    except WorkerStartFailed:
        # a terminal's Ctrl-C kills the client processes still starting (they ignore it from their first
        # line on): the point was cut by that, not by a fault. The watchdog may have cut it already: its
        # cancel is lost where what the start-up waits for is done in the same turn (3.11's `wait_for`
        # then returns the result)
        if out.aborted is None:
            if not (reason := should_abort()):
                raise
            out.aborted = reason
    finally:
        probe.stop()
    if out.aborted is None:
        out.aborted = should_abort()  # the engine may have died after the last poll
    out.ended_ns = window_end_ns(out.records, out.aborted, time.perf_counter_ns())
    here = meter.read()
    workers = out.client.pop("worker_cpu", [])
    out.client.update(client_columns(here, workers, probe.lag_p99_s(), load.workers))
    return out


def window_end_ns(records: Sequence[RequestRecord], aborted: str | None, now_ns: int) -> int:
    """Where a point's measured window (and so its telemetry window) ends: when its last measured
    request ended. Not when the client finished: cancelling cooldown requests and, with several client
    processes, reporting back and joining them takes up to a second in which the engine idles, and its
    energy would count against the point's tokens. A point cut short ends now."""
    done = [r.done_ns for r in records if not r.warmup and r.done_ns]
    return max(done) if done and aborted is None else now_ns


def client_columns(
    here: tuple[float, float],
    workers: list[tuple[float, float, float | None]],
    loop_lag_p99_s: float | None,
    n_workers: int,
) -> dict[str, Any]:
    """client_* columns: CPU seconds of all client processes, the busiest one's share of a core,
    and the 99th percentile of how late an event loop woke (a saturated loop wakes late): the latest of
    this process's and the client processes' (`workers`: CPU s, wall s, lag p99 s each), whose loops
    stamp the chunks.

    util = process CPU seconds / wall seconds of that process; saturated = busiest util >= 0.85.
    """
    procs = [here, *((c, w) for c, w, _ in workers)]
    cpu = sum(c for c, _ in procs)
    util = max((c / w for c, w in procs if w > 0), default=0.0)
    lags = [x for x in (loop_lag_p99_s, *(lag for _, _, lag in workers)) if x is not None]
    return {
        "client_procs": 1 + len(workers) if n_workers > 1 else 1,
        "client_cpu_s": round(cpu, 4),
        "client_cpu_util_max": round(util, 4),
        "client_loop_lag_s_p99": max(lags, default=None),
        "client_saturated": util >= 0.85,
    }
