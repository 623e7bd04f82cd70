"""Open-loop arrivals through `harness run`: every engine variant at one rate gets the same schedule (so
variants compare on one offered load), and another rate another draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.results import iter_records

from ..conftest import start_fake_server
from .conftest import harness_cli


def test_variants_at_one_rate_share_the_arrival_schedule(write_scenario, tmp_path: Path) -> None:
    server, url = start_fake_server(tmp_path / "fake.log", 5, 2)
    engine = {
        "type": "external",
        "base_url": f"{url}/v1",
        "health_path": "/health",
        "model": {"source": "served", "name": "fake"},
    }
    try:
        scen = write_scenario(
            {
                "name": "it-arrivals",
                "engine": engine,
                "variants": [{"extra_body": {"top_k": 1}}, {"extra_body": {"top_k": 2}}],
                "workload": {"input_tokens": 8, "output_tokens": 4},
                "load": {"mode": "open", "rates_rps": [20, 30], "requests": 6, "warmup_requests": 1},
            }
        )
        res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=120)
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    (run,) = (tmp_path / "r").glob("*-it-arrivals")
    sched: dict[str, list[int]] = {}
    for r in iter_records(run):
        if not r.warmup:
            sched.setdefault(r.point_id, []).append(r.scheduled_ns)
    gaps = {p: np.diff(sorted(t)) for p, t in sched.items()}
    assert sorted(gaps) == ["v0-r20", "v0-r30", "v1-r20", "v1-r30"]
    for rate in ("r20", "r30"):  # the same draw for both variants, to the nanosecond's rounding
        assert np.abs(gaps[f"v0-{rate}"] - gaps[f"v1-{rate}"]).max() <= 1
    # another rate, another draw: not the 20 req/s gaps scaled by 20/30
    assert not np.allclose(gaps["v0-r30"], gaps["v0-r20"] * 20 / 30, rtol=0.01)
