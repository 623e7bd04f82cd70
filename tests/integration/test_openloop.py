"""`harness run` in open loop against `harness serve-fake`: latencies from the scheduled time."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness import metrics
from harness.results import iter_records, read_manifest
from harness.testing.quiet import too_busy_for
from tests.integration.conftest import harness_cli, run_dir_from

pytestmark = pytest.mark.slow
TTFT_S, ITL_S = 0.030, 0.008


@pytest.fixture
def fake_url(tmp_path: Path) -> Iterator[str]:
    from tests.conftest import start_fake_server

    proc, url = start_fake_server(tmp_path / "fake.log", TTFT_S * 1e3, ITL_S * 1e3)  # once it answers
    yield url
    proc.stop()


def scenario(url: str, **load: object) -> dict[str, object]:
    return {
        "name": "it-openloop",
        "engine": {"type": "external", "base_url": url, "model": {"source": "served", "name": "fake"}},
        "workload": {"input_tokens": 16, "output_tokens": 12},
        "load": {"mode": "open", "arrival": "poisson", "seed": 5, **load},
        "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
    }


def test_open_loop_matches_script_within_2ms(write_scenario, tmp_path: Path, fake_url: str) -> None:
    reason = too_busy_for(0.002)
    if reason:
        pytest.skip(reason)
    load = {"rates_rps": [20], "requests": 60, "warmup_requests": 5, "cooldown_requests": 5}
    # A shared VM can stall both processes for a few ms during a 3 s run (seen once in many CI runs:
    # TTFT median 33 ms against 30 ms with the host quiet before the run): one second attempt, and
    # both must be off for a failure.
    for attempt in range(2):
        res = harness_cli(
            "run",
            str(write_scenario(scenario(fake_url, **load))),
            "--results",
            str(tmp_path / f"r{attempt}"),
            "--no-progress",
        )
        assert res.returncode == 0, res.stderr[-2000:]
        run = run_dir_from(res.stderr)
        recs = list(iter_records(run))
        measured = [r for r in recs if not r.warmup]
        assert len(measured) == 60 and all(r.ok for r in measured)
        ttft = [metrics.ttft_s(r, open_loop=True) for r in measured]
        itl = [x for r in measured for x in metrics.itl_s(r)]
        off = abs(statistics.median(ttft) - TTFT_S), abs(statistics.median(itl) - ITL_S)
        if off[0] < 0.004 and off[1] < 0.002:
            break
    # TTFT from the scheduled send also covers connecting and writing the request: 4 ms (seen up to
    # 2.5-3.1 ms off on a 2-vCPU CI clone, 0.5 ms in a warm checkout); ITL is chunk to chunk: 2 ms
    assert off[0] < 0.004, statistics.median(ttft)
    assert off[1] < 0.002, statistics.median(itl)
    # warmup and cooldown were sent on the same arrival process and are excluded
    assert len([r for r in recs if r.warmup]) >= 5
    ids = sorted(r.request_id for r in measured)
    assert ids == list(range(5, 65))
    # the schedule was kept: sends went out on time (median), and the lag is reported
    lags = sorted(metrics.send_lag_s(r) or 0 for r in measured)
    assert lags[0] >= 0 and statistics.median(lags) < 0.002
    p = pd.read_csv(run / "points.csv").iloc[0]
    assert p["send_lag_s_p50"] == pytest.approx(statistics.median(lags), abs=1e-6)
    assert 0 < p["client_cpu_util_max"] < 0.85 and not p["client_saturated"]
    assert p["slo_met"] and p["goodput_req_s"] > 0
    assert read_manifest(run)["client"]["event_loop"] in ("uvloop", "asyncio")


def test_two_client_workers_and_rate_search(write_scenario, tmp_path: Path, fake_url: str) -> None:
    # the fake server answers in 30 + 11 * 8 = 118 ms at any rate: every rate meets these SLOs,
    # so the search doubles from 10 req/s until its probe budget ends; with 2 client processes
    load = {"rates_rps": [10], "requests": 20, "warmup_requests": 2, "workers": 2}
    scen = write_scenario(scenario(fake_url, **load))
    res = harness_cli(
        "run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", "--find-max-goodput"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    run = run_dir_from(res.stderr)
    found = read_manifest(run)["max_goodput"][0]
    rates = [p["rate_rps"] for p in found["probes"]]
    assert rates == [10, 20, 40, 80, 160, 320, 640, 1280][: len(rates)] and len(rates) == 8
    assert found["max_rate_rps"] == rates[-1]
    points = pd.read_csv(run / "points.csv")
    assert list(points["client_procs"]) == [3] * 8  # the runner process and two workers
    assert (points["ok"] == 20).all()
    # this endpoint has no tokenizer: prompts of about one token per word (the fake server counts words),
    # not cut to a single word by a tokenizer that cannot tell
    sizes = {r.prompt_tokens for r in iter_records(run) if not r.warmup}
    assert sizes and all(14 <= (n or 0) <= 18 for n in sizes), sizes
    # no rate failed: said to be a lower bound, with the rate the last probe achieved beside the offered one
    said = " ".join(res.stderr.split())
    assert "highest rate meeting the SLOs: at least 1280 req/s asked (" in said
    assert " achieved): no rate tried failed in 8 probes, so the limit is higher" in said
    # the report says it too (it gave only the probes, in the order tried), and each probe's share in SLO
    res = harness_cli("report", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    md = (run / "report.md").read_text()
    assert "- rate search, variant 0: highest rate meeting the SLOs: at least 1280 req/s asked (" in md
    assert "| in SLO |" in md and md.count(" 100.0% |") == 8
    assert "a point meets them when at least 99 % of its requests do (column in SLO)" in md


def test_a_finished_search_is_not_called_failed_because_an_earlier_variant_failed(
    write_scenario, tmp_path: Path, fake_url: str
) -> None:
    data = scenario(fake_url, rates_rps=[10], requests=8, warmup_requests=0)
    data["variants"] = [{"base_url": "http://127.0.0.1:9"}, {}]  # the first cannot connect
    data["on_engine_failure"] = "next_variant"
    res = harness_cli(
        "run",
        str(write_scenario(data)),
        "--results",
        str(tmp_path / "r"),
        "--no-progress",
        "--find-max-goodput",
    )
    said = " ".join(res.stderr.split())
    assert "variant 1: highest rate meeting the SLOs: at least 1280 req/s asked (" in said, said[-2000:]
    found = read_manifest(run_dir_from(res.stderr))["max_goodput"]
    assert [f["variant"] for f in found] == [1] and "stopped" not in found[0]
    # 8 requests a probe: said to be too few to load an engine at a probe's rate
    assert "load.requests: 8 requests a probe are over before they load the engine" in said
    # and too few to judge the 0.99 attainment: a passing probe may still miss the SLOs for 31 %
    assert "8 requests a probe meet slo.attainment 0.99 only when every one meets the SLOs" in said
    assert "up to 31 % of its requests (95 % bound), not 1 %" in said


def _twelve_requests_to_a_fake(write_scenario: Any, tmp_path: Path, *flags: str) -> tuple[Any, Path]:
    """12 measured requests at 20 req/s to a `serve-fake` of its own started with `flags`: the finished
    harness process and its run directory."""
    from tests.conftest import start_fake_server

    proc, url = start_fake_server(tmp_path / "fake.log", TTFT_S * 1e3, ITL_S * 1e3, *flags)
    try:
        load = {"rates_rps": [20], "requests": 12, "warmup_requests": 2}
        scen = str(write_scenario(scenario(url, **load)))
        res = harness_cli("run", scen, "--results", str(tmp_path / "r"), "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    return res, run_dir_from(res.stderr)


def test_an_endpoint_that_sends_no_usage_is_counted_from_max_tokens(write_scenario, tmp_path: Path) -> None:
    """An OpenAI-compatible endpoint that ignores stream_options: streams that ended for `length` ran to
    max_tokens, so tok/s is measured, not zero, and TPOT exists for the SLO."""
    _, run = _twelve_requests_to_a_fake(write_scenario, tmp_path, "--no-usage")
    measured = [r for r in iter_records(run) if not r.warmup]
    assert len(measured) == 12 and all(r.finish_reason == "length" for r in measured)
    assert {(r.output_tokens, r.output_tokens_source) for r in measured} == {(12, "max_tokens")}
    p = pd.read_csv(run / "points.csv").iloc[0]
    assert p["output_tokens"] == 12 * 12 and p["output_tok_s"] > 0 and p["missing_usage"] == 0
    assert p["slo_met"] and p["tpot_s_p50"] == pytest.approx(ITL_S, abs=0.004)
    # priced, a point at an arrival rate is said to price that rate's tokens, not the machine's capacity
    from harness.runinfo import points_frame

    (device,) = set(points_frame([run])["device"])
    res = harness_cli("cost", str(run), "--price", f"{device}=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "$/1M tokens at an arrival rate (r...) prices the tokens that rate asked for" in " ".join(
        res.stderr.split()
    )
    # and so does the HTML report beside its cost plot
    res = harness_cli("report", str(run), "--price", f"{device}=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "prices the tokens that rate asked for" in (run / "report.html").read_text()


def test_an_endpoint_without_usage_whose_answers_stop_early_is_counted_by_chunks(
    write_scenario, tmp_path: Path
) -> None:
    """Answers that end for `stop` after 5 of the 12 tokens asked, without usage: counted as 0 tokens they
    made tok/s 0 with only "carried no usage" said; one token per content chunk, said to be approximate."""
    res, run = _twelve_requests_to_a_fake(write_scenario, tmp_path, "--no-usage", "--stop-after", "5")
    measured = [r for r in iter_records(run) if not r.warmup]
    assert {(r.finish_reason, r.output_tokens, r.output_tokens_source) for r in measured} == {
        ("stop", 5, "chunks")
    }
    p = pd.read_csv(run / "points.csv").iloc[0]
    assert p["output_tokens"] == 12 * 5 and p["output_tok_s"] > 0
    assert (p["missing_usage"], p["chunk_counted"]) == (0, 12)
    said = " ".join(res.stderr.split())
    assert "12/12 requests carried no usage (an endpoint that ignores stream_options.include_usage?)" in said


def test_a_point_that_measured_nothing_is_not_done(write_scenario, tmp_path: Path, fake_url: str) -> None:
    """Closed loop with duration_s shorter than any request: every measured request goes out as
    cooldown. The point used to count as done (status complete, no points table). In open loop the
    schedule decides instead: the requests scheduled before the deadline (here the first) are measured,
    however late the loop sends them, so a rate search always has a point to judge."""
    closed = {
        **scenario(fake_url),
        "load": {
            "mode": "closed",
            "concurrency": [1, 2],
            "requests": 4,
            "warmup_requests": 0,
            "duration_s": 1e-6,
        },
    }
    scen = write_scenario(closed)
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=120)
    assert res.returncode == 3, res.stderr[-2000:]
    assert "point v0-c1: no measured request ended in the point" in res.stderr
    m = read_manifest(run_dir_from(res.stderr))
    assert m["status"] == "failed" and m["points_done"] == []
    load = {"rates_rps": [20, 50], "requests": 4, "warmup_requests": 0, "duration_s": 0.000001}
    scen = write_scenario(scenario(fake_url, **load), "open.yaml")
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "s"), "--no-progress", timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    points = pd.read_csv(run_dir_from(res.stderr) / "points.csv")
    assert list(points["requests"]) == [1, 1] and list(points["ok"]) == [1, 1]


def test_a_closed_loop_point_below_workers_uses_fewer_client_processes(
    write_scenario, tmp_path: Path, fake_url: str
) -> None:
    """Each client process holds a request: `workers: 2` at concurrency 1 would keep 2 in flight, so that
    point runs in the harness process alone (such sweeps used to be refused)."""
    data = {
        **scenario(fake_url),
        "load": {"mode": "closed", "concurrency": [1, 2], "requests": 6, "warmup_requests": 0, "workers": 2},
    }
    res = harness_cli("run", str(write_scenario(data)), "--results", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr[-2000:]
    points = pd.read_csv(run_dir_from(res.stderr) / "points.csv")
    assert list(points["client_procs"]) == [1, 3] and list(points["ok"]) == [6, 6]
