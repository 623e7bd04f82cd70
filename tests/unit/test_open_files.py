"""Open files: a request in flight holds a socket, and shells often start with a soft limit far under
the hard one; a run raises it, and validate warns where even the hard one is too low."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.testing.fake_server import FakeScript, FakeServer

from ..conftest import HARNESS, ROOT

SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)


def _scenario(tmp_path: Path, base_url: str, load: dict) -> Path:
    p = tmp_path / "s.yaml"
    data = {
        "name": "fds",
        "engine": {"type": "external", "base_url": base_url, "model": {"source": "served", "name": "m"}},
        "workload": {"input_tokens": 8, "output_tokens": 4, "ignore_eos": True},
        "load": load,
        "telemetry": {"nvml": False, "cpu": False, "engine_metrics": False},
    }
    p.write_text(yaml.safe_dump(data))
    return p


def _harness(*args: str, soft: int, hard: int = HARD) -> subprocess.CompletedProcess[str]:
    """`harness ARGS` started with open-files limits (`soft`, `hard`)."""
    return subprocess.run(
        [*HARNESS, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )


@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 1024, reason="hard open-files limit < 1024")
def test_a_run_raises_its_soft_limit_so_every_connection_opens(tmp_path: Path) -> None:
    """With `ulimit -Sn 64`, 209 of 256 requests at concurrency 128 failed to connect (EMFILE), and the
    point was reported at a concurrency it never reached."""
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0)).start_in_thread()
    try:
        scen = _scenario(tmp_path, srv.base_url, {"concurrency": [96], "requests": 96, "warmup_requests": 0})
        res = _harness("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", soft=64)
    finally:
        srv.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = (tmp_path / "r").iterdir()
    (row,) = pd.read_parquet(run / "points.parquet").to_dict("records")
    assert (row["ok"], row["errors"]) == (96, 0)
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"


def test_validate_warns_where_the_hard_limit_is_under_a_client_processs_connections(tmp_path: Path) -> None:
    scen = _scenario(tmp_path, "http://127.0.0.1:9/v1", {"concurrency": [1, 256], "requests": 256})
    res = _harness("validate", str(scen), soft=200, hard=200)
    said = " ".join(res.stderr.split())
    assert (
        f"{scen}: load.concurrency: 256 requests in flight in a client process need about 320 open files, "
        "above this machine's limit of 200 (ulimit -Hn): connections past it fail and the point runs below "
        "its load (raise the limit, or split the load over more load.workers)"
    ) in said, said
    # two client processes hold 128 each: 192 files each, under the limit
    split = {"concurrency": [1, 256], "requests": 256, "workers": 2}
    scen = _scenario(tmp_path, "http://127.0.0.1:9/v1", split)
    res = _harness("validate", str(scen), soft=200, hard=200)
    assert "open files" not in res.stderr, res.stderr
