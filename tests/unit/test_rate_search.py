"""Bisection over rate for the highest rate meeting the SLOs."""

from __future__ import annotations

from typing import Any

import pytest

from harness.load.search import PointPlan, RateSearch
from harness.scenario import Point


def run(search: RateSearch, capacity: float) -> list[float]:
    tried = []
    while (r := search.next_rate()) is not None:
        tried.append(r)
        search.record(r, r <= capacity)
    return tried


def test_doubles_then_bisects_to_tolerance() -> None:
    s = RateSearch(2.0, rel_tol=0.05, max_probes=12)
    tried = run(s, capacity=11.0)
    assert tried[:4] == [2.0, 4.0, 8.0, 16.0]  # doubling until the first failure
    assert tried[4] == 12.0  # then midpoints of (8, 16)
    lo, hi = s.bracket()
    assert lo is not None and hi is not None and lo <= 11.0 < hi and (hi - lo) / lo <= 0.05
    assert s.best_rps == lo


def test_probes_that_run_out_before_the_bracket_closes_say_how_wide_it_was() -> None:
    s = RateSearch(0.1, max_probes=8)
    run(s, capacity=9.0)  # doubling from far below takes 7 probes to fail once
    assert s.summary()["stop_reason"] == "8 probes ran out with 6.4-12.8 req/s still 100% apart"
    s = RateSearch(8.0, max_probes=8)
    run(s, capacity=9.0)
    assert "stop_reason" not in s.summary()  # closed to within 5 %


def test_halves_when_the_start_fails_and_reports_none_if_nothing_passes() -> None:
    s = RateSearch(8.0, max_probes=4)
    assert run(s, capacity=0.1) == [8.0, 4.0, 2.0, 1.0]
    assert s.best_rps is None
    assert s.summary()["max_rate_rps"] is None


def test_plan_yields_search_points() -> None:
    base = Point(0, 0, None, None, 5.0)
    plan = PointPlan([base], RateSearch(5.0, max_probes=3))
    ids = []
    for p in plan:
        ids.append(p.point_id)
        plan.observe(p, True)
    assert ids == ["v0-r5", "v0-r10", "v0-r20"]
    assert plan.search is not None and plan.search.best_rps == pytest.approx(20.0)


def test_search_result_text_says_lower_bound_and_achieved_rate() -> None:
    from harness.runconsole import search_result_text

    rows = [
        {"variant": 0, "rate_rps": 40.0, "req_s": 36.2, "offered_req_s": 38.9, "slo_attainment": 0.5},
        {"variant": 0, "rate_rps": 80.0, "req_s": 50.0, "offered_req_s": 79.1, "errors": 3},
    ]
    bounded = {"max_rate_rps": 40.0, "lowest_failing_rps": 80.0, "probes": [{}, {}]}
    # the rate asked is the schedule's; its draw offered what the table's offered_req_s says
    assert search_result_text(bounded, rows, 0) == (
        "highest rate meeting the SLOs: 40 req/s asked (38.9 offered, 36.2 achieved) "
        "(the next rate tried, 80, failed)"
    )
    open_ended = {"max_rate_rps": 80.0, "lowest_failing_rps": None, "probes": [{}, {}]}
    assert search_result_text(open_ended, rows, 0) == (
        "highest rate meeting the SLOs: at least 80 req/s asked (79.1 offered, 50 achieved): "
        "no rate tried failed in 2 probes, so the limit is higher"
    )
    # SLOs loose enough for the queue a short probe builds: every rate 'passed' at the same throughput
    loose = [{"variant": 0, "rate_rps": 2.0**k, "req_s": min(2.0**k, 7.9)} for k in range(3, 11)]
    found = {"max_rate_rps": 1024.0, "lowest_failing_rps": None, "probes": [{}] * 8}
    assert search_result_text(found, loose, 0) == (
        "highest rate meeting the SLOs: at least 1024 req/s asked (7.9 req/s achieved): no rate tried failed "
        "in 8 probes, so the limit is higher; but no probe had more than 7.9 req/s completed: the rates "
        "above that queued rather than being served (a stricter SLO, or more requests a probe, finds the "
        "limit)"
    )
    none = {"max_rate_rps": None, "lowest_failing_rps": 10.0, "probes": [{}]}
    assert search_result_text(none, rows, 0) == (
        "highest rate meeting the SLOs: none of the rates tried (the lowest, 40 req/s, had 50.0% of its "
        "requests within the SLOs)"
    )
    assert search_result_text(none, rows[1:], 0).endswith("(the lowest, 80 req/s, 3 of them failed)")
    assert search_result_text(none, [], 0) == "highest rate meeting the SLOs: none of the rates tried"
    # interrupted while the first probe ran: nothing was judged, which is not "no rate met the SLOs"
    cut = {"max_rate_rps": None, "lowest_failing_rps": None, "probes": [], "stopped": "interrupted"}
    assert (
        search_result_text(cut, rows, 0)
        == "rate search interrupted after 0 judged probe(s): no rate was judged"
    )
    cut_later = {**bounded, "stopped": "interrupted"}
    assert search_result_text(cut_later, rows, 0) == (
        "rate search interrupted after 2 judged probe(s): 40 req/s met the SLOs (a lower bound; the search "
        "did not finish)"
    )
    failed = {**none, "stopped": "failed"}
    assert (
        search_result_text(failed, rows, 0)
        == "rate search failed after 1 judged probe(s): no rate met the SLOs"
    )


def _points(start_rps: float) -> list[Point]:
    # the planned point a search starts from: index, variant, engine, concurrency, rate
    return [Point(0, 0, None, None, start_rps)]  # type: ignore[arg-type]


def test_probe_rates_keep_four_significant_figures_at_any_scale() -> None:
    """Rates rounded to 4 decimals made 0.00001 req/s a probe of 0 (a crash) and repeated 0.0001."""
    plan = PointPlan(_points(0.00001), RateSearch(0.00001))
    rates = []
    for p in plan:
        rates.append(p.rate_rps)
        plan.observe(p, False, {"requests": 4, "ok": 4})
    assert rates[:3] == [0.00001, 0.000005, 0.0000025] and all(r > 0 for r in rates)
    assert len(set(rates)) == len(rates)


def test_a_probe_whose_every_request_failed_ends_the_search() -> None:
    plan = PointPlan(_points(10.0), RateSearch(10.0))
    rates = []
    for p in plan:
        rates.append(p.rate_rps)
        plan.observe(p, False, {"requests": 8, "ok": 0, "error_kinds": "http:8"})
    assert rates == [10.0]  # not halved 7 more times: a lower rate does not cure errors
    assert plan.search is not None
    assert plan.search.summary()["stop_reason"] == "every measured request failed at 10 req/s (http:8)"


def test_halving_stops_once_a_halved_rate_brings_no_more_requests_within_the_slos() -> None:
    """SLOs missed at any load (a 10 ms TTFT limit against a 50 ms server; a fifth of the requests
    failing): each halving doubled a probe's length, 4 -> 0.03 req/s in about 10 minutes, to say none."""
    shares = {4.0: 0.80, 2.0: 0.80, 1.0: 0.80}
    plan = PointPlan(_points(4.0), RateSearch(4.0))
    rates = []
    for p in plan:
        assert p.rate_rps is not None
        rates.append(p.rate_rps)
        row = {"requests": 10, "ok": 8, "slo_attainment": shares[p.rate_rps], "ttft_s_p50": 0.05}
        plan.observe(p, False, row)
    assert rates == [4.0, 2.0]
    assert plan.search is not None and plan.search.stop_reason == (
        "halving the rate brought no more requests within the SLOs (80.0% at 4 req/s, 80.0% at 2) nor a "
        "shorter TTFT: they are missed at low load too (see the points' latencies and errors)"
    )
    # where halving helps (the queue drains), it goes on
    easing = {4.0: 0.2, 2.0: 0.6, 1.0: 0.95, 0.5: 1.0}
    plan = PointPlan(_points(4.0), RateSearch(4.0, max_probes=4))
    rates = []
    for p in plan:
        assert p.rate_rps is not None
        rates.append(p.rate_rps)
        plan.observe(
            p, easing[p.rate_rps] >= 0.99, {"requests": 10, "ok": 10, "slo_attainment": easing[p.rate_rps]}
        )
    assert rates == [4.0, 2.0, 1.0, 0.5] and plan.search is not None and plan.search.best_rps == 0.5


def test_halving_goes_on_through_rates_far_past_capacity_whose_queue_drains() -> None:
    """A server of 1 req/s probed from 8: at 8 and at 4 queueing pushes almost every request past the
    TTFT limit (2 % within), but the queue, and so the TTFT, is shorter at 4: halving goes on to where
    the server keeps up."""
    capacity = 1.0
    plan = PointPlan(_points(8.0), RateSearch(8.0, max_probes=6))
    rates = []
    for p in plan:
        assert p.rate_rps is not None
        rates.append(p.rate_rps)
        over = p.rate_rps > capacity
        # 100 requests: the median one waits for the half of the queue built over the arrivals' span
        ttft = 50 * (1 / capacity - 1 / p.rate_rps) if over else 0.05
        row = {"requests": 100, "ok": 100, "slo_attainment": 0.02 if over else 1.0, "ttft_s_p50": ttft}
        plan.observe(p, not over, row)
    assert rates[:4] == [8.0, 4.0, 2.0, 1.0]
    assert plan.search is not None and plan.search.best_rps == 1.0


def test_a_rate_probed_already_ends_the_search() -> None:
    search = RateSearch(1.0, rel_tol=0.0, max_probes=40)  # never within tolerance: the repeat stops it
    plan = PointPlan(_points(1.0), search)
    rates = []
    for p in plan:
        rates.append(p.rate_rps)
        plan.observe(p, p.rate_rps <= 1.0001, {"requests": 8, "ok": 8})
    assert len(rates) == len(set(rates)) and search.stop_reason is not None
    assert "was probed already" in search.stop_reason


def test_too_few_requests_a_probe_to_judge_the_attainment_asked_are_said_to_be() -> None:
    from harness.load.search import attainment_resolution_note

    # 16 requests at 0.99: passing means all 16 met; none missing in 16 still allows 17 % (1 - 0.05^(1/16))
    said = attainment_resolution_note(16, 0.99)
    assert said is not None
    assert said.startswith("load.requests: 16 requests a probe meet slo.attainment 0.99 only when every one")
    assert (
        "for up to 17 % of its requests (95 % bound), not 1 %; with 100 or more a probe may allow a miss"
        in said
    )
    # a small bound is not rounded to nothing: 999 requests at 0.999 may still miss 0.3 %, not 0 %
    assert "for up to 0.3 % of its requests (95 % bound), not 0.1 %" in (
        attainment_resolution_note(999, 0.999) or ""
    )
    assert attainment_resolution_note(100, 0.99) is None  # one miss in 100 is allowed: the share is judged
    assert attainment_resolution_note(99, 0.99) is not None
    assert attainment_resolution_note(10, 0.9) is None and attainment_resolution_note(9, 0.9) is not None
    assert attainment_resolution_note(5, 1.0) is None  # every request asked for: that is what is judged


def test_the_requests_that_would_allow_a_miss_are_counted_without_float_rounding() -> None:
    from harness.load.search import attainment_resolution_note

    # 1 / (1 - 0.9) is 10.000000000000002 in floats: 10 requests allow a miss, not 11
    assert "with 10 or more a probe may allow a miss" in (attainment_resolution_note(9, 0.9) or "")


def test_a_searchs_probes_share_one_arrival_draw_scaled_to_their_rates() -> None:
    """Common random numbers: the probe at 2 req/s sends at half the times of the one at 1 req/s, so the
    two differ by rate only; a sweep's points at those rates each draw their own."""
    from harness.load.arrivals import offsets_s
    from harness.point import point_load
    from harness.scenario import Scenario, expand_points

    s = Scenario.model_validate(
        {
            "name": "t",
            "engine": {"type": "external", "base_url": "http://127.0.0.1:9"},
            "load": {"mode": "open", "rates_rps": [1.0], "requests": 50, "arrival": "poisson", "seed": 7},
        }
    )
    plan = PointPlan(expand_points(s), RateSearch(1.0, max_probes=2))
    loads = []
    for p in plan:
        loads.append(point_load(s, p))
        plan.observe(p, True)
    assert [ld.rate_rps for ld in loads] == [1.0, 2.0]

    def sends(ld: Any) -> Any:
        return offsets_s(50, ld.rate_rps, ld.arrival, ld.burstiness, ld.seed)

    assert sends(loads[1]) == pytest.approx(sends(loads[0]) / 2)
    swept = [point_load(s, Point(0, 0, s.engine, None, r)) for r in (1.0, 2.0)]
    assert sends(swept[1]) != pytest.approx(sends(swept[0]) / 2)
