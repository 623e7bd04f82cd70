"""llama-bench beside the server: its command line from the scenario, the comparison with a concurrency-1
point (literal values), and the scenario checks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from harness import llama_bench
from harness.report import bench_frames
from harness.scenario import ScenarioError, input_file_errors, parse_scenario


def _scenario(engine: dict, **top: object):
    data = {
        "name": "t",
        "engine": {"type": "llamacpp", "model": {"source": "synthetic"}, **engine},
        "workload": {"input_tokens": 128, "output_tokens": 64},
        **top,
    }
    return parse_scenario(data, "t.yaml")


def test_argv_carries_the_servers_settings_and_the_workload_lengths(tmp_path: Path) -> None:
    s = _scenario(
        {
            "launcher": "llama-server",
            "n_gpu_layers": -1,
            "threads": 8,
            "batch_size": 1024,
            "flash_attn": False,
            "extra_args": ["-ctk", "q8_0", "--cache-type-v=q8_0", "--no-kv-offload", "--fit", "off"],
            "llama_bench": {"repetitions": 2, "extra_args": ["--prio", "2"]},
        }
    )
    assert llama_bench.argv("/b/llama-bench", s.engine, "/m.gguf", 128, 64) == [
        "/b/llama-bench",
        "-m",
        "/m.gguf",
        "-p",
        "128",
        "-n",
        "64",
        "-pg",
        "128,64",
        "-r",
        "2",
        "-o",
        "json",
        "-ngl",
        "999",  # -1 (all layers) as the server gets it
        "-t",
        "8",
        "-b",
        "1024",
        "-fa",
        "off",
        "-ctk",
        "q8_0",
        "--cache-type-v",
        "q8_0",
        "-nkvo",
        "1",
        "--prio",
        "2",
    ]
    assert llama_bench.carried_args(s.engine)[1] == ["--fit", "off"]


def test_xllamacpp_settings_are_not_carried_and_defaults_are_llama_benchs() -> None:
    s = _scenario({"extra_args": ["n_ubatch=256"], "llama_bench": {}})
    assert llama_bench.carried_args(s.engine) == ([], ["n_ubatch=256"])
    assert llama_bench.argv("lb", s.engine, "m", 7, 3)[-6:] == ["-r", "3", "-o", "json", "-ngl", "0"]


def test_lengths_are_the_workload_means() -> None:
    s = _scenario({}, workload={"input_tokens": {"dist": "uniform", "mean": 100}, "output_tokens": 20})
    assert llama_bench.lengths(s.workload) == (100, 20)


def test_binary_beside_the_llama_server_binary_else_path(tmp_path: Path, monkeypatch) -> None:
    server, bench = tmp_path / "bin" / "llama-server", tmp_path / "bin" / "llama-bench"
    server.parent.mkdir()
    server.write_text("")
    s = _scenario({"launcher": "llama-server", "binary": str(server), "llama_bench": {}})
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert llama_bench.binary(s.engine) is None
    bench.write_text("")
    assert llama_bench.binary(s.engine) == str(bench)
    given = _scenario({"llama_bench": {"binary": "~/lb"}})
    assert llama_bench.binary(given.engine) == os.path.expanduser("~/lb")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"n_prompt": 1}', "not a JSON list"),
        ('[{"n_prompt": 1, "n_gen": 0}]', "without n_prompt, n_gen and avg_ts"),
    ],
)
def test_parse_refuses_other_json(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        llama_bench.parse(text)


def test_test_names_follow_llama_bench() -> None:
    assert llama_bench.test_name(512, 0) == "pp512"
    assert llama_bench.test_name(0, 128) == "tg128"
    assert llama_bench.test_name(512, 128, 4096) == "pp512+tg128 @ d4096"


TESTS = [
    {"test": "pp100", "n_prompt": 100, "n_gen": 0, "avg_ts": 500.0, "stddev_ts": 5.0},
    {"test": "tg20", "n_prompt": 0, "n_gen": 20, "avg_ts": 50.0, "stddev_ts": 1.0},
    {"test": "pp100+tg20", "n_prompt": 100, "n_gen": 20, "avg_ts": 120.0, "stddev_ts": 2.0},
]
# 4 requests of 100 prompt and 20 output tokens; mean TTFT 0.25 s, TPOT 0.025 s, E2E 1.2 s
ROW = {
    "point_id": "v0-c1",
    "variant": 0,
    "mode": "closed",
    "concurrency": 1,
    "ok": 4,
    "input_tokens": 400,
    "output_tokens": 80,
    "ttft_s_mean": 0.25,
    "tpot_s_mean": 0.025,
    "e2e_s_mean": 1.2,
    "server_prefill_tok_s_mean": 450.0,
    "server_decode_tok_s_mean": 45.0,
}


def test_compare_by_hand() -> None:
    got = {c["test"]: c for c in llama_bench.compare(TESTS, ROW)}
    pp, tg, pg = got["pp100"], got["tg20"], got["pp100+tg20"]
    assert (pp["kind"], tg["kind"], pg["kind"]) == ("prefill", "decode", "request")
    assert pp["client_tok_s"] == pytest.approx(100 / 0.25)  # 400
    assert pp["client_vs_bench"] == pytest.approx(0.8)
    assert pp["server_vs_bench"] == pytest.approx(0.9)
    assert tg["client_tok_s"] == pytest.approx(40.0)
    assert tg["client_vs_bench"] == pytest.approx(0.8)
    assert tg["server_vs_bench"] == pytest.approx(0.9)
    assert pg["client_tok_s"] == pytest.approx(120 / 1.2)  # 100
    assert pg["client_vs_bench"] == pytest.approx(100 / 120)
    assert math.isnan(pg["server_tok_s"]) and math.isnan(pg["server_vs_bench"])
    assert pg["point_prompt_tokens"] == 100 and pg["point_output_tokens"] == 20


def test_compare_without_successes_is_nan() -> None:
    got = llama_bench.compare(TESTS, {**ROW, "ok": 0})
    assert all(math.isnan(c["client_tok_s"]) for c in got)


def _manifest(bench: dict) -> dict:
    return {"engines": [{"variant": 0, "offload": "all layers on CPU", "llama_bench": bench}]}


def test_sections_pair_the_concurrency_1_point_of_the_variant() -> None:
    other = {**ROW, "point_id": "v0-c2", "concurrency": 2, "ttft_s_mean": 9.0, "aborted": math.nan}
    cut = {**ROW, "point_id": "v0-c1b", "aborted": "engine process exited (code -9)"}
    # a points table read back gives NaN for "not aborted"
    read_back = {**ROW, "aborted": math.nan}
    ((title, rows, notes),) = llama_bench.sections(
        _manifest({"tests": TESTS, "build": "abc (1)"}), [read_back, other, cut]
    )
    assert title == (
        "llama-bench beside the server, variant 0 (all layers on CPU), point v0-c1; llama-bench abc (1)"
    )
    assert rows[0]["client_tok_s"] == pytest.approx(400.0) and notes == []


def test_sections_say_why_nothing_is_compared() -> None:
    failed = llama_bench.sections(_manifest({"error": "llama-bench exited with code -11"}), [ROW])
    assert failed == [
        (
            "llama-bench beside the server, variant 0 (all layers on CPU): llama-bench did not measure: "
            "llama-bench exited with code -11",
            [],
            [],
        )
    ]
    ((title, rows, _),) = llama_bench.sections(_manifest({"tests": TESTS}), [{**ROW, "concurrency": 4}])
    assert title.endswith("no concurrency-1 closed-loop point to compare with") and rows == []
    assert llama_bench.sections({"engines": [{"variant": 0}]}, [ROW]) == []


def test_report_frame_formats_the_comparison() -> None:
    import pandas as pd

    ((_, frame, _),) = bench_frames(_manifest({"tests": TESTS}), pd.DataFrame([ROW]))
    assert frame.to_dict("records")[0] == {
        "test": "pp100",
        "llama-bench tok/s": "500.0 ± 5.0",
        "server timings tok/s": "450.0",
        "client tok/s": "400.0",
        "server / bench": "0.90",
        "client / bench": "0.80",
    }
    assert frame.to_dict("records")[2]["server timings tok/s"] == "-"


def test_repetitions_far_apart_are_noted() -> None:
    # as measured with two threads on a 2-core host whose cores a compiler kept busy
    busy = {"test": "pp32+tg16", "n_prompt": 32, "n_gen": 16, "avg_ts": 7720.6, "stddev_ts": 10896.4}
    busy["samples_ts"] = [15.7233, 15425.5]
    quiet = {**TESTS[0], "stddev_ts": 99.0}  # 19.8 %: under the line
    assert llama_bench.noisy([quiet, busy]) == [
        "llama-bench pp32+tg16: its repetitions vary by 141% of their mean (15.7, 15425.5 tok/s): "
        "a busy host?"
    ]
    ((_, _, notes),) = llama_bench.sections(_manifest({"tests": [busy]}), [ROW])
    assert notes == llama_bench.noisy([busy])


def test_scenario_checks() -> None:
    with pytest.raises(ScenarioError) as ei:
        _scenario({"llama_bench": {}}, workload={"dataset": "d.jsonl"})
    assert ei.value.messages == [
        "t.yaml: engine.llama_bench: llama-bench runs the workload's input_tokens and output_tokens, but "
        "workload.dataset sets them per request (allowed: no llama_bench with a dataset)"
    ]
    with pytest.raises(ScenarioError, match=r"engine\.llama_bench\.repetitions"):
        _scenario({"llama_bench": {"repetitions": 0}})
    with pytest.raises(ScenarioError, match=r"engine\.llama_bench\.runs"):
        _scenario({"llama_bench": {"runs": 2}})
    s = _scenario({"llama_bench": {"binary": "/nonexistent/llama-bench"}})
    assert input_file_errors(s, "t.yaml") == [
        "t.yaml: engine.llama_bench.binary: file not found: /nonexistent/llama-bench"
    ]
