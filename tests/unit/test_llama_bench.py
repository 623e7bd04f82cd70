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
        "engine": {
            "type": "llamacpp",
            "launcher": "llama-server",
            "model": {"source": "synthetic"},
            **engine,
        },
        "workload": {"input_tokens": 128, "output_tokens": 64},
        **top,
    }
    return parse_scenario(data, "t.yaml")


def test_argvs_do_a_requests_work_with_the_servers_settings() -> None:
    s = _scenario(
        {
            "n_gpu_layers": -1,
            "threads": 8,
            "batch_size": 1024,
            "flash_attn": False,
            "extra_args": ["-ctk", "q8_0", "--cache-type-v=q8_0", "--no-kv-offload", "--fit", "off"],
            "llama_bench": {"repetitions": 2, "extra_args": ["--prio", "2"]},
        }
    )
    # `-fa 0`, not `off`: llama-bench builds before mid-2026 read the value as a C++ bool (`off` and `on`
    # alike as false); later ones take 0/1 too
    settings = ["-r", "2", "-o", "jsonl", "-ngl", "999", "-t", "8", "-b", "1024", "-fa", "0"]
    settings += ["-ctk", "q8_0", "-ctv", "q8_0", "-nkvo", "1", "--prio", "2"]
    # prefill and the whole request from an empty context; then decode after the prompt's context
    assert llama_bench.argvs("/b/llama-bench", s.engine, "/m.gguf", 128, 64) == [
        ["/b/llama-bench", "-m", "/m.gguf", "-p", "128", "-n", "0", "-pg", "128,63", *settings],
        ["/b/llama-bench", "-m", "/m.gguf", "-p", "0", "-n", "64", "-d", "128", *settings],
    ]
    assert llama_bench.options(s.engine)[1] == ["--fit", "off"]
    assert llama_bench.options(_scenario({"flash_attn": True}).engine)[0]["-fa"] == "1"


def test_server_list_values_are_written_as_llama_bench_reads_them() -> None:
    """A comma in a llama-bench value starts another test configuration: the server's lists use the
    separators llama-bench takes for one value, repeated overrides add up, and the last setting counts."""
    s = _scenario(
        {
            "threads": 8,
            "extra_args": [
                "-ts", "3,1", "--device=CUDA0,CUDA1", "-ot", "blk.1=CPU,blk.2=CPU", "--override-tensor",
                "blk.3=CPU", "-C", "ff,0f", "--n-cpu-moe", "2", "-lm", "none",
            ],
        }
    )  # fmt: skip
    opts, left, _ = llama_bench.options(s.engine)
    assert opts == {
        "-ngl": "0",
        "-t": "8",  # from engine.threads (extra_args may not set it: the tables would say 8)
        "-ts": "3/1",
        "-dev": "CUDA0/CUDA1",
        "-ot": "blk.1=CPU;blk.2=CPU;blk.3=CPU",
        "-ncmoe": "2",
        "-lm": "none",
    }
    assert left == ["-C", "ff,0f"]  # a list llama-bench would run as two configurations


def test_llama_bench_extra_args_replace_the_servers_values() -> None:
    s = _scenario({"threads": 8, "llama_bench": {"extra_args": ["-t", "2", "--delay", "1"]}})
    opts, _, extra = llama_bench.options(s.engine)
    assert opts["-t"] == "2" and extra == ["--delay", "1"]


def test_lengths_are_the_workload_means() -> None:
    s = _scenario({}, workload={"input_tokens": {"dist": "uniform", "mean": 100}, "output_tokens": 20})
    assert llama_bench.lengths(s.workload) == (100, 20)


def test_binary_beside_the_llama_server_binary_else_path(tmp_path: Path, monkeypatch) -> None:
    server, bench = tmp_path / "bin" / "llama-server", tmp_path / "bin" / "llama-bench"
    server.parent.mkdir()
    server.write_text("")
    s = _scenario({"binary": str(server), "llama_bench": {}})
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert llama_bench.binary(s.engine) is None
    bench.write_text("")
    assert llama_bench.binary(s.engine) == str(bench)
    given = _scenario({"llama_bench": {"binary": "~/lb"}})
    assert llama_bench.binary(given.engine) == os.path.expanduser("~/lb")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('"usage: llama-bench [options]"', "not a list of tests"),
        ('{"n_prompt": 1}', "without n_prompt, n_gen and avg_ts"),
        ('[{"n_prompt": 1, "n_gen": 0}]', "without n_prompt, n_gen and avg_ts"),
        # a broken line before the last one is not a line cut short by a stop
        ('{"n_prompt": 1, "n_gen": 0, "avg_ts": 1}\n{"n_pro\n{"n_prompt": 1}', "line 1 column"),
    ],
)
def test_parse_refuses_other_output(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        llama_bench.parse(text)


def test_parse_keeps_the_tests_finished_before_a_line_cut_short() -> None:
    text = '{"n_prompt": 8, "n_gen": 0, "avg_ts": 10.5}\n{"n_prompt": 0, "n_gen": 4, "n_de'
    assert llama_bench.parse(text) == [
        {"test": "pp8", "n_prompt": 8, "n_gen": 0, "avg_ts": 10.5, "samples_ts": []}
    ]


def test_test_names_follow_llama_bench() -> None:
    assert llama_bench.test_name(512, 0) == "pp512"
    assert llama_bench.test_name(0, 128) == "tg128"
    assert llama_bench.test_name(0, 128, 512) == "tg128 @ d512"
    assert llama_bench.test_name(512, 127) == "pp512+tg127"


TESTS = [
    {"test": "pp100", "n_prompt": 100, "n_gen": 0, "avg_ts": 500.0, "stddev_ts": 5.0},
    {"test": "pp100+tg19", "n_prompt": 100, "n_gen": 19, "avg_ts": 119.0, "stddev_ts": 2.0},
    {"test": "tg20 @ d100", "n_prompt": 0, "n_gen": 20, "n_depth": 100, "avg_ts": 50.0, "stddev_ts": 1.0},
]
# 4 requests of 100 prompt and 20 output tokens; mean TTFT 0.25 s, TPOT 0.025 s, E2E 1.19 s
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
    "e2e_s_mean": 1.19,
    "server_prefill_tok_s_mean": 450.0,
    "server_decode_tok_s_mean": 45.0,
}


def test_compare_by_hand() -> None:
    got = {c["test"]: c for c in llama_bench.compare(TESTS, ROW)}
    pp, pg, tg = got["pp100"], got["pp100+tg19"], got["tg20 @ d100"]
    assert (pp["kind"], pg["kind"], tg["kind"]) == ("prefill", "request", "decode")
    assert pp["client_tok_s"] == pytest.approx(100 / 0.25)  # 400
    assert pp["client_vs_bench"] == pytest.approx(0.8)
    assert pp["server_vs_bench"] == pytest.approx(0.9)
    assert tg["client_tok_s"] == pytest.approx(40.0)
    assert tg["client_vs_bench"] == pytest.approx(0.8)
    assert tg["server_vs_bench"] == pytest.approx(0.9)
    # the same work as the test (100 + 19 tokens) over the time a request took: 119 / 1.19 = 100
    assert pg["client_tok_s"] == pytest.approx(100.0)
    assert pg["client_vs_bench"] == pytest.approx(100 / 119)
    assert math.isnan(pg["server_tok_s"]) and math.isnan(pg["server_vs_bench"])
    assert pg["point_prompt_tokens"] == 100 and pg["point_output_tokens"] == 20


def test_the_client_decode_rate_is_a_mean_of_rates_as_the_servers_and_the_benchs_are() -> None:
    """Requests at 10 and 30 ms per token: their rates average 66.7 tok/s, as llama.cpp's timings and
    llama-bench average theirs; 1 / mean TPOT (20 ms) is 50, and set the two apart by 25 %."""
    row = {**ROW, "tpot_s_mean": 0.020, "decode_tok_s_mean": (100 + 1000 / 30) / 2}
    row["server_decode_tok_s_mean"] = row["decode_tok_s_mean"]
    tg = {c["test"]: c for c in llama_bench.compare(TESTS, row)}["tg20 @ d100"]
    assert tg["client_tok_s"] == pytest.approx(66.667, rel=1e-4)
    assert tg["client_tok_s"] == pytest.approx(tg["server_tok_s"])


def test_compare_without_successes_is_nan() -> None:
    got = llama_bench.compare(TESTS, {**ROW, "ok": 0})
    assert all(math.isnan(c["client_tok_s"]) for c in got)


def _manifest(*benches: dict) -> dict:
    return {"llama_bench": [{"variant": 0, "attempt": 0, "n_gpu_layers": 0, **b} for b in benches]}


def test_sections_pair_the_concurrency_1_point_of_the_variant() -> None:
    other = {**ROW, "point_id": "v0-c2", "concurrency": 2, "ttft_s_mean": 9.0, "aborted": math.nan}
    cut = {**ROW, "point_id": "v0-c1b", "aborted": "engine process exited (code -9)"}
    # a points table read back gives NaN for "not aborted"
    read_back = {**ROW, "aborted": math.nan}
    ((title, rows, notes),) = llama_bench.sections(
        _manifest({"tests": TESTS, "build": "abc (1)"}), [read_back, other, cut]
    )
    assert (
        title == "llama-bench beside the server, variant 0 (n_gpu_layers 0), point v0-c1; llama-bench abc (1)"
    )
    assert rows[0]["client_tok_s"] == pytest.approx(400.0) and notes == []


def test_sections_pair_a_resumes_llama_bench_with_the_points_measured_after_it() -> None:
    first = {**ROW, "attempt": 0, "ttft_s_mean": 0.5}
    resumed = {**ROW, "point_id": "v0-c1", "attempt": 1}
    got = llama_bench.sections(_manifest({"tests": TESTS}, {"attempt": 1, "tests": TESTS}), [first, resumed])
    assert [title for title, _, _ in got] == [
        "llama-bench beside the server, variant 0 (n_gpu_layers 0), point v0-c1",
        "llama-bench beside the server, variant 0 (n_gpu_layers 0, resume 1), point v0-c1",
    ]
    assert got[0][1][0]["client_tok_s"] == pytest.approx(200.0) and got[1][1][0]["client_tok_s"] == 400.0


def test_sections_say_why_nothing_is_compared() -> None:
    failed = llama_bench.sections(_manifest({"error": "llama-bench exited with code -11"}), [ROW])
    assert failed == [
        (
            "llama-bench beside the server, variant 0 (n_gpu_layers 0): llama-bench measured nothing",
            [],
            ["llama-bench: llama-bench exited with code -11"],
        )
    ]
    ((title, rows, notes),) = llama_bench.sections(
        _manifest({"tests": TESTS[:1], "error": "stopped after 90 s"}), [{**ROW, "concurrency": 4}]
    )
    assert title.endswith("no concurrency-1 closed-loop point to compare with") and rows == []
    assert notes == ["llama-bench: stopped after 90 s (1 test(s) finished)"]
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
    assert frame.to_dict("records")[1]["server timings tok/s"] == "-"


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


@pytest.mark.parametrize(
    ("engine", "top", "message"),
    [
        (
            {"launcher": "xllamacpp"},
            {},
            "t.yaml: engine: llama_bench needs launcher llama-server, not xllamacpp: llama-bench is set "
            "beside the server of its own build (xllamacpp and llama-cpp-python embed another llama.cpp, "
            "with other defaults)",
        ),
        (
            {},
            {"workload": {"dataset": "d.jsonl"}},
            "t.yaml: engine.llama_bench: llama-bench runs the workload's input_tokens and output_tokens, but "
            "workload.dataset sets them per request (allowed: no llama_bench with a dataset)",
        ),
        (
            {},
            {"workload": {"shared_prefix_tokens": 64}},
            "t.yaml: engine.llama_bench: llama-bench prefills every prompt whole, but with "
            "workload.shared_prefix_tokens the server reuses the shared prefix from its cache (allowed: "
            "shared_prefix_tokens 0 with llama_bench)",
        ),
        (
            {},
            {"workload": {"output_tokens": 1}},
            "t.yaml: engine.llama_bench: llama-bench's decode test needs output_tokens of 2 or more "
            "(allowed: output_tokens >= 2)",
        ),
        (
            {"llama_bench": {"extra_args": ["-r", "9", "-d=512"]}},
            {},
            "t.yaml: engine.llama_bench.extra_args: -d, -r: the harness sets llama-bench's model, lengths, "
            "depth, repetitions and output itself (allowed: other llama-bench options)",
        ),
    ],
)
def test_scenario_checks(engine: dict, top: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        _scenario({"llama_bench": {}, **engine}, **top)
    assert ei.value.messages == [message]


def test_scenario_field_checks() -> None:
    with pytest.raises(ScenarioError, match=r"engine\.llama_bench\.repetitions"):
        _scenario({"llama_bench": {"repetitions": 0}})
    with pytest.raises(ScenarioError, match=r"engine\.llama_bench\.runs"):
        _scenario({"llama_bench": {"runs": 2}})
    s = _scenario({"llama_bench": {"binary": "/nonexistent/llama-bench"}})
    assert input_file_errors(s, "t.yaml") == [
        "t.yaml: engine.llama_bench.binary: file not found: /nonexistent/llama-bench"
    ]


def test_report_fits_the_llama_bench_table_and_keeps_each_note_on_one_line(tmp_path: Path) -> None:
    """On a 60-column terminal the llama-bench table was cut (`606…`); it is split into parts that keep
    every number, as the points table is. Notes are `note: ...` lines the console does not break."""
    import shutil

    from rich.console import Console

    from harness.report import report_run

    root = Path(__file__).resolve().parents[2]
    src = root / "results/evidence/llama-bench-cpu/20261206T001233Z-llama-bench-cpu"
    run = tmp_path / src.name
    shutil.copytree(src, run, ignore=shutil.ignore_patterns("report*"))
    console = Console(width=60, record=True, color_system=None)
    report_run(run, console)
    text = console.export_text()
    assert "606.0 ± 57.6" in text and "…" not in text
    assert "(1/2)" in text  # the llama-bench table came in two parts
    notes = [line for line in text.splitlines() if line.startswith("note: ")]
    assert any(n.endswith("(more `load.requests` per point give one)") for n in notes), notes
