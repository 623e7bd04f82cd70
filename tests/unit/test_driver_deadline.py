"""`load.duration_s`: the point stops sending measured requests at the deadline, and the ones still
in flight end under load (the rest go out unmeasured, as cooldown), against `harness serve-fake`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.process import ManagedProcess, free_port
from harness.load.driver import PointLoad, PointOutcome, run_point
from harness.records import RequestRecord

TTFT_MS, ITL_MS = 20, 10


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "harness", "serve-fake", "--port", str(port)]
    proc = ManagedProcess(
        [*cmd, "--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS)], tmp_path_factory.mktemp("f") / "f.log"
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    proc.wait_healthy(url + "/health", 30)
    yield url
    proc.stop()


def _point(url: str, *args: Any, **kwargs: Any) -> PointOutcome:
    """`run_point(client, *args, **kwargs)` against the fake server at `url`, run to its end."""

    async def go() -> PointOutcome:
        async with StreamClient(url, "fake", extra_body={"ignore_eos": True}) as c:
            return await run_point(c, *args, **kwargs)

    return asyncio.run(go())


def _run(url: str, load: PointLoad) -> tuple[PointOutcome, list[RequestRecord]]:
    # short and long requests by turns (50 ms / 410 ms): the closed-loop workers drift apart, so at the
    # deadline one is mid-request while the other picks its next job
    specs = [RequestSpec("hello world", n) for n in (4, 40) * 100]

    out = _point(url, load, [], specs, 0, lambda r: None)
    return out, sorted(out.records, key=lambda r: r.sent_ns or r.scheduled_ns)


@pytest.mark.parametrize(
    "load",
    [
        PointLoad("closed", concurrency=2, duration_s=0.6),
        PointLoad("open", rate_rps=20.0, arrival="constant", duration_s=0.6),
    ],
    ids=["closed", "open"],
)
def test_deadline_stops_measuring_and_keeps_the_load_until_measured_end(fake: str, load: PointLoad) -> None:
    out, recs = _run(fake, load)
    measured = [r for r in recs if not r.warmup]
    after = [r for r in recs if r.warmup]
    deadline = out.started_ns + int(0.6e9)
    # measured: only what was sent before the deadline, a handful of the 200, all complete
    assert 2 <= len(measured) <= 30 and all(r.ok for r in measured)
    assert all(r.sent_ns < deadline for r in measured)
    last_end = max(r.done_ns or 0 for r in measured)
    assert last_end > deadline  # some were still running at the deadline ...
    # ... and requests kept arriving while they ran (sent after the deadline, unmeasured)
    assert any(deadline <= r.sent_ns < last_end for r in after), [(r.sent_ns, r.error_kind) for r in after]
    # not the whole remaining list: only while measured requests were still running
    assert len(after) <= 12
    # the unmeasured ones still running when the last measured ended were cut off there
    assert all(r.ok or r.error_kind == "cancelled" for r in after)


def _two_requests(name: str, url: str) -> Any:
    """A scenario of two closed-loop requests to the fake endpoint at `url`."""
    from harness.scenario import parse_scenario

    return parse_scenario(
        {
            "name": name,
            "engine": {"type": "external", "base_url": url, "model": {"source": "served", "name": "fake"}},
            "workload": {"input_tokens": 8, "output_tokens": 4},
            "load": {"concurrency": [1], "requests": 2, "warmup_requests": 0},
        }
    )


def test_an_unexpected_error_mid_run_marks_the_run_failed(fake: str, tmp_path: Path) -> None:
    """A bug (here: a telemetry factory that raises) must not leave the manifest at `running`."""
    from harness.results import read_manifest
    from harness.runner import run_scenario

    s = _two_requests("boom", fake)

    def boom(scenario: object, engine: object) -> None:
        raise RuntimeError("telemetry exploded")

    with pytest.raises(RuntimeError, match="telemetry exploded"):
        run_scenario(s, tmp_path, telemetry=boom, show_progress=False)  # type: ignore[arg-type]
    (run,) = tmp_path.glob("*-boom")
    m = read_manifest(run)
    assert m["status"] == "failed" and m["status_message"] == "RuntimeError: telemetry exploded"
    assert "finished_utc" in m


def test_a_full_disk_mid_run_names_the_run_directory(
    fake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pandas and pyarrow raise ENOSPC without a file name: the error says which run holds what was kept."""
    import errno

    from harness.results import RunDir
    from harness.runner import RunWriteFailed, run_scenario

    s = _two_requests("full", fake)

    def full(self: RunDir, rows: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunDir, "write_points", full)
    with pytest.raises(RunWriteFailed) as e:
        run_scenario(s, tmp_path, show_progress=False)
    (run,) = tmp_path.glob("*-full")
    assert e.value.run_dir == run and str(e.value) == "No space left on device" and e.value.resumable
    # a rate search is run again, not resumed: the error must not offer a resume that is refused
    with pytest.raises(RunWriteFailed) as e:
        run_scenario(s, tmp_path / "search", show_progress=False, find_max_goodput=True)
    assert not e.value.resumable
    assert len((run / "requests.jsonl").read_text().splitlines()) == 2  # the records written are kept
    # the run is over: its directory's lock is let go, so another process's --resume may take it
    from harness.results import _LOCKED

    assert os.path.realpath(run) not in _LOCKED


def _in_flight(recs: list[RequestRecord], t_ns: int) -> int:
    return sum(1 for r in recs if r.sent_ns and r.sent_ns <= t_ns < (r.done_ns or 2**63))


def test_two_client_processes_keep_the_load_until_both_shares_end(fake: str) -> None:
    """Short (50 ms) and long (410 ms) measured requests by turns: the short ones are done long before
    the long ones, and the process whose slots they held must keep sending cooldown until the other's
    measured ones end."""
    load = PointLoad("w2", concurrency=4, workers=2)
    measured = [RequestSpec("hello world", n) for n in (4, 40) * 4]
    cooldown = [RequestSpec("hello world", 4)] * 80

    out = _point(fake, load, [], measured, 0, lambda r: None, cooldown_specs=cooldown)
    recs = out.records
    m = [r for r in recs if not r.warmup]
    assert len(m) == 8 and all(r.ok for r in m)
    short_end = max(r.done_ns or 0 for r in m if r.request_id % 2 == 0)
    long_end = max(r.done_ns or 0 for r in m if r.request_id % 2 == 1)
    assert long_end - short_end > 300_000_000  # the short ones ended long before the long ones
    # between the two: the long measured streams and cooldown streams in the other slots, all but
    # the instants between one cooldown request's end and the next one's send (sampled at 50 instants)
    lo, hi = short_end + 50_000_000, long_end - 50_000_000
    counts = [_in_flight(recs, lo + k * (hi - lo) // 49) for k in range(50)]
    assert max(counts) == 4 and sum(c == 4 for c in counts) >= 40, counts
    # and the cooldown stopped once the last measured request ended (the stop crosses two pipes: a
    # cooldown request may still go out in those few milliseconds)
    late = [(r.sent_ns - long_end) / 1e6 for r in recs if r.warmup and r.sent_ns and r.sent_ns >= long_end]
    assert all(ms < 50 for ms in late), late
    assert len(recs) < 8 + 40  # not process 0's whole cooldown share


@pytest.mark.parametrize("workers", [1, 4])
def test_an_open_loop_deadline_counts_from_the_points_first_measured_arrival(fake: str, workers: int) -> None:
    """Constant arrivals 200 ms apart after one warmup, `duration_s: 1.0`: the measured ones are those
    due in the first second, whatever the client processes. Each of 4 processes had counted the second
    from its own first measured arrival, up to three gaps later, and measured the arrivals at 1.0-1.4 s."""
    load = PointLoad("d", rate_rps=5.0, arrival="constant", duration_s=1.0, workers=workers)
    specs = [RequestSpec("hello world", 2)] * 12
    out = _point(fake, load, [RequestSpec("hello world", 2)], specs, 0, lambda r: None)
    measured = sorted(r.scheduled_ns for r in out.records if not r.warmup)
    assert measured[0] == out.started_ns
    assert [round((t - measured[0]) / 1e8) for t in measured] == [0, 2, 4, 6, 8]


def test_open_loop_requests_queued_for_a_slot_at_the_deadline_are_still_measured(fake: str) -> None:
    """Open loop with `max_concurrency: 1` at 40 req/s of 50 ms requests: a queue builds. The requests
    due before the deadline but still waiting for the slot there are measured to the end (their TTFT
    includes the wait), not dropped or cancelled: they are the most-delayed ones."""
    load = PointLoad("capped", rate_rps=40.0, arrival="constant", max_concurrency=1, duration_s=0.5)
    specs = [RequestSpec("hello world", 4)] * 60

    out = _point(fake, load, [], specs, 0, lambda r: None)
    measured = sorted((r for r in out.records if not r.warmup), key=lambda r: r.scheduled_ns)
    deadline = out.started_ns + int(0.5e9)
    # 40 req/s for 0.5 s: the 20 due before the deadline (the first at 0), each 50 ms, one at a time
    assert len(measured) == 20 and all(r.ok for r in measured), [
        (r.request_id, r.error_kind) for r in measured
    ]
    assert all(r.scheduled_ns < deadline for r in measured)
    assert measured[-1].sent_ns is not None and measured[-1].sent_ns > deadline  # waited for the slot
    assert (measured[-1].first_token_ns or 0) - measured[-1].scheduled_ns > 400_000_000


def test_open_loop_requests_waiting_for_a_slot_when_the_point_is_stopped_are_recorded_as_cancelled(
    fake: str,
) -> None:
    """Open loop with `max_concurrency: 1` at 40 req/s of 50 ms requests, stopped after 0.5 s: the
    requests queued for the slot were dropped without a record, so the stopped point counted 1 request
    of the ~20 that had arrived. Every arrival before the stop has a record; those never sent say why."""
    load = PointLoad("capped", rate_rps=40.0, arrival="constant", max_concurrency=1)
    specs = [RequestSpec("hello world", 4)] * 60
    t0 = time.monotonic()

    def stop() -> str | None:
        return "ctrl-c" if time.monotonic() - t0 > 0.5 else None

    seen: list[RequestRecord] = []  # what goes on to requests.jsonl
    out = _point(fake, load, [], specs, 0, seen.append, stop, 0.05)
    assert out.aborted == "ctrl-c"
    measured = sorted((r for r in out.records if not r.warmup), key=lambda r: r.scheduled_ns)
    waited = [r for r in measured if r.error == "cancelled while waiting for a max_concurrency slot"]
    assert len(measured) >= 15 and len(waited) >= 5, [(r.request_id, r.error) for r in measured]
    assert all(r.error_kind == "cancelled" and not r.sent_ns for r in waited)
    assert all(r.done_ns is not None and r.done_ns >= r.scheduled_ns for r in waited)
    assert all(any(s is r for s in seen) for r in waited)
    # arrivals 25 ms apart, none skipped: the records are the schedule up to the stop
    ids = [r.request_id for r in measured]
    assert ids == list(range(len(ids)))
    # a point that ends as planned leaves its cooldown queue unrecorded, as ever: it was the load's tail
    load = PointLoad("capped", rate_rps=100.0, arrival="constant", max_concurrency=1, duration_s=0.3)
    out = _point(fake, load, [], specs * 3, 0, lambda r: None)
    assert out.aborted is None
    assert not [r for r in out.records if r.error == "cancelled while waiting for a max_concurrency slot"]
    assert all(r.ok for r in out.records if not r.warmup)


def test_open_loop_requests_scheduled_before_the_deadline_stay_measured_when_the_loop_is_late(
    fake: str,
) -> None:
    """Which open-loop requests belong to the point is decided by the schedule, not by how late a busy
    event loop dispatches them: here the loop is held 0.6 s (past the 0.5 s deadline) by the first
    record's callback, and the 10 requests due before the deadline are still measured."""
    load = PointLoad("late", rate_rps=20.0, arrival="constant", duration_s=0.5)
    specs = [RequestSpec("hello world", 4)] * 30
    held: list[int] = []

    def on_record(r: RequestRecord) -> None:
        if not held:
            held.append(r.request_id)
            time.sleep(0.6)  # the event loop: nothing else runs meanwhile

    out = _point(fake, load, [], specs, 0, on_record)
    measured = sorted((r for r in out.records if not r.warmup), key=lambda r: r.scheduled_ns)
    deadline = out.started_ns + int(0.5e9)
    assert len(measured) == 10 and all(r.ok for r in measured), [
        (r.request_id, r.error_kind) for r in measured
    ]
    assert all(r.scheduled_ns < deadline for r in measured)
    late = [r for r in measured if (r.sent_ns or 0) >= deadline]
    assert len(late) >= 5  # sent after the deadline, measured all the same (their TTFT holds the delay)
    assert all((r.first_token_ns or 0) - r.scheduled_ns > (deadline - r.scheduled_ns) for r in late)


def test_an_open_loop_point_ends_at_its_deadline_not_one_arrival_gap_later(fake: str) -> None:
    """0.1 req/s for 2 s: only the first request is due before the deadline; the point ended when the
    second one's time came, 10 s later (at 0.01 req/s, 100 s)."""
    load = PointLoad("slow", rate_rps=0.1, arrival="constant", duration_s=2.0)
    specs = [RequestSpec("hello world", 4)] * 50

    t0 = time.monotonic()
    out = _point(fake, load, [], specs, 0, lambda r: None)
    assert time.monotonic() - t0 < 5.0
    measured = [r for r in out.records if not r.warmup]
    assert len(measured) == 1 and measured[0].ok


def test_two_closed_loop_client_processes_measure_only_after_the_warmup(fake: str) -> None:
    load = PointLoad("w2warm", concurrency=2, workers=2)
    warm = [RequestSpec("hello world", 40)]  # 410 ms
    measured = [RequestSpec("hello world", 4)] * 8

    out = _point(fake, load, warm, measured, 0, lambda r: None)
    w = [r for r in out.records if r.warmup]
    m = [r for r in out.records if not r.warmup]
    assert len(w) == 1 and w[0].ok and len(m) == 8 and all(r.ok for r in m)
    first_measured = min(r.sent_ns or 0 for r in m)
    assert (w[0].done_ns or 0) <= first_measured  # no worker measured while the server warmed up
    assert out.started_ns >= (w[0].done_ns or 0)


def test_a_hangup_is_an_interruption_like_ctrl_c() -> None:
    """SIGHUP (the terminal or ssh session gone) killed the harness outright, losing the cut point's row
    and the telemetry files; it now asks for an abort as SIGINT and SIGTERM do."""
    import os
    import signal

    from harness.runner import _abort_on_signals

    before = signal.getsignal(signal.SIGHUP)
    with _abort_on_signals() as flag:
        os.kill(os.getpid(), signal.SIGHUP)
        assert flag == ["interrupted by SIGHUP"]
    assert signal.getsignal(signal.SIGHUP) is before


@pytest.mark.parametrize(
    "mode",
    ["open", "open-4-workers", "open-no-warmup", "closed", "closed-2-workers", "open-no-warmup-2-workers"],
)
def test_slow_window_edge_samples_do_not_hold_back_measured_requests(fake: str, mode: str) -> None:
    """A /metrics scrape over a slow link (here 300 ms) when the window opens: in the open loop it runs
    beside the schedule, in the closed loop before the first send, so no measured latency contains it."""
    import time

    calls: list[int] = []

    def slow_edge(t_ns: int) -> None:
        calls.append(t_ns)
        time.sleep(0.3)

    workers = int(mode[-9]) if mode.endswith("-workers") else 1
    load = (
        PointLoad("open", rate_rps=50.0, arrival="constant", workers=workers)
        if mode.startswith("open")
        else PointLoad("closed", concurrency=2, workers=workers)
    )
    specs = [RequestSpec("hello world", 4) for _ in range(20)]
    warm = [] if "no-warmup" in mode else [RequestSpec("hello world", 4)]

    out = _point(fake, load, warm, specs, 0, lambda r: None, on_measure_start=slow_edge)
    measured = [r for r in out.records if not r.warmup]
    assert len(calls) == 1 and len(measured) == 20 and all(r.ok for r in measured)
    late_s = max((r.sent_ns - r.scheduled_ns) / 1e9 for r in measured)
    assert late_s < 0.2, late_s  # the 300 ms edge is in no request's send time
    # open loop: beside the schedule, from the point's first measured arrival; with 4 client processes,
    # 3 hold a measured arrival first and say so at once: the first of their messages read had opened
    # the window, often a later arrival's
    if mode in ("open", "open-4-workers"):
        assert calls[0] == out.started_ns == min(r.scheduled_ns for r in measured)
    else:  # nothing in flight yet: the edge samples first, every measured request after them
        assert calls[0] < out.started_ns <= min(r.sent_ns for r in measured)
        assert out.started_ns - calls[0] >= 0.3e9


def test_the_client_cpu_share_is_over_the_measured_requests_only(fake: str) -> None:
    """Idle warmup (two 410 ms requests) must not dilute the client's CPU share: it is CPU seconds over
    the wall time from the first measured send, where the saturation warning looks."""
    import time

    burned = [0.0]

    def on_record(r: RequestRecord) -> None:
        if not r.warmup:  # 20 ms of CPU per measured request, as a busy client would spend
            t = time.process_time()
            while time.process_time() - t < 0.02:
                pass
            burned[0] += time.process_time() - t

    load = PointLoad("c", concurrency=1)
    warm = [RequestSpec("hello world", 40) for _ in range(2)]
    specs = [RequestSpec("hello world", 4) for _ in range(10)]

    out = _point(fake, load, warm, specs, 0, on_record)
    measured_s = (out.ended_ns - out.started_ns) / 1e9
    assert out.client["client_cpu_s"] >= burned[0] > 0.19
    # counted from the warmup's start it would be about half of this
    assert out.client["client_cpu_util_max"] >= 0.8 * burned[0] / measured_s


def test_a_client_worker_killed_mid_point_aborts_the_point(fake: str) -> None:
    """Out of memory or a bug in one of two client processes: its requests are lost, so the point is
    said to be cut short, not reported whole with fewer requests."""
    import re
    import threading
    import time

    import psutil

    first = threading.Event()
    killed_ns: list[int] = []

    def kill_a_worker() -> None:  # once measured requests are coming back: mid-point
        first.wait(30)
        kids = [c for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(kids) == 2, kids
        kids[0].kill()
        killed_ns.append(time.perf_counter_ns())

    load = PointLoad("w", concurrency=2, workers=2)
    specs = [RequestSpec("hello world", 80) for _ in range(20)]  # 10 of 810 ms in turn per worker
    threading.Thread(target=kill_a_worker, daemon=True).start()

    out = _point(fake, load, [], specs, 0, lambda r: first.set())
    said = r"client worker [01] was killed by SIGKILL \(code -9\) mid-point: its requests were not all run"
    assert out.aborted is not None and re.fullmatch(said, out.aborted), out.aborted
    assert len([r for r in out.records if not r.warmup]) < 20
    # the other worker was stopped, not left to play out its share (over 7 s more)
    assert (out.ended_ns - killed_ns[0]) / 1e9 < 3.0


@pytest.mark.parametrize("spin", [False, True])
def test_a_send_is_never_released_before_its_scheduled_time(spin: bool) -> None:
    """Latencies count from the scheduled time: a timer that fires early (uvloop rounds to whole ms on a
    cached clock) must not let a request go out before it."""
    import random
    import time

    from harness.load.driver import _sleep_until_ns

    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dev dependency
        new_loop = asyncio.new_event_loop

    async def main() -> list[int]:
        rng = random.Random(1)
        late = []
        for _ in range(150):
            when = time.perf_counter_ns() + int(rng.uniform(0.1e6, 3e6))
            await _sleep_until_ns(when, spin)
            late.append(time.perf_counter_ns() - when)
        return late

    loop = new_loop()
    try:
        late = loop.run_until_complete(main())
    finally:
        loop.close()
    assert min(late) >= 0


def test_the_window_ends_with_the_last_measured_request_not_the_client() -> None:
    from harness.load.driver import window_end_ns

    def rec(i: int, done: int | None, warmup: bool = False) -> RequestRecord:
        return RequestRecord(request_id=i, point_id="p", scheduled_ns=0, done_ns=done, warmup=warmup)

    records = [rec(0, 900, warmup=True), rec(1, 500), rec(2, 700), rec(3, None), rec(4, 2_000, warmup=True)]
    # cooldown (warmup=True) ending later and the client's teardown until 5,000 are not the point's
    assert window_end_ns(records, None, 5_000) == 700
    assert window_end_ns(records, "engine died", 5_000) == 5_000  # cut short: it ends now
    assert window_end_ns([rec(0, 900, warmup=True)], None, 5_000) == 5_000


def test_jobs_are_dealt_to_client_processes_in_proportion_to_their_slots() -> None:
    """Open loop, a max_concurrency of 3 over 2 processes holds 2 + 1 slots: each gets its share of the
    schedule, spread over all of it."""
    from harness.load.workers import deal

    jobs = list(range(12))
    shares = deal(jobs, [2, 1])  # type: ignore[arg-type]
    assert shares == [[0, 2, 3, 5, 6, 8, 9, 11], [1, 4, 7, 10]]
    assert deal(jobs, [1, 1]) == [jobs[0::2], jobs[1::2]]  # type: ignore[arg-type]
    assert [len(s) for s in deal(list(range(10)), [3, 3, 2])] == [4, 4, 2]  # 3.75, 3.75, 2.5  # type: ignore[arg-type]


def test_client_processes_that_fail_to_start_fail_the_point_at_once(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that fails before any process reads back has no process to say it is done: the clean-up
    waited 10 s for one."""
    from harness.load import workers

    def broken(client: object) -> dict[str, object]:
        raise RuntimeError("cannot describe the client")

    monkeypatch.setattr(workers, "_client_config", broken)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="cannot describe the client"):
        _point(fake, PointLoad("w", concurrency=2, workers=2), [], [RequestSpec("hi", 2)] * 4, 0, print)
    assert time.monotonic() - t0 < 5


def test_each_client_process_reports_its_own_loop_lag(fake: str) -> None:
    """The client processes' loops stamp the chunks: each says how late it woke, beside its CPU time
    (the parent kept only the CPU time, and reported its own loop's lag for all)."""
    from harness.load.driver import PointOutcome, plan_jobs
    from harness.load.workers import run_jobs_in_workers

    load = PointLoad("w", concurrency=2, workers=2)

    async def go() -> PointOutcome:
        out = PointOutcome()
        async with StreamClient(fake, "fake") as c:
            jobs = plan_jobs(c, load, [], [RequestSpec("hello world", 8)] * 6, [], 0)
            await run_jobs_in_workers(c, load, jobs, lambda r: None, out, time.perf_counter_ns())
        return out

    out = asyncio.run(go())
    assert len(out.records) == 6 and all(r.ok for r in out.records)
    workers = out.client["worker_cpu"]
    assert len(workers) == 2
    assert all(cpu > 0 and wall > 0 and isinstance(lag, float) for cpu, wall, lag in workers), workers


def test_a_loop_held_up_shows_in_the_client_loop_lag(fake: str) -> None:
    """The event loop stamps the chunks: when something holds it (here each record's handling, 60 ms),
    its wake-ups come late, and `client_loop_lag_s_p99` says by how much; a free loop wakes on time."""
    specs = [RequestSpec("hello world", 8)] * 6
    free = _point(fake, PointLoad("free", concurrency=2), [], specs, 0, lambda r: None)
    held = _point(fake, PointLoad("held", concurrency=2), [], specs, 0, lambda r: time.sleep(0.06))
    assert held.client["client_loop_lag_s_p99"] >= 0.04
    assert free.client["client_loop_lag_s_p99"] < held.client["client_loop_lag_s_p99"] / 2


@pytest.mark.parametrize("workers", [1, 2])
def test_a_point_cut_during_warmup_opens_no_window_and_ends_at_once(fake: str, workers: int) -> None:
    """Open loop, arrivals 4 s apart, 4 warmups first; the engine is declared dead after 1 s. With 2
    client processes the parent had waited out the warmup schedule (the workers sending on), then opened
    the telemetry window after the point had ended."""
    opened: list[int] = []
    t0 = time.monotonic()
    load = PointLoad("cut", rate_rps=0.25, arrival="constant", workers=workers)
    warm, specs = [RequestSpec("hello world", 2)] * 4, [RequestSpec("hello world", 2)] * 4

    def dead() -> str | None:
        return "engine died" if time.monotonic() - t0 > 1.0 else None

    out = _point(fake, load, warm, specs, 0, lambda r: None, dead, 0.1, opened.append)
    assert out.aborted == "engine died" and opened == []
    assert time.monotonic() - t0 < 6  # the warmup schedule alone runs 12 s
    assert not [r for r in out.records if not r.warmup]


def test_a_point_cut_by_a_failed_request_lets_its_client_processes_close(fake: str) -> None:
    """A dropped stream with the engine declared dead cuts the point from the record's handler; the
    watchdog then cancelled it a second time, inside the teardown: the client processes were not
    joined (each printed a BrokenPipeError) and their CPU figures were lost (client_procs 1)."""
    from harness.engines.process import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every request fails to connect
    load = PointLoad("cut", rate_rps=50.0, arrival="constant", workers=2)
    specs = [RequestSpec("hello world", 2)] * 20
    failed: list[RequestRecord] = []  # the engine is declared dead once a request failed

    out = _point(dead, load, [], specs, 0, failed.append, lambda: "engine died" if failed else None, 0.01)
    assert out.aborted == "engine died" and failed
    assert out.client["client_procs"] == 3  # this process and the two it started, all accounted for


def test_a_client_worker_killed_while_it_starts_fails_the_point_unless_an_abort_was_asked(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal's Ctrl-C while the client processes start kills those still importing (they ignore it
    only from `_worker_main` on): with the run's abort asked (its own Ctrl-C handler), the point is cut
    with that reason and no exception fails the run; without one, a process that ended at start is a
    fault, said with how it ended."""
    import os
    import signal

    from harness.load import workers
    from harness.load.driver import WorkerStartFailed

    spawn = workers._Workers.spawn

    def spawn_then_kill(self: Any, *args: Any, **kwargs: Any) -> None:
        spawn(self, *args, **kwargs)
        os.kill(self.procs[0].pid, signal.SIGKILL)  # long before its interpreter has imported the harness

    monkeypatch.setattr(workers._Workers, "spawn", spawn_then_kill)
    load = PointLoad("w", concurrency=2, workers=2)
    specs = [RequestSpec("hello world", 4) for _ in range(4)]
    said = r"client worker 0 was killed by SIGKILL \(code -9\) at start"
    with pytest.raises(WorkerStartFailed, match=said):
        _point(fake, load, [], specs, 0, lambda r: None)
    asked: list[str] = []

    def spawn_kill_and_ask(self: Any, *args: Any, **kwargs: Any) -> None:
        spawn_then_kill(self, *args, **kwargs)
        asked.append("interrupted by SIGINT")

    monkeypatch.setattr(workers._Workers, "spawn", spawn_kill_and_ask)
    out = _point(fake, load, [], specs, 0, lambda r: None, lambda: asked[0] if asked else None)
    assert out.aborted == "interrupted by SIGINT"
    assert out.records == []

    def spawn_kill_ask_and_stall(self: Any, *args: Any, **kwargs: Any) -> None:
        spawn_kill_and_ask(self, *args, **kwargs)
        # a busy host holds the parent past the watchdog's poll: the dead worker and the watchdog's cut
        # land in one turn of the loop, and the start-up's `wait_for` (3.11) swallowed the cut's cancel
        time.sleep(0.5)

    asked.clear()
    monkeypatch.setattr(workers._Workers, "spawn", spawn_kill_ask_and_stall)
    out = _point(fake, load, [], specs, 0, lambda r: None, lambda: asked[0] if asked else None)
    assert out.aborted == "interrupted by SIGINT"
    assert out.records == []


def test_a_point_cut_as_its_client_workers_become_ready_is_not_run(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C whose cut lands in the loop turn the last worker says it is ready: the start-up's wait
    (`asyncio.wait_for` on 3.11) returned its result and dropped the cancel, and the whole point ran."""
    from harness.load import workers

    spawn = workers._Workers.spawn
    asked: list[str] = []

    def spawn_ask_and_hold(self: Any, *args: Any, **kwargs: Any) -> None:
        spawn(self, *args, **kwargs)
        asked.append("interrupted by SIGINT")
        # hold the loop until every worker has said `ready`: its message and the watchdog's cut wait for
        # the same turn
        for c in self.pipes:
            assert c.poll(60), "a client worker did not start"

    monkeypatch.setattr(workers._Workers, "spawn", spawn_ask_and_hold)
    load = PointLoad("w", concurrency=2, workers=2)
    specs = [RequestSpec("hello world", 200) for _ in range(4)]  # ~2 s each
    out = _point(fake, load, [], specs, 0, lambda r: None, lambda: asked[0] if asked else None)
    assert out.aborted == "interrupted by SIGINT"
    # the cut lands one turn after the workers were told to go: a request may have been sent, none ran
    assert [r for r in out.records if r.ok] == []


def test_how_a_client_process_ended_names_the_signal() -> None:
    from harness.load.workers import ended

    assert ended(-2) == "was killed by SIGINT (code -2)"
    assert ended(1) == "exited (code 1)"
    assert ended(-200) == "exited (code -200)"  # no such signal
    assert ended(None) == "exited (code None)"


def test_client_workers_stop_sending_when_a_point_is_cut_during_its_window_edge(fake: str) -> None:
    """Open loop with a warmup: the window opens on a thread while the workers send. A cut while its
    edge samples take their time (a /metrics scrape of an engine that stopped answering waits out its
    timeout) had the workers go on sending until the edge was over."""
    started: list[int] = []
    asked_ns: list[int] = []

    def slow_edge(t_ns: int) -> None:
        started.append(t_ns)
        time.sleep(2.0)

    def should_abort() -> str | None:
        if not started:
            return None
        asked_ns[:] = asked_ns or [time.perf_counter_ns()]
        return "interrupted by SIGINT"

    load = PointLoad("w", rate_rps=8, arrival="constant", workers=2)
    warm = [RequestSpec("hello world", 4)] * 2
    specs = [RequestSpec("hello world", 4)] * 40  # 5 s of arrivals
    out = _point(fake, load, warm, specs, 0, lambda r: None, should_abort, on_measure_start=slow_edge)
    assert out.aborted == "interrupted by SIGINT"
    late = [r for r in out.records if r.sent_ns and r.sent_ns > asked_ns[0] + 500_000_000]
    assert late == []  # the workers were told to stop before the edge was waited for


def test_a_record_that_cannot_be_written_fails_the_point_with_client_workers(fake: str) -> None:
    """`on_record` (the record's append to requests.jsonl) raising OSError (a full disk) fails the point
    with it, as in one process; with client processes it was taken for a broken pipe: the worker counted
    as lost, its later records dropped, and the run went on."""
    import errno

    seen: list[RequestRecord] = []

    def on_record(r: RequestRecord) -> None:
        seen.append(r)
        if len(seen) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    specs = [RequestSpec("hello world", 4)] * 10
    for workers in (1, 2):
        seen.clear()
        with pytest.raises(OSError, match="No space left on device"):
            _point(fake, PointLoad("w", concurrency=2, workers=workers), [], specs, 0, on_record)


@pytest.mark.slow
def test_client_workers_that_do_not_answer_are_waited_for_together(
    fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cut point whose client processes are frozen: 10 s for them to say they stopped, then 5 s for
    all of them to exit before they are killed (each had 5 s of its own: 30 s with four)."""
    import os
    import signal
    import threading

    from harness.load import workers

    spawn = workers._Workers.spawn

    def spawn_then_freeze(self: Any, *args: Any, **kwargs: Any) -> None:
        spawn(self, *args, **kwargs)

        def freeze() -> None:
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGSTOP)

        threading.Timer(2.5, freeze).start()  # once they run the point

    monkeypatch.setattr(workers._Workers, "spawn", spawn_then_freeze)
    t0 = time.monotonic()
    cut_at: list[float] = []

    def should_abort() -> str | None:
        if time.monotonic() - t0 < 3.0:
            return None
        cut_at[:] = cut_at or [time.monotonic()]
        return "interrupted by SIGINT"

    specs = [RequestSpec("hello world", 500)] * 8
    out = _point(fake, PointLoad("w", concurrency=4, workers=4), [], specs, 0, lambda r: None, should_abort)
    took_s = time.monotonic() - cut_at[0]
    assert out.aborted == "interrupted by SIGINT"
    assert took_s < 18, took_s  # 10 + 5, not 10 + 4 x 5


class _SlowEdge:
    """A sampler whose window-opening sample takes 0.5 s, as a stalled NVML call or a slow /metrics
    scrape can."""

    name = "slow-edge"

    def start(self) -> None: ...

    def begin_window(self, name: str, t_ns: int) -> None:
        time.sleep(0.5)

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        return {}

    def stop(self) -> None: ...

    def manifest(self) -> dict[str, Any]:
        return {}

    def write(self, run_dir: Path, tag: str = "") -> str | None:
        return None


@pytest.mark.parametrize("mode", ["closed", "open", "closed-2-workers"])
def test_the_telemetry_window_is_the_throughput_window_however_long_the_edge_samples_take(
    fake: str, tmp_path: Path, mode: str
) -> None:
    """The energy window opened before the edge samples and the first measured send after them: a 0.5 s
    stall in an edge sample went into energy, power and CPU % (idle time tok/s does not count)."""
    import pandas as pd

    from harness.runner import run_scenario
    from harness.scenario import parse_scenario
    from harness.telemetry import default_samplers
    from harness.telemetry.base import TelemetrySet
    from harness.telemetry.cpu import CpuSampler

    load: dict[str, Any] = {"requests": 4, "warmup_requests": 0}
    load |= {"mode": "open", "rates_rps": [20.0]} if mode == "open" else {"concurrency": [2]}
    if mode.endswith("workers"):  # each process said it began before opening its connections
        load |= {"workers": 2}
    s = parse_scenario(
        {
            "name": "edge",
            "engine": {"type": "external", "base_url": fake, "model": {"source": "served", "name": "fake"}},
            "workload": {"input_tokens": 8, "output_tokens": 4},
            "load": load,
            "telemetry": {"nvml": False, "engine_metrics": False},
        }
    )
    cpu: list[CpuSampler] = []

    def samplers(scenario: Any, engine: Any) -> TelemetrySet:
        tel = default_samplers(scenario, engine)
        cpu.extend(x for x in tel.samplers if isinstance(x, CpuSampler))
        return TelemetrySet([*tel.samplers, _SlowEdge()])

    res = run_scenario(s, tmp_path, telemetry=samplers, show_progress=False)
    (row,) = pd.read_parquet(res.run_dir / "points.parquet").to_dict("records")
    ((t0, t1),) = cpu[0].windows.values()
    # open loop: from the first measured request's scheduled arrival, window_s from its send (its send lag
    # later); closed loop: from the stamp just before the first send (one process), or from that send
    # itself (several: the processes' stamps came before they opened their connections, 1 ms here)
    lag_s = {"open": 0.002, "closed": 0.001, "closed-2-workers": 1e-9}[mode]
    assert (t1 - t0) / 1e9 == pytest.approx(row["window_s"], abs=lag_s), (t1 - t0) / 1e9


class _EdgeSpy(_SlowEdge):
    """Stamps when it was asked for the window's end-edge sample, and when the window was closed."""

    name = "edge-spy"

    def __init__(self) -> None:
        self.edges: list[int] = []
        self.closed: list[int] = []
        self.opened: list[int] = []

    def begin_window(self, name: str, t_ns: int) -> None:
        self.opened.append(time.perf_counter_ns())

    def edge_sample(self) -> None:
        self.edges.append(time.perf_counter_ns())

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        self.closed.append(time.perf_counter_ns())
        return {}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_window_end_is_sampled_when_the_measured_requests_are_done_not_after_teardown(
    fake: str, tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end-edge samples came after the client's teardown (cooldown cancelled, client processes
    joined: 104-175 ms with two of them), so the CPU sampler's 0.5 s interval was interpolated across the
    drop to idle and a short window's CPU energy and engine CPU % read low."""
    from harness.runner import run_scenario
    from harness.scenario import parse_scenario
    from harness.telemetry import default_samplers
    from harness.telemetry.base import TelemetrySet

    s = parse_scenario(
        {
            "name": "end-edge",
            "engine": {"type": "external", "base_url": fake, "model": {"source": "served", "name": "fake"}},
            "workload": {"input_tokens": 8, "output_tokens": 4},
            "load": {"mode": "open", "rates_rps": [20.0], "requests": 6, "workers": workers},
            "telemetry": {"nvml": False, "engine_metrics": False},
        }
    )
    from harness.load import workers as client_processes

    # the teardown: the client's connections closed (one process), the client processes joined (several)
    torn: list[int] = []
    aexit, close = StreamClient.__aexit__, client_processes._Workers.close

    async def closing_client(self: Any, *exc: object) -> None:
        torn.append(time.perf_counter_ns())
        await aexit(self, *exc)

    async def joining(self: Any) -> None:
        torn.append(time.perf_counter_ns())
        await close(self)

    monkeypatch.setattr(StreamClient, "__aexit__", closing_client)
    monkeypatch.setattr(client_processes._Workers, "close", joining)
    spy = _EdgeSpy()
    run_scenario(
        s,
        tmp_path,
        telemetry=lambda sc, e: TelemetrySet([*default_samplers(sc, e).samplers, spy]),
        show_progress=False,
    )
    (edge,), (closed,) = spy.edges, spy.closed
    # the prompt probe's client closed before the point: only the point's teardown counts
    after = [t for t in torn if t > min(spy.opened)]
    assert after and edge < min(after) and edge < closed


@pytest.mark.parametrize("workers", [2, 4])
def test_closed_loop_client_processes_claim_jobs_so_every_slot_stays_busy(fake: str, workers: int) -> None:
    """Dealt in advance, the process whose share held the short requests (50 ms) ran out while the other
    still had long ones (410 ms) queued: the server saw concurrency 2 of 4 for most of the point (req/s
    13 % low with 4 processes and uniform lengths). Claimed as slots free, every slot stays busy until
    the last measured request is sent."""
    load = PointLoad("claim", concurrency=4, workers=workers)
    measured = [RequestSpec("hello world", n) for n in (40, 4) * 6]
    out = _point(fake, load, [], measured, 0, lambda r: None)
    recs = out.records
    m = [r for r in recs if not r.warmup]
    assert len(m) == 12 and all(r.ok for r in m)
    assert sorted(r.request_id for r in m) == list(range(12))  # each job sent once
    first = min(r.sent_ns or 0 for r in m)
    last_sent = max(r.sent_ns or 0 for r in m)
    # 4 in flight from the first send to the last, but for the instants between one request's end and
    # the next one's send (sampled at 50 instants)
    lo, hi = first + 10_000_000, last_sent - 10_000_000
    counts = [_in_flight(recs, lo + k * (hi - lo) // 49) for k in range(50)]
    assert max(counts) == 4 and sum(c == 4 for c in counts) >= 45, counts


def test_a_cooldown_request_waiting_for_a_slot_is_not_sent_once_the_measured_ones_are_done(fake: str) -> None:
    """Open loop with max_concurrency: the slot the last measured request freed went to a cooldown request
    waiting for it, sent after the point's end (the engine's end scrape then took in its prefill)."""
    load = PointLoad("mc", rate_rps=200.0, arrival="constant", max_concurrency=1)
    spec = RequestSpec("hello world", 2)
    out = _point(fake, load, [], [spec] * 3, 0, lambda r: None, cooldown_specs=[spec] * 6)
    measured = [r for r in out.records if not r.warmup]
    assert len(measured) == 3 and all(r.ok for r in measured)
    last_end = max(r.done_ns or 0 for r in measured)
    assert [r.request_id for r in out.records if r.warmup and r.sent_ns and r.sent_ns >= last_end] == []


def test_a_claim_from_a_list_whose_lock_is_held_fails_instead_of_freezing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client process killed while it held the shared list's lock left every other one waiting on it
    with its event loop frozen (it could not even read the parent's stop)."""
    import multiprocessing as mp
    import threading

    from harness.load import workers

    taken = mp.get_context("spawn").Value("q", 0)
    claim = workers.claimer([1, 2], taken)  # type: ignore[list-item]
    assert (claim(), claim(), claim()) == (1, 2, None)
    held = threading.Event()
    threading.Thread(target=lambda: (taken.get_lock().acquire(), held.set()), daemon=True).start()
    held.wait(5)
    monkeypatch.setattr(workers, "CLAIM_TIMEOUT_S", 0.1)
    with pytest.raises(RuntimeError, match=r"the shared job list was locked for 0.1 s"):
        workers.claimer([1], taken)()  # type: ignore[list-item]


def test_records_say_which_unmeasured_requests_came_after_the_measured_ones(fake: str) -> None:
    """Warmup and cooldown records were both only `warmup: true`: a reader could not tell them apart."""
    load = PointLoad("roles", concurrency=2)
    short, long = RequestSpec("hello world", 2), RequestSpec("hello world", 30)
    out = _point(
        fake, load, [short] * 2, [long, short, short, short], 0, lambda r: None, cooldown_specs=[short] * 6
    )
    by_id = {r.request_id: r for r in out.records}
    assert [(by_id[i].warmup, by_id[i].cooldown) for i in (0, 1)] == [(True, False)] * 2  # warmup
    assert all(not by_id[i].warmup and not by_id[i].cooldown for i in range(2, 6))  # measured
    after = [r for r in out.records if r.request_id >= 6]
    assert after and all(r.warmup and r.cooldown for r in after)  # cooldown, sent while the long one ran


def test_an_html_report_made_while_the_run_went_on_is_not_left_beside_the_finished_run(
    fake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harness report RUN` mid-run writes report.html into the run's folder: after the run it still said
    `running` and held the points done then, beside the finished run's report.md."""
    from harness.results import RunDir, read_manifest
    from harness.runner import run_scenario

    append = RunDir.append_record

    def report_meanwhile(self: RunDir, rec: RequestRecord) -> None:
        append(self, rec)
        (self.path / "report.html").write_text("<td>status</td><td>running</td>")
        (self.path / "report-plots").mkdir(exist_ok=True)

    monkeypatch.setattr(RunDir, "append_record", report_meanwhile)
    run_scenario(_two_requests("html", fake), tmp_path, show_progress=False)
    (run,) = tmp_path.glob("*-html")
    assert read_manifest(run)["status"] == "complete"
    assert not (run / "report.html").exists() and not (run / "report-plots").exists()


@pytest.mark.parametrize(
    "load",
    [PointLoad("closed", concurrency=2), PointLoad("open", rate_rps=1000.0, arrival="constant")],
    ids=["closed", "open"],
)
def test_a_failed_write_of_the_last_measured_record_fails_the_point(fake: str, load: PointLoad) -> None:
    """Records are handed to `on_record` after the sender goes on: a write that failed once no sender
    was left to meet it (the last measured record's, with cooldown still in flight) was dropped, and
    the run ended `complete` without that record in requests.jsonl."""
    import errno

    measured = [RequestSpec("hello world", 4), RequestSpec("hello world", 12)]
    handed: list[RequestRecord] = []

    def on_record(r: RequestRecord) -> None:
        if not r.warmup and sum(not h.warmup for h in handed) == len(measured) - 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        handed.append(r)

    cooldown = [RequestSpec("hello world", 40)] * 4
    with pytest.raises(OSError, match="No space left on device"):
        _point(fake, load, [], measured, 0, on_record, cooldown_specs=cooldown)


def test_senders_stop_at_a_dead_engines_first_failed_connects() -> None:
    """A failed request is handed on at once (the healthy ones after the next send): its check for a dead
    engine marks the point stopped before its sender, or any other, sends again."""
    seen: list[RequestRecord] = []
    load = PointLoad("dead", concurrency=4)
    specs = [RequestSpec("hello world", 4)] * 100
    out = _point(
        f"http://127.0.0.1:{free_port()}",  # nothing listens: every connect is refused
        load,
        [],
        specs,
        0,
        seen.append,
        lambda: "engine process exited (code 1)" if seen else None,
        10.0,  # the watchdog's own poll comes too late to matter
    )
    assert out.aborted == "engine process exited (code 1)"
    assert all(r.error_kind == "connect" for r in out.records) and len(out.records) <= 4
    assert len(seen) == len(out.records)
