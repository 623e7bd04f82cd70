"""The generated multi-node `run` script with real Ray: two "nodes" on this host (rank 0 and rank 1,
as SkyPilot would start them), the head waiting for both, running `harness run`, stopping Ray; the
worker joining and leaving once the head's Ray is gone. The engine is the project's fake OpenAI
server (an `external` engine), so no vLLM or GPU is needed; what is tested is the orchestration.

Needs the `ray` package (in the dev extra; about a minute on two cores); skipped without it, except in
CI (HARNESS_REQUIRE_ALL=1). A second Ray cluster stands in for SkyPilot's own (which runs on every
node, port 6380, and runs the script as one of its tasks): the script must leave it running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.cloud import scripts
from harness.testing.fake_server import FakeScript, FakeServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray package"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_cluster(port: str) -> None:
    """The cluster on `port` stopped as the script stops its own: SIGTERM, then SIGKILL for what is left
    after 10 s (its GCS server can outlive a SIGTERM)."""
    pattern = f"ray.*[=:]{port}( |$)"
    subprocess.run(["pkill", "-f", pattern], check=False)
    for _ in range(20):
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode != 0:
            return
        time.sleep(0.5)
    subprocess.run(["pkill", "-9", "-f", pattern], check=False)


def _ray(bindir: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(bindir) / "ray"), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_two_node_script_runs_the_benchmark_on_the_head_and_every_node_exits(tmp_path: Path) -> None:
    bindir = str(Path(sys.executable).parent)  # `python3` and `ray` of this environment
    bystander = str(_free_port())
    short_tmp = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
    base_env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    started = _ray(
        bindir,
        "start",
        "--head",
        f"--port={bystander}",
        f"--temp-dir={short_tmp}",  # Ray's socket paths must stay under 107 bytes
        "--include-dashboard=false",
        "--disable-usage-stats",
        env=base_env,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    srv = FakeServer(FakeScript(ttft_s=0.005, itl_s=0.002), host="127.0.0.1", port=0).start_in_thread()
    try:
        scenario = tmp_path / "fake.yaml"
        scenario.write_text(
            "name: mn-fake\n"
            f"engine: {{type: external, base_url: 'http://127.0.0.1:{srv.port}', health_path: /v1/models}}\n"
            "workload: {input_tokens: 16, output_tokens: 8}\n"
            "load: {mode: closed, concurrency: [1, 2], requests: 4, warmup_requests: 0}\n"
            "telemetry: {nvml: false}\n"
        )
        script = tmp_path / "run.sh"
        script.write_text(scripts.multi_node_run_script(str(scenario), "mn-results"))
        env = {
            **base_env,
            "HOME": str(tmp_path),
            "SKYPILOT_NODE_IPS": "127.0.0.1\n127.0.0.1",
            "SKYPILOT_NUM_NODES": "2",
            "HARNESS_MAX_SECONDS": "300",
            "HARNESS_RAY_PORT": str(_free_port()),
            # the worker looks at the head every 15 s and leaves after 4 misses on a real cluster; a miss
            # (`ray status` of a stopped head) takes about 40 s here
            "HARNESS_RAY_PROBE_S": "1",
            "HARNESS_RAY_MISSES": "1",
        }
        procs = {}
        for rank in (0, 1):
            log = open(tmp_path / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below
            procs[rank] = (
                subprocess.Popen(
                    ["bash", str(script)],
                    env={**env, "SKYPILOT_NODE_RANK": str(rank)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        rcs = {}
        for rank, (p, log) in procs.items():
            try:
                rcs[rank] = p.wait(timeout=400)
            finally:
                if p.poll() is None:
                    p.kill()
                log.close()
        # the other cluster is still up after both nodes' scripts ended
        alive = _ray(bindir, "status", f"--address=127.0.0.1:{bystander}", env=base_env)
        assert alive.returncode == 0, alive.stdout + alive.stderr
    finally:
        srv.stop()
        _stop_cluster(bystander)
        shutil.rmtree(short_tmp, ignore_errors=True)
    head = (tmp_path / "rank0.log").read_text()
    worker = (tmp_path / "rank1.log").read_text()
    assert rcs == {0: 0, 1: 0}, head[-3000:] + "\n----\n" + worker[-3000:]
    assert "ray: 2/2 nodes alive" in head
    assert "harness run" not in worker and "mn-fake" not in worker
    assert "could not prepare" not in head + worker  # every node wrote the scenario's models
    (run_dir,) = (tmp_path / "mn-results").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    records = (run_dir / "requests.jsonl").read_text().splitlines()
    assert len(records) == 8  # 2 points x 4 requests
