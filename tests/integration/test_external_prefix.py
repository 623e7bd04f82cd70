"""A hosted API whose OpenAI routes are not under /v1 (Gemini's `/v1beta/openai`), against
`harness serve-fake --api-prefix`: the base URL as the provider documents it is where every request
goes, and the run directory says where that was."""

from __future__ import annotations

import json
from pathlib import Path

from harness.results import iter_records
from tests.conftest import start_fake_server
from tests.integration.conftest import harness_cli, run_dir_from


def _scenario(base_url: str) -> dict[str, object]:
    return {
        "name": "it-prefix",
        "engine": {"type": "external", "base_url": base_url},
        "workload": {"input_tokens": 8, "output_tokens": 5},
        "load": {"concurrency": [2], "requests": 4, "warmup_requests": 1},
    }


def test_requests_go_under_the_base_urls_own_prefix(write_scenario, tmp_path: Path) -> None:
    proc, url = start_fake_server(tmp_path / "fake.log", 5, 2, "--api-prefix", "/v1beta/openai/")
    try:
        res = harness_cli(
            "run", str(write_scenario(_scenario(url + "/v1beta/openai/"))),
            "--results", str(tmp_path / "r"), "--no-progress",
        )  # fmt: skip
        # the server's root alone means /v1 under it, which this server does not serve
        bare = harness_cli(
            "run", str(write_scenario(_scenario(url))), "--results", str(tmp_path / "bare"), "--no-progress"
        )
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr[-2000:]
    run = run_dir_from(res.stderr)
    measured = [r for r in iter_records(run) if not r.warmup]
    assert len(measured) == 4 and all(r.ok and r.output_tokens == 5 for r in measured)
    engine = json.loads((run / "manifest.json").read_text())["engines"][0]
    assert (engine["base_url"], engine["api_prefix"]) == (url, "/v1beta/openai")
    said = " ".join(bare.stderr.split())
    assert bare.returncode != 0 and "Traceback" not in bare.stderr
    assert f"external endpoint {url}/v1/models answered HTTP 404" in said, said[-1500:]
