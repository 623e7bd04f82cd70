"""A proxy variable in the environment that would route an external endpoint: `harness run` connects
directly all the same (its health checks as its timed streams), says so once, and keeps it in the
engine's manifest entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results import iter_records
from tests.conftest import start_fake_server
from tests.integration.conftest import harness_cli, run_dir_from


def test_a_run_past_a_proxy_says_so_once(
    write_scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    proc, url = start_fake_server(tmp_path / "fake.log", 5, 2)
    try:
        scen = write_scenario(
            {
                "name": "it-proxy",
                "engine": {"type": "external", "base_url": url + "/v1"},
                "workload": {"input_tokens": 8, "output_tokens": 4},
                "load": {"concurrency": [1], "requests": 2, "warmup_requests": 0},
            }
        )
        monkeypatch.setenv("HTTP_PROXY", "http://user:secret@127.0.0.1:9")  # nothing listens on port 9
        res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    said = " ".join(res.stderr.split())
    assert said.count("names a proxy") == 1, said[-3000:]
    assert f"names a proxy for {url} (http://127.0.0.1:9)" in said and "secret" not in said
    run = run_dir_from(res.stderr)
    assert all(r.ok for r in iter_records(run))
    (entry,) = json.loads((run / "manifest.json").read_text())["engines"]
    assert any("names a proxy" in w for w in entry["warnings"])
