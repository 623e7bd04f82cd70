from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from harness.engines.base import redact, redact_scenario
from harness.records import RequestRecord
from harness.results import _LOCKED, RunDir, iter_records, max_request_id, read_manifest

NOW = dt.datetime(2026, 11, 25, 10, 0, 0, tzinfo=dt.UTC)


def test_run_directories_are_never_reused(tmp_path: Path) -> None:
    a = RunDir.create(tmp_path, "s", NOW)
    b = RunDir.create(tmp_path, "s", NOW)
    assert a.path.name == "20261125T100000Z-s"
    assert b.path.name == "20261125T100000Z-s-2"


def test_manifest_written_atomically_and_status_updates(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"run_id": run.path.name, "status": "running"})
    run.set_status("partial", "point v0-c4: engine process exited (code -9)")
    m = read_manifest(run.path)
    assert m["status"] == "partial" and m["schema_version"] == 2
    assert m["status_message"].endswith("(code -9)") and "finished_utc" in m
    assert not list(run.path.glob(".*.tmp"))


def test_records_survive_a_torn_last_line(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "s", NOW)
    for i in range(3):
        run.append_record(RequestRecord(i, "v0-c1", 100 + i, 101 + i, output_tokens=5))
    run.close()
    with open(run.path / "requests.jsonl", "ab") as f:
        f.write(b'{"request_id":3,"point_id":"v0-c1","sched\xe2\x82')  # crash mid-write, as written
    recs = list(iter_records(run.path))
    assert [r.request_id for r in recs] == [0, 1, 2]
    assert recs[2].output_tokens == 5
    assert max_request_id(run.path) == 2  # the torn line's 3 is not a record
    # resumed: the torn fragment is cut off first, so the next records are not glued to it
    again = RunDir(run.path)
    for i in (3, 4):
        again.append_record(RequestRecord(i, "v0-c2", 200 + i, 201 + i, output_tokens=7))
    again.close()
    assert [r.request_id for r in iter_records(run.path)] == [0, 1, 2, 3, 4]
    lines = (run.path / "requests.jsonl").read_text().splitlines()
    assert [json.loads(x)["request_id"] for x in lines] == [0, 1, 2, 3, 4]  # every line whole
    assert max_request_id(run.path) == 4
    with open(run.path / "requests.jsonl", "a") as f:  # written some other way: the id is not first
        f.write(json.dumps({"point_id": "v0-c2", "request_id": 11, "scheduled_ns": 1}) + "\n")
    assert max_request_id(run.path) == 11 == max(r.request_id for r in iter_records(run.path))
    again = RunDir(run.path)
    again.append_record(RequestRecord(5, "v0-c2", 300, 301))  # records go in as requests end, not by id
    again.close()
    assert max_request_id(run.path) == 11
    with open(run.path / "requests.jsonl", "ab") as f:  # a whole line damaged inside a string: skipped
        f.write(b'{"request_id":12,"point_id":"v0-\xffc2","scheduled_ns":1}\n')
    assert [r.request_id for r in iter_records(run.path)][-1] == 5
    assert max_request_id(tmp_path / "nowhere") == -1


def test_points_table_csv_and_parquet(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_points([{"point_id": "v0-c1", "output_tok_s": 12.5}])
    df = run.write_points(
        [{"point_id": "v0-c1", "output_tok_s": 12.5}, {"point_id": "v0-c2", "output_tok_s": 20.0}]
    )
    assert list(df["point_id"]) == ["v0-c1", "v0-c2"]
    assert (run.path / "points.csv").read_text().splitlines()[0] == "point_id,output_tok_s"
    assert (run.path / "points.parquet").stat().st_size > 0


def test_record_round_trip() -> None:
    r = RequestRecord(7, "v1-r2", 1, 2, 3, 9, [3, 5, 9], 10, 3, 3, 10, "length", {"predicted_n": 3})
    assert RequestRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.to_json() == dataclasses.asdict(r)  # every field, by name, without the deep copy


def test_redact_hides_secret_flag_values() -> None:
    argv = ["vllm", "serve", "m", "--api-key", "sk-123", "--hf-token=hf_abc", "--port", "8000"]
    assert redact(argv) == ["vllm", "serve", "m", "--api-key", "***", "--hf-token=***", "--port", "8000"]
    # whole words only: these are settings, not secrets; and xllamacpp's --set attr=value items
    keep = ["--max-num-batched-tokens", "8192", "--tokenizer", "/models/tok", "--set", "n_ctx=512"]
    assert redact(keep) == keep
    assert redact(["--set", "api_key=sk-1"]) == ["--set", "api_key=***"]
    # xllamacpp's real field is api_keys; plurals and camelCase count, other key=value arguments are kept
    assert redact(["--set", 'api_keys=["sk-1"]', "--api-keys", "sk-2"]) == [
        "--set",
        "api_keys=***",
        "--api-keys",
        "***",
    ]
    assert redact(["--apiKeys", "sk-3"]) == ["--apiKeys", "***"]
    kv = ["--override-kv", "tokenizer.ggml.add_bos_token=bool:false"]
    assert redact(kv) == kv
    # other words secrets go by
    for flag in ("--auth", "--authorization", "--bearer", "--credentials", "--cookie", "--passphrase"):
        assert redact([flag, "s3cr3t"]) == [flag, "***"]
    # switches take no value: the flag after one is kept (vLLM's --allow-credentials, llama-server's
    # --no-cors-credentials, vLLM's --return-tokens-as-token-ids)
    for switch in ("--allow-credentials", "--no-cors-credentials", "--return-tokens-as-token-ids"):
        assert redact(["srv", switch, "--max-num-seqs", "8"]) == ["srv", switch, "--max-num-seqs", "8"]
    # one value is hidden, not the words after it; a `key=value` item is a setting only after --set
    assert redact(["--api-key", "k", "model.gguf"]) == ["--api-key", "***", "model.gguf"]
    assert redact(["token=x", "--set"]) == ["token=x", "--set"]


def test_the_manifests_scenario_carries_no_secrets() -> None:
    from harness.scenario import parse_scenario

    s = parse_scenario(
        {
            "name": "s",
            "engine": {
                "type": "llamacpp",
                "launcher": "llama-server",
                "model": {"source": "path", "path": "m.gguf"},
                "extra_args": ["--api-key", "sekrit123", "--ubatch-size", "2"],
            },
            "variants": [{"extra_args": ["--api-key=v1secret"]}],
        }
    )
    dump = redact_scenario(s.model_dump(mode="json"))
    assert dump["engine"]["extra_args"] == ["--api-key", "***", "--ubatch-size", "2"]
    assert dump["variants"][0]["extra_args"] == ["--api-key=***"]
    assert "sekrit123" not in json.dumps(dump)
    env = {"HF_TOKEN": "hf_abc", "OPENAI_API_KEY": "sk", "TOKENIZERS_PARALLELISM": "false", "KEYRING": "x"}
    got = redact_scenario({"engine": {"type": "vllm", "env": env}})["engine"]["env"]
    assert got == {
        "HF_TOKEN": "***",
        "OPENAI_API_KEY": "***",
        "TOKENIZERS_PARALLELISM": "false",
        "KEYRING": "x",
    }
    body = {"ignore_eos": True, "api_key": "sk-1", "metadata": {"user_token": "t"}, "stop_token_ids": [2]}
    got = redact_scenario({"engine": {"type": "external", "extra_body": body}})["engine"]["extra_body"]
    assert got == {
        "ignore_eos": True,
        "api_key": "***",
        "metadata": {"user_token": "***"},
        "stop_token_ids": [2],
    }


def test_a_rate_search_run_is_not_resumed(tmp_path: Path) -> None:
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "partial", "scenario_hash": scenario_hash(s), "find_max_goodput": True})
    with pytest.raises(ResumeError, match="rate search cannot be resumed"):
        reopen(run.path, s, find_max_goodput=False)
    run.update_manifest(find_max_goodput=False)
    with pytest.raises(ResumeError, match="rate search cannot be resumed"):
        reopen(run.path, s, find_max_goodput=True)
    reopened, rows, next_id, attempt = reopen(run.path, s, find_max_goodput=False)
    assert (rows, next_id, attempt) == ([], 0, 1) and reopened.manifest["status"] == "running"


def test_counts_made_after_writing_are_applied_when_reading(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "s", NOW)
    recs = [RequestRecord(i, "v0-c1", 100 + i, 101 + i, output_text="a b c") for i in range(3)]
    for r in recs:
        run.append_record(r)  # no usage in the stream: nothing counted yet
    recs[0].output_tokens, recs[0].output_tokens_source = 3, "tokenizer"
    recs[1].output_text_tokens = 4
    run.append_counts(recs[:2])
    run.close()
    with open(run.path / "token-counts.jsonl", "a") as f:
        f.write('{"request_id": 2, "output_tok')  # torn: ignored
    got = {r.request_id: r for r in iter_records(run.path)}
    assert (got[0].output_tokens, got[0].output_tokens_source) == (3, "tokenizer")
    assert got[1].output_text_tokens == 4 and got[1].output_tokens is None
    assert got[2].output_tokens is None and got[2].output_text_tokens is None
    # a resume's first count goes after the torn line, not glued to it (and so lost)
    again = RunDir(run.path, dict(run.manifest))
    recs[2].output_tokens, recs[2].output_tokens_source = 5, "tokenizer"
    again.append_counts([recs[2]])
    assert next(r for r in iter_records(run.path) if r.request_id == 2).output_tokens == 5
    with open(run.path / "token-counts.jsonl", "ab") as f:  # damaged bytes: the line is not applied
        f.write(b'{"request_id": 1, "output_tokens": 9, "output_tokens_source": "us\xffage"}\n')
    assert next(r for r in iter_records(run.path) if r.request_id == 1).output_tokens is None


def test_points_tables_fall_back_and_say_when_neither_reads(tmp_path: Path) -> None:
    import pytest

    from harness.results import RunNotFound
    from harness.runpoints import read_points

    run = RunDir.create(tmp_path, "s", NOW)
    run.write_points([{"point_id": "v0-c1", "ok": 4}, {"point_id": "v0-c2", "ok": 3}])
    assert not list(run.path.glob(".*.tmp"))
    whole = (run.path / "points.parquet").read_bytes()
    (run.path / "points.parquet").write_bytes(whole[: len(whole) // 2])  # torn by a lost machine
    assert list(read_points(run.path)["ok"]) == [4, 3]  # the CSV holds the same table
    (run.path / "points.csv").write_text("")
    with pytest.raises(RunNotFound, match=r"unreadable points table \(points\.parquet: .*; points\.csv: "):
        read_points(run.path)


def test_resolve_runs_expands_run_folders_and_passes_over_compare_and_report_outputs(tmp_path: Path) -> None:
    import pytest

    from harness.results import RunNotFound
    from harness.runpaths import resolve_runs

    def run(p: Path) -> Path:
        p.mkdir(parents=True)
        (p / "manifest.json").write_text("{}")
        return p

    a = run(tmp_path / "results" / "a")
    b1, b2 = run(tmp_path / "results" / "cluster" / "r1"), run(tmp_path / "results" / "cluster" / "r2")
    cmp_out = tmp_path / "results" / "compare-20261201T000000Z"
    cmp_out.mkdir()
    (cmp_out / "compare.md").write_text("# Comparison\n")
    # a report over several runs writes report-<time>.html and its PNGs in report-<time>-plots/ beside them
    plots = tmp_path / "results" / "report-20261201T000000Z-plots"
    plots.mkdir()
    (plots / "tok_s.png").write_bytes(b"\x89PNG")
    with pytest.raises(RunNotFound, match="plots: not a run directory"):  # a folder of PNGs, no report
        resolve_runs([plots])
    html = tmp_path / "results" / "report-20261201T000000Z.html"
    html.write_text("<html></html>")
    # `results/*` names the report itself too
    runs, notes = resolve_runs([a, tmp_path / "results" / "cluster", cmp_out, plots, html, a])
    assert runs == [a, b1, b2]
    assert notes == [
        f"{tmp_path / 'results' / 'cluster'}: not a run directory; using the 2 run(s) below it",
        f"{cmp_out}: a compare output, not a run: passed over",
        f"{plots}: a report's plots, not a run: passed over",
        f"{html}: a report, not a run: passed over",
    ]
    # any other file beside runs too (results/README.md), but a file alone is said not to be a run
    (tmp_path / "notes.txt").write_text("x")
    assert resolve_runs([a, tmp_path / "notes.txt"]) == (
        [a],
        [f"{tmp_path / 'notes.txt'}: a file, not a run: passed over"],
    )
    with pytest.raises(RunNotFound, match=r"notes\.txt: not a run directory"):
        resolve_runs([tmp_path / "notes.txt"])
    # a file in a run directory (`harness report RUN/manifest.json`) stands for its run
    assert resolve_runs([a / "manifest.json"]) == (
        [a],
        [f"{a / 'manifest.json'}: a file of run directory {a}: using that run"],
    )
    # the top of a results tree: runs at any depth, the compare output's inside passed over
    (cmp_out / "points").mkdir()
    (cmp_out / "points" / "manifest.json").write_text("{}")
    assert resolve_runs([tmp_path / "results"])[0] == [a, b1, b2]
    # six folders down at most, hidden folders passed over: `report ~` or `report /` is not a walk of all
    deep = run(tmp_path / "deep" / "1" / "2" / "3" / "4" / "5" / "run")
    assert resolve_runs([tmp_path / "deep"])[0] == [deep]
    too_deep = run(tmp_path / "deeper" / "1" / "2" / "3" / "4" / "5" / "6" / "run")
    hidden = run(tmp_path / "deeper" / ".venv" / "run")
    with pytest.raises(RunNotFound, match="deeper: not a run directory"):
        resolve_runs([tmp_path / "deeper"])
    assert resolve_runs([too_deep, hidden])[0] == [too_deep, hidden]  # named, they are runs
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunNotFound, match="empty: not a run directory"):
        resolve_runs([tmp_path / "empty"])
    # a shell glob that matched nothing comes as written: it is no directory at all
    with pytest.raises(RunNotFound, match=r"h-\*/\*: no such file or directory"):
        resolve_runs([tmp_path / "h-*" / "*"])
    (b2 / "manifest.json").write_text("{not json")  # a broken run inside a directory of runs: said so
    with pytest.raises(RunNotFound, match=r"r2/manifest\.json: unreadable manifest"):
        resolve_runs([tmp_path / "results" / "cluster"])


def test_manifests_that_are_not_a_json_object_are_said_to_be_unreadable(tmp_path: Path) -> None:
    import pytest

    from harness.results import RunNotFound

    for body in (b"\xff\xfe{}", b"[]"):
        (tmp_path / "manifest.json").write_bytes(body)
        with pytest.raises(RunNotFound, match="unreadable manifest"):
            read_manifest(tmp_path)
    # a hand-edited part that the readers go into ended report, compare, cost and claims in a traceback
    for body, where in (
        ({"scenario": {"load": "closed"}}, "scenario.load: expected an object"),
        ({"scenario": {"variants": {"a": 1}}}, "scenario.variants: expected a list"),
        ({"seeds": "0"}, "seeds: expected an object"),
    ):
        (tmp_path / "manifest.json").write_text(json.dumps(body))
        with pytest.raises(RunNotFound, match=f"unreadable manifest: {where}"):
            read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"scenario": {"load": {}, "variants": None}}))
    assert read_manifest(tmp_path)["scenario"]["load"] == {}


def test_a_run_still_being_written_is_not_resumed(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    import psutil
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = RunDir.create(tmp_path, "s", NOW)
        runner = {
            "hostname": socket.gethostname(),
            "pid": other.pid,
            "started_s": psutil.Process(other.pid).create_time(),
        }
        run.write_manifest({"status": "running", "scenario_hash": scenario_hash(s), "runner": runner})
        with pytest.raises(ResumeError, match=f"still being run by process {other.pid} on this host"):
            reopen(run.path, s, find_max_goodput=False)
        run.update_manifest(runner={**runner, "started_s": runner["started_s"] - 3600})  # a reused pid
        assert reopen(run.path, s, find_max_goodput=False)[0].manifest["runner"]["pid"] != other.pid
    finally:
        other.kill()
        other.wait()
    run.update_manifest(status="running", runner=runner)  # killed: its process is gone

    assert reopen(run.path, s, find_max_goodput=False)[0].manifest["runner"]["pid"] == os.getpid()


def test_a_run_directory_another_process_holds_is_not_resumed(tmp_path: Path) -> None:
    """Two `--resume`s started together both found no live runner in the manifest and both measured the
    same points: the directory's lock, held while a process runs it, lets only one of them in."""
    import subprocess
    import sys

    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    run = RunDir.create(tmp_path, "s", NOW)  # this process holds it until the run is over
    run.write_manifest({"status": "interrupted", "scenario_hash": scenario_hash(s)})
    try_lock = [
        sys.executable,
        "-c",
        "import sys; from harness.results import RunDir; from pathlib import Path; "
        "sys.exit(0 if RunDir(Path(sys.argv[1])).lock() else 3)",
        str(run.path),
    ]
    assert subprocess.run(try_lock, check=False).returncode == 3  # held by its maker
    run.unlock()  # over: its status is written
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from harness.results import RunDir; "
            "from pathlib import Path; assert RunDir(Path(sys.argv[1])).lock(); print('held', flush=True); "
            "time.sleep(60)",
            str(run.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ResumeError, match="is being run by another process on this host"):
            reopen(run.path, s, find_max_goodput=False)
    finally:
        holder.kill()
        holder.wait()
    reopened = reopen(run.path, s, find_max_goodput=False)[0]  # its holder gone (killed): resumed
    reopened.unlock()
    with pytest.raises(ResumeError, match="already complete"):  # refused: the lock is let go again
        reopened.update_manifest(status="complete")
        reopen(run.path, s, find_max_goodput=False)
    assert subprocess.run(try_lock, check=False).returncode == 0


def test_a_file_system_without_flock_leaves_the_manifest_check_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some network and cluster file systems refuse flock itself: that is no other process holding the run
    (every --resume would have been refused for good), so no lock is taken and the manifest's runner
    check stands alone."""
    import errno
    import fcntl

    def refused(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refused)
    run = RunDir(tmp_path)
    assert run.lock() is True
    assert os.path.realpath(tmp_path) not in _LOCKED  # nothing held, nothing to let go
    run.unlock()


def test_a_finished_point_the_manifest_missed_is_kept_on_resume(tmp_path: Path) -> None:
    """The points table is written before the manifest's points_done: a run killed between the two had
    its finished point dropped and measured again, with a second set of its requests."""
    from harness.resume import reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "running", "scenario_hash": scenario_hash(s), "points_done": ["v0-c1"]})
    run.write_points(
        [
            {"point_id": "v0-c1", "ok": 4, "aborted": ""},
            {"point_id": "v0-c2", "ok": 4, "aborted": ""},  # finished; the kill came before points_done
            {"point_id": "v0-c4", "ok": 1, "aborted": "engine died"},  # cut short: measured again
        ]
    )
    (run.path / "points.parquet").unlink()  # read from the CSV, where "" comes back as NaN
    run, rows, _, _ = reopen(run.path, s, find_max_goodput=False)
    assert [r["point_id"] for r in rows] == ["v0-c1", "v0-c2"]
    assert run.manifest["points_done"] == ["v0-c1", "v0-c2"]  # said so, though nothing is left to run
    run.unlock()
    # a table from before the `aborted` column cannot tell: the manifest alone says what is done
    run.write_manifest({"status": "running", "scenario_hash": scenario_hash(s), "points_done": ["v0-c1"]})
    run.write_points([{"point_id": "v0-c1", "ok": 4}, {"point_id": "v0-c2", "ok": 4}])
    assert [r["point_id"] for r in reopen(run.path, s, find_max_goodput=False)[1]] == ["v0-c1"]


def test_a_run_made_before_defaults_left_the_hash_still_resumes(tmp_path: Path) -> None:
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    stored = redact_scenario(s.model_dump(mode="json"))
    del stored["workload"]["prompt_salt"]  # a field that harness did not have yet
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "partial", "scenario_hash": "0ld" * 20, "scenario": stored})
    assert reopen(run.path, s, find_max_goodput=False)[3] == 1
    stored["load"]["requests"] = 99  # a different scenario after all
    run.write_manifest({"status": "partial", "scenario_hash": "0ld" * 20, "scenario": stored})
    with pytest.raises(ResumeError, match="was run with a different scenario"):
        reopen(run.path, s, find_max_goodput=False)


def test_a_harness_with_other_defaults_does_not_resume_the_run(tmp_path: Path) -> None:
    import pytest

    from harness.resume import ResumeError, reopen, scenario_differences
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    stored = redact_scenario(s.model_dump(mode="json"))
    stored["workload"]["output_tokens"] = 128  # the old harness's default
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "partial", "scenario_hash": scenario_hash(s), "scenario": stored})
    now = redact_scenario(s.model_dump(mode="json"))
    diffs = scenario_differences(stored, now)
    assert diffs == [f"workload.output_tokens: 128 -> {s.workload.output_tokens}"]
    with pytest.raises(ResumeError, match=r"other defaults .*workload\.output_tokens: 128 -> 64; write"):
        reopen(run.path, s, find_max_goodput=False)
    # the same values everywhere: it resumes
    run.write_manifest({"status": "partial", "scenario_hash": scenario_hash(s), "scenario": now})
    assert reopen(run.path, s, find_max_goodput=False)[3] == 1


def test_scenario_differences_name_each_value_and_skip_fields_added_since() -> None:
    from harness.resume import scenario_differences

    stored = {"load": {"requests": 8, "points": [1, 2]}, "gone": True}
    now = {"load": {"requests": 9, "points": [1, 3], "new_field": 0}}
    assert scenario_differences(stored, now) == [
        "load.requests: 8 -> 9",
        "load.points[1]: 2 -> 3",
        "gone: true -> (none)",
    ]
    assert scenario_differences({"a": [1]}, {"a": [1, 2]}) == ["a: [1] -> [1, 2]"]
    # a key set now (it differs from the default) that the stored run did not have: a key added to
    # extra_body or a variant's overrides, not a field added to the harness since
    stored = {"engine": {"extra_body": {}}, "variants": [{"extra_body": {}}]}
    now = {
        "engine": {"extra_body": {"top_k": 1}, "new": 0},
        "variants": [{"extra_body": {}, "base_url": "x"}],
    }
    set_now = {"engine": {"extra_body": {"top_k": 1}}, "variants": [{"base_url": "x"}]}
    assert scenario_differences(stored, now, set_now=set_now) == [
        "engine.extra_body.top_k: (none) -> 1",
        'variants[0].base_url: (none) -> "x"',
    ]


def test_a_file_replaced_whole_is_the_old_one_or_the_new_one(tmp_path: Path) -> None:
    import pytest

    from harness.fileio import replaced_whole, write_text_whole

    f = tmp_path / "manifest.json"
    write_text_whole(f, "old\n")
    with pytest.raises(RuntimeError), replaced_whole(f) as tmp:
        tmp.write_text("half a new fi")
        raise RuntimeError("the disk filled up")
    assert f.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary left
    write_text_whole(f, "new\n")
    assert f.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    with replaced_whole(f) as tmp, replaced_whole(f) as tmp2:  # two writers do not remove each other's
        assert tmp.name.startswith(f".manifest.json.{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert tmp2 != tmp and tmp2.name.startswith(f".manifest.json.{os.getpid()}.")
        tmp.write_text("newer\n")
        tmp2.write_text("newest\n")
    # the outer one finishes last, and its file is the one left
    assert f.read_text() == "newer\n" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_umask()  # as a plain open leaves it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_temporary_name_already_taken_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first name drawn is taken (a file, or a link to one elsewhere): the next one is used, and what
    was there is left as it was; the file is synced before it replaces the old one."""
    from harness import fileio

    names = iter(["aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(names))
    target, victim = tmp_path / "manifest.json", tmp_path / "victim"
    victim.write_text("mine\n")
    (tmp_path / f".manifest.json.{os.getpid()}.aaaaaaaa.tmp").symlink_to(victim)
    synced: list[int] = []
    fsync = os.fsync
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: (synced.append(fd), fsync(fd))[1])
    fileio.write_text_whole(target, "new\n")
    assert target.read_text() == "new\n" and victim.read_text() == "mine\n" and synced
    assert (tmp_path / f".manifest.json.{os.getpid()}.aaaaaaaa.tmp").is_symlink()  # not removed, not used


def test_a_planted_link_does_not_take_a_write_elsewhere(tmp_path: Path) -> None:
    """A run directory fetched from a rented machine could hold links at the names a write uses."""
    from harness.cloud.launcher import MachineRun

    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    local = tmp_path / "h-x"
    local.mkdir()
    for name in (".cloud.json.tmp", f".cloud.json.{os.getpid()}.tmp"):  # the names earlier versions used
        (local / name).symlink_to(victim)
    m = MachineRun("h-x", "H100:1", 1, str(local), {})
    m.save()
    assert victim.read_text() == "mine\n"
    assert (
        not (local / "cloud.json").is_symlink() and '"cluster": "h-x"' in (local / "cloud.json").read_text()
    )


def test_a_run_made_on_other_gpus_is_not_resumed_here(tmp_path: Path) -> None:
    import pytest

    from harness.resume import ResumeError, machine, reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:9"}})
    h100 = {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1", "catalog_key": "h100-sxm"}
    hw = {"cpu": {"model": "AMD EPYC 9654 96-Core Processor"}, "gpu": {"available": True, "gpus": [h100] * 2}}
    assert machine(hw) == "2x NVIDIA H100 80GB HBM3, AMD EPYC 9654 96-Core Processor"
    assert machine({"cpu": {}, "gpu": {"available": False, "reason": "no NVML"}}) == "no GPU, CPU unknown"
    run = RunDir.create(tmp_path, "s", NOW)
    manifest = {"status": "partial", "scenario_hash": scenario_hash(s), "hardware": hw}
    run.write_manifest(manifest)
    a100 = {**h100, "name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-2"}
    other = {**hw, "gpu": {"available": True, "gpus": [a100] * 2}}
    with pytest.raises(ResumeError, match=r"another machine \(2x NVIDIA H100 80GB HBM3, .*\(2x NVIDIA A100"):
        reopen(run.path, s, find_max_goodput=False, hardware=other)
    # the same kind of machine (other GPU serials): it resumes
    same = {**hw, "gpu": {"available": True, "gpus": [{**h100, "uuid": "GPU-9"}] * 2}}
    assert reopen(run.path, s, find_max_goodput=False, hardware=same)[3] == 1


def test_a_run_is_not_resumed_with_keys_added_to_a_free_form_field() -> None:
    import pytest

    from harness.engines.base import redact_scenario
    from harness.resume import ResumeError, _check_same_scenario
    from harness.scenario import parse_scenario, scenario_hash

    eng = {"type": "external", "base_url": "http://127.0.0.1:9", "model": {"source": "served", "name": "m"}}
    a = parse_scenario({"name": "t", "engine": eng})
    manifest = {"scenario": redact_scenario(a.model_dump(mode="json")), "scenario_hash": scenario_hash(a)}
    _check_same_scenario(Path("r"), manifest, a)  # the same scenario resumes
    b = parse_scenario({"name": "t", "engine": {**eng, "extra_body": {"ignore_eos": True, "top_k": 1}}})
    with pytest.raises(ResumeError, match=r"engine\.extra_body\.ignore_eos: \(none\) -> true"):
        _check_same_scenario(Path("r"), manifest, b)


def test_a_run_is_not_resumed_after_its_dataset_or_model_file_changed(tmp_path: Path) -> None:
    import types

    import pytest

    from harness.resume import ResumeError, input_digests, reopen
    from harness.runstart import model_changed
    from harness.scenario import parse_scenario, scenario_hash

    data = tmp_path / "ds.jsonl"
    data.write_text('{"input_tokens": 20, "output_tokens": 200}\n')
    eng = {"type": "external", "base_url": "http://127.0.0.1:9"}
    s = parse_scenario({"name": "s", "engine": eng, "workload": {"dataset": str(data)}})
    run = RunDir.create(tmp_path, "s", NOW)
    stored = redact_scenario(s.model_dump(mode="json"))
    digests = input_digests(s)
    assert set(digests) == {"workload.dataset"}
    run.write_manifest(
        {
            "status": "partial",
            "scenario_hash": scenario_hash(s),
            "scenario": stored,
            "input_sha256": digests,
            "seeds": {"sampling": 3},
        }
    )
    data.write_text('{"input_tokens": 500, "output_tokens": 3}\n')  # the same path, other rows
    with pytest.raises(ResumeError, match=r"workload\.dataset changed since the run was made"):
        reopen(run.path, s, find_max_goodput=False)
    # a model file replaced at the same path: the variant does not start
    manifest = {"engines": [{"variant": 0, "attempt": 0, "model": {"sha256": "a" * 64}}]}
    same = types.SimpleNamespace(model=types.SimpleNamespace(path="m.gguf", sha256="a" * 64))
    other = types.SimpleNamespace(model=types.SimpleNamespace(path="m.gguf", sha256="b" * 64))
    assert model_changed(manifest, 0, same) is None and model_changed(manifest, 1, other) is None
    assert "m.gguf is not the file this run measured before" in str(model_changed(manifest, 0, other))


def test_a_point_is_described_by_the_engine_of_its_own_attempt() -> None:
    from harness.runinfo import engine_entry

    m = {
        "engines": [
            {"variant": 0, "attempt": 0, "model": {"gguf_type": "F16"}},
            {"variant": 1, "attempt": 0, "model": {"gguf_type": "Q8_0"}},
            {"variant": 0, "attempt": 2, "model": {"gguf_type": "Q4_0"}},
        ]
    }
    assert engine_entry(m, 0, 0)["model"]["gguf_type"] == "F16"
    assert engine_entry(m, 0, 2)["model"]["gguf_type"] == "Q4_0"
    assert engine_entry(m, 0, 1)["model"]["gguf_type"] == "F16"  # attempt 1 did not start variant 0
    assert engine_entry(m, 1, 2)["model"]["gguf_type"] == "Q8_0" and engine_entry(m, 5) == {}


def test_a_run_drawn_another_way_is_not_resumed_where_its_draws_matter(tmp_path: Path) -> None:
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    eng = {"type": "external", "base_url": "http://127.0.0.1:9"}
    for workload, refused in (
        ({"input_tokens": {"dist": "uniform", "mean": 100, "min": 80}}, True),
        ({}, False),
    ):
        s = parse_scenario({"name": "s", "engine": eng, "workload": workload})
        run = RunDir.create(tmp_path / str(refused), "s", NOW)
        stored = redact_scenario(s.model_dump(mode="json"))
        run.write_manifest(
            {"status": "partial", "scenario_hash": scenario_hash(s), "scenario": stored, "seeds": {}}
        )
        if refused:  # made before the scheme was recorded: lengths drawn by global request id
            with pytest.raises(ResumeError, match=r"sampling scheme 1, this one 3"):
                reopen(run.path, s, find_max_goodput=False)
        else:  # fixed lengths: nothing is drawn, the run resumes
            assert reopen(run.path, s, find_max_goodput=False)[3] == 1


def test_a_damaged_points_table_is_said_to_be_so(tmp_path: Path) -> None:
    """Both tables are written whole; one damaged later (a copy cut short, a bad disk) was read past
    silently: the CSV taken for an unreadable parquet table, a lost row not missed."""
    from harness.report import run_notes
    from harness.runpoints import read_points

    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "complete", "points_done": ["v0-c1", "v0-c2"]})
    rows = [{"point_id": p, "output_tok_s": 10.0} for p in ("v0-c1", "v0-c2")]
    run.write_points(rows)
    assert "read_note" not in read_points(run.path).attrs
    (run.path / "points.parquet").write_bytes(b"PAR1 not really")
    run.path.joinpath("points.csv").write_text("point_id,output_tok_s\nv0-c1,10.0\n")
    df = read_points(run.path)
    note = df.attrs["read_note"]
    assert "points.parquet" in note and "read from points.csv" in note and "done: v0-c2" in note
    assert any(n.startswith("points table: ") for n in run_notes(run.manifest, df, run.path))
    # both removed: an empty table, said to be missing, not "no finished points" alone
    (run.path / "points.parquet").unlink()
    (run.path / "points.csv").unlink()
    df = read_points(run.path)
    assert df.empty
    assert df.attrs["read_note"] == (
        "no points table (points.parquet, points.csv) though the manifest says 2 point(s) are done: the "
        "files were removed"
    )


def test_resume_refuses_a_run_whose_points_table_lost_done_points(tmp_path: Path) -> None:
    """Measuring them again would add a second set of their requests to requests.jsonl."""
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    s = parse_scenario({"name": "s", "engine": {"type": "external", "base_url": "http://127.0.0.1:1"}})
    run = RunDir.create(tmp_path, "s", NOW)
    stored = redact_scenario(s.model_dump(mode="json"))
    run.write_manifest(
        {
            "status": "partial",
            "scenario_hash": scenario_hash(s),
            "scenario": stored,
            "seeds": {},
            "points_done": ["v0-c1"],
        }
    )
    with pytest.raises(
        ResumeError, match=r"lacks point\(s\) the manifest says are done \(v0-c1\): no points table"
    ):
        reopen(run.path, s, find_max_goodput=False)
    run.write_points([{"point_id": "v0-c1", "output_tok_s": 10.0}])
    (run.path / "report.html").write_text("<html>made before the resume</html>")
    (run.path / "report-plots").mkdir()
    assert reopen(run.path, s, find_max_goodput=False)[1][0]["point_id"] == "v0-c1"
    # the HTML report of the unfinished run is not left beside the resumed one
    assert not (run.path / "report.html").exists() and not (run.path / "report-plots").exists()


def test_a_fixed_length_distribution_draws_nothing_and_resumes() -> None:
    from harness.load.workload import sampling_needed
    from harness.scenario import Load, Workload

    assert sampling_needed(Workload(input_tokens={"dist": "fixed", "mean": 100}, output_tokens=64)) == 1
    assert sampling_needed(Workload(input_tokens={"dist": "normal", "mean": 100, "stddev": 5})) == 2
    # scheme 3 changed open-loop arrivals only: a closed-loop run of scheme 2 that draws lengths resumes
    drawn = Workload(input_tokens={"dist": "normal", "mean": 100, "stddev": 5})
    assert sampling_needed(drawn, Load(), 3) == 2
    assert sampling_needed(Workload(), Load(mode="open", rates_rps=(5.0,)), 2) == 3
    assert sampling_needed(Workload(), Load(mode="open", rates_rps=(5.0,), arrival="constant"), 2) == 1


def test_each_record_is_on_disk_as_soon_as_it_is_appended(tmp_path: Path) -> None:
    """Nothing lost on a crash: a record is written through to the file before the next request ends,
    not held in a buffer until the run closes it."""
    run = RunDir.create(tmp_path, "s", NOW)
    run.write_manifest({"status": "running"})
    run.append_record(RequestRecord(7, "v0-c1", 1, 2, 3, 4, [3], 5, 6))
    lines = (run.path / "requests.jsonl").read_text().splitlines()  # read by another handle, unclosed
    assert len(lines) == 1 and json.loads(lines[0])["request_id"] == 7


def test_an_open_loop_run_with_variants_from_the_older_arrival_seeds_is_not_resumed(tmp_path: Path) -> None:
    """Scheme 2 seeded arrivals by the point's place in the run: variants at one rate drew different
    schedules. A run of several variants made so would mix both ways after a resume."""
    import pytest

    from harness.resume import ResumeError, reopen
    from harness.scenario import parse_scenario, scenario_hash

    eng = {"type": "external", "base_url": "http://127.0.0.1:9"}
    for variants, refused in (([{}, {"health_path": "/v1/models"}], True), ([], False)):
        load = {"mode": "open", "rates_rps": [5], "arrival": "poisson"}
        s = parse_scenario({"name": "s", "engine": eng, "load": load, "variants": variants})
        run = RunDir.create(tmp_path / str(refused), "s", NOW)
        stored = redact_scenario(s.model_dump(mode="json"))
        run.write_manifest(
            {
                "status": "partial",
                "scenario_hash": scenario_hash(s),
                "scenario": stored,
                "seeds": {"sampling": 2},
            }
        )
        if refused:
            with pytest.raises(ResumeError, match=r"arrivals another way \(sampling scheme 2, this one 3\)"):
                reopen(run.path, s, find_max_goodput=False)
        else:  # one variant: each point is its own draw either way
            assert reopen(run.path, s, find_max_goodput=False)[3] == 1


def test_a_points_seed_depends_on_the_scenario_seed_and_the_rate_only() -> None:
    """(Through `harness run`: tests/integration/test_arrival_schedule.py.)"""
    from harness.load.arrivals import point_seed

    assert point_seed(7, 20.0) != point_seed(7, 40.0) and point_seed(7, 20.0) != point_seed(8, 20.0)
    assert point_seed(3, None) == 3


def test_engine_warnings_are_given_again_by_the_report(tmp_path: Path) -> None:
    """The GPU a run was labelled with had been printed during the run and kept nowhere: a later reader
    could not tell an assumed H100 from a measured one."""
    import pandas as pd

    from harness.report import run_notes

    tunnelled = "the endpoint's address is this machine's, which has no NVIDIA GPU: ..."
    manifest = {
        "status": "complete",
        "engines": [
            {"variant": 0, "warnings": [tunnelled]},
            {"variant": 1, "attempt": 0, "warnings": ["llama.cpp put no weights on the GPU"]},
            {"variant": 0, "attempt": 1, "warnings": [tunnelled]},  # a resume starts it again: said once
        ],
    }
    assert run_notes(manifest, pd.DataFrame(), tmp_path) == [
        f"engine (variant 0): {tunnelled}",
        "engine (variant 1): llama.cpp put no weights on the GPU",
    ]


def test_info_metric_columns_an_older_harness_wrote_are_kept_out_of_comparisons() -> None:
    """The committed vLLM run's table has `server_vllm_cache_config_info__...` columns (labels as names,
    up to 1,000 characters) that every compare output then carried. The run's own table keeps them (a
    resume rewrites it, and an older manifest has no other copy); counters whose labels say `info` stay."""
    import pandas as pd

    from harness.runinfo import points_frame
    from harness.runpoints import info_columns, read_points

    run = Path(__file__).resolve().parents[2] / "results/evidence/20261201T120142Z-vllm-tiny-cpu"
    raw = pd.read_csv(run / "points.csv")
    info = [
        c for c in raw.columns if c.startswith(("server_vllm_cache_config_info__", "server_python_info__"))
    ]
    assert len(info) == 4 and sorted(info_columns(raw)) == sorted(info)
    assert set(info) <= set(read_points(run).columns)
    frame = points_frame([run])
    assert (
        not set(info) & set(frame.columns) and frame["output_tok_s"].tolist() == raw["output_tok_s"].tolist()
    )
    counters = pd.DataFrame(
        columns=[
            "server_app_log_messages_total__level_info__source_router_delta",
            "server_tgi_request_total__endpoint_info__method_GET_delta",
            "server_python_info__implementation_CPython",
        ]
    )
    assert info_columns(counters) == ["server_python_info__implementation_CPython"]


def test_outputs_made_in_the_same_second_each_get_their_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two compares (or two reports over several runs) started in the same second wrote into one
    `compare-<time>/` (`report-<time>.html`): the second's numbers replaced the first's without a word."""
    import shutil

    from typer.testing import CliRunner

    from harness import results
    from harness.cli import app
    from harness.fileio import claim_new

    assert claim_new(tmp_path, "x") == tmp_path / "x" and claim_new(tmp_path, "x") == tmp_path / "x-2"
    assert claim_new(tmp_path, "r", ".html", folder=False) == tmp_path / "r.html"
    assert claim_new(tmp_path, "r", ".html", folder=False) == tmp_path / "r-2.html"
    assert (tmp_path / "r-2.html").is_file() and (tmp_path / "x-2").is_dir()

    evidence = Path(__file__).resolve().parents[2] / "results" / "evidence"
    runs = tmp_path / "runs"
    for name in ("20261125T114708Z-quickstart-cpu", "20261201T120142Z-vllm-tiny-cpu"):
        shutil.copytree(evidence / name, runs / name)
    monkeypatch.setattr(results, "utc_stamp", lambda now=None: "20261207T000000Z")
    a, b = sorted(str(p) for p in runs.iterdir())
    for args in (["compare", a], ["compare", b]):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(p.name for p in runs.glob("compare-*")) == [
        "compare-20261207T000000Z",
        "compare-20261207T000000Z-2",
    ]
    assert "quickstart" in (runs / "compare-20261207T000000Z" / "compare.md").read_text()
    assert "vllm" in (runs / "compare-20261207T000000Z-2" / "compare.md").read_text()


def test_the_manifest_says_where_relative_paths_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model.path: models/m.gguf`, a dataset or a `binary:` are recorded as written, and so is the engine's
    `--model`: the manifest names the directory they resolved from."""
    from harness.runstart import new_run
    from harness.scenario import expand_points, parse_scenario

    engine = {
        "type": "external",
        "base_url": "http://127.0.0.1:9",
        "model": {"source": "served", "name": "m"},
    }
    s = parse_scenario({"name": "s", "engine": engine})
    here = tmp_path / "bench"
    here.mkdir()
    monkeypatch.chdir(here)
    run = new_run(s, Path("results"), "s.yaml", expand_points(s), False)
    run.unlock()
    assert read_manifest(run.path)["cwd"] == str(here)
    assert run.path.parent == Path("results")  # as given: relative to that directory
