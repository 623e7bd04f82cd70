"""`harness run` against an external endpoint that is a real llama.cpp server on this machine:
local, so host telemetry applies, and its Prometheus /metrics is found and scraped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from harness.engines.external import ExternalServer
from harness.engines.llamacpp import LlamaCppServer
from harness.results import read_manifest
from harness.scenario import ExternalEngine, LlamaCppEngine

from .conftest import SMALL_MODEL, harness_cli, run_dir_from

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("ext") / "engine.log"
    cfg = LlamaCppEngine.model_validate(
        {"type": "llamacpp", "model": SMALL_MODEL, "parallel": 2, "threads": 2}
    )
    server = LlamaCppServer(cfg, log)
    url = server.start()
    yield url
    server.stop()


def test_external_endpoint_finds_metrics_only_where_served(llama_url: str) -> None:
    ext = ExternalServer(ExternalEngine(type="external", base_url=llama_url + "/v1", health_path="/health"))
    assert ext.metrics_url() is None  # not known before start()
    ext.start()
    assert ext.metrics_url() == llama_url + "/metrics" and ext.local
    assert ext.model_name  # taken from /v1/models
    # the count llama.cpp's own /tokenize gives, found through its form of the endpoint
    direct = httpx.post(llama_url + "/tokenize", json={"content": "hello world"}, timeout=10).json()["tokens"]
    assert ext.tokenize("hello world") == len(direct) >= 2 and ext._tokenize_form == "llamacpp"
    # the build it says in /props, asked as its /v1/models names llama.cpp the owner
    build = httpx.get(llama_url + "/props", timeout=10).json()["build_info"]
    assert build and ext.describe()["version"] == f"llama-server {build}"
    assert ext.describe()["version_from"] == "GET /props"


def test_run_against_local_external_llamacpp(write_scenario, tmp_path: Path, llama_url: str) -> None:
    scen = write_scenario(
        {
            "name": "it-external",
            "engine": {"type": "external", "base_url": llama_url},
            "workload": {"input_tokens": 16, "output_tokens": 8},
            "load": {"concurrency": [2], "requests": 4, "warmup_requests": 1},
            "hardware": {"gpu": "h100-sxm", "gpus": 1},
            "telemetry": {"interval_s": 0.2},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    run = run_dir_from(res.stderr)
    m = read_manifest(run)
    assert m["engines"][0]["local"] is True
    assert {"cpu", "engine_metrics"} <= set(m["telemetry"]), m["telemetry"]
    p = pd.read_csv(run / "points.csv").iloc[0]
    assert p["ok"] == 4 and p["host_mem_used_bytes_max"] > 0
    # the endpoint's own counter over the window: the tokens the records counted (warmup excluded)
    assert m["telemetry"]["engine_metrics"]["failures"] == 0
    assert p["server_llamacpp_tokens_predicted_total_delta"] == p["output_tokens"] == 4 * 8
    # llama.cpp's /tokenize fitted the prompts: 16 tokens exactly, as the server counted them
    assert m["prompt_tokens"][0]["source"].startswith("engine external tokenize"), m["prompt_tokens"]
    assert p["input_tokens"] == 4 * 16 and p["prompt_token_mismatch"] == 0
    # a local endpoint may be a port tunnelled from another host: unless a catalog GPU is here, the
    # scenario's GPU stands; where NVML says this machine has no NVIDIA GPU (as on CI), a warning says so
    from harness.rundevice import detected_gpu, machine_gpu

    found = detected_gpu(m)
    assert p["gpu_declared"] == "h100-sxm" and p["gpu"] == (found.key if found else "h100-sxm")
    said = "the endpoint's address is this machine's, which has no NVIDIA GPU" in res.stderr
    assert said == machine_gpu(m).none_here


def test_repeated_runs_do_not_hit_the_prompt_cache_unless_they_send_the_same_prompts(
    write_scenario, tmp_path: Path, llama_url: str
) -> None:
    """llama.cpp keeps each slot's last prompt (and more in its prompt cache): a second run that sent the
    same prompts would prefill almost nothing. Each run salts its prompts, and a run whose engine did
    serve prompts from its cache (here: a fixed prompt_salt, so the same prompts again) says so."""

    def run(name: str, salt: int | None) -> tuple[pd.Series, str]:
        workload = {
            "input_tokens": 48,
            "output_tokens": 4,
            **({"prompt_salt": salt} if salt is not None else {}),
        }
        scen = write_scenario(
            {
                "name": name,
                "engine": {"type": "external", "base_url": llama_url, "extra_body": {"ignore_eos": True}},
                "workload": workload,
                "load": {"concurrency": [2], "requests": 2, "warmup_requests": 0},
            },
            f"{name}.yaml",
        )
        res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress")
        assert res.returncode == 0, res.stderr[-3000:]
        return pd.read_csv(run_dir_from(res.stderr) / "points.csv").iloc[0], res.stderr

    for i in range(2):  # default: a fresh salt per run
        p, err = run(f"salted-{i}", None)
        assert p["prompt_cache_hits"] == 0 and "prompt cache" not in err, (p["cached_prompt_tokens"], err)
        assert p["short_outputs"] == 0  # extra_body's ignore_eos reached the server
    run("fixed-0", 7)
    p, err = run("fixed-1", 7)  # the same prompts as the run before, on the same slots
    assert p["prompt_cache_hits"] == 2 and p["cached_prompt_tokens"] >= 2 * 40, p
    assert "2/2 requests had" in err and "served from the engine's prompt cache" in err


def test_chat_prompts_through_the_endpoint_share_exactly_the_prefix(llama_url: str) -> None:
    """An external llama.cpp endpoint in chat mode: the template's tail is measured through its
    /apply-template and /tokenize, as for the llamacpp engine, and the prefix fitted past it (without, the
    prompts had 48 - tail tokens in common)."""
    from harness.client.openai_stream import StreamClient
    from harness.load.tokens import common_start, prepare_counter
    from harness.load.workload import build_specs
    from harness.scenario import Workload

    ext = ExternalServer(ExternalEngine(type="external", base_url=llama_url + "/v1", health_path="/health"))
    ext.start()
    client = StreamClient(llama_url, ext.model_name, api="chat", extra_body={"ignore_eos": True})
    count, _, info = prepare_counter(None, ext, client)
    assert count is not None and info["template_tail_tokens"] > 0, info

    def prefilled(text: str) -> list[int]:
        body = {"messages": [{"role": "user", "content": text}]}
        text = httpx.post(llama_url + "/apply-template", json=body, timeout=10).json()["prompt"]
        body = {"content": text, "add_special": True, "parse_special": True}
        return httpx.post(llama_url + "/tokenize", json=body, timeout=10).json()["tokens"]

    w = Workload(api="chat", input_tokens=256, output_tokens=4, shared_prefix_tokens=48)
    specs = build_specs(w, 3, 100, count, 0, salt=5)
    ids = [prefilled(s.prompt) for s in specs]
    assert [len(i) for i in ids] == [s.input_tokens for s in specs] == [256] * 3
    assert [common_start(ids[0], other) for other in ids[1:]] == [48, 48]
    ext.stop()
