"""An external endpoint that wants an API key (`engine.api_key_env`), against `harness serve-fake
--api-key-env`: every call carries the key, a missing or wrong key is a clear error, and the key is
written nowhere in the run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.results import iter_records
from tests.conftest import start_fake_server
from tests.integration.conftest import harness_cli, run_dir_from

KEY = "sk-test-4f8a1c2e9d7b"


def _scenario(url: str) -> dict[str, object]:
    return {
        "name": "it-auth",
        "engine": {"type": "external", "base_url": url + "/v1", "api_key_env": "BENCH_KEY"},
        "workload": {"input_tokens": 8, "output_tokens": 6},
        "load": {"concurrency": [2], "requests": 4, "warmup_requests": 1},
    }


def test_the_key_goes_with_every_call_and_into_no_file(
    write_scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SERVER_KEY", KEY)
    proc, url = start_fake_server(tmp_path / "fake.log", 5, 2, "--api-key-env", "FAKE_SERVER_KEY")
    try:
        scen = str(write_scenario(_scenario(url)))
        monkeypatch.delenv("BENCH_KEY", raising=False)
        res = harness_cli("run", scen, "--results", str(tmp_path / "none"), "--no-progress")
        assert res.returncode != 0 and "Traceback" not in res.stderr
        said = " ".join(res.stderr.split())
        assert "environment variable BENCH_KEY (api_key_env) is not set" in said
        # an external endpoint writes no engine log: none is pointed to
        assert "no request finished; the run's manifest is in" in said and "logs in" not in said
        monkeypatch.setenv("BENCH_KEY", "sk-wrong")
        res = harness_cli("run", scen, "--results", str(tmp_path / "wrong"), "--no-progress")
        said = " ".join(res.stderr.split())
        assert res.returncode != 0 and "answered HTTP 401 to the key in $BENCH_KEY" in said, said[-1500:]
        # a scenario that names the model: /health wants no key, and every request failed with HTTP 401
        named = _scenario(url)
        named["engine"] = {**named["engine"], "model": {"source": "served", "name": "fake-model"}}  # type: ignore[dict-item]
        scen_named = str(write_scenario(named, "named.yaml"))
        res = harness_cli("run", scen_named, "--results", str(tmp_path / "named"), "--no-progress")
        said = " ".join(res.stderr.split())
        assert res.returncode == 3 and "answered HTTP 401 to the key in $BENCH_KEY" in said, said[-1500:]
        assert not list((tmp_path / "named").rglob("requests*.jsonl"))
        monkeypatch.setenv("BENCH_KEY", KEY)
        res = harness_cli("run", scen, "--results", str(tmp_path / "r"), "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    run = run_dir_from(res.stderr)
    measured = [r for r in iter_records(run) if not r.warmup]
    assert len(measured) == 4 and all(r.ok and r.output_tokens == 6 for r in measured)
    for f in run.rglob("*"):  # manifest, records, tables, telemetry, report
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in res.stdout + res.stderr
