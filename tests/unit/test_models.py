from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.models import ModelError, gguf_info, make_gguf, resolve
from harness.scenario import PathModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("dtype", "gguf_type"), [("f32", "F32"), ("f16", "F16"), ("q8_0", "Q8_0")])
def test_make_gguf_writes_the_asked_type_and_shape(tmp_path: Path, dtype: str, gguf_type: str) -> None:
    p = make_gguf(
        tmp_path / f"m-{dtype}.gguf", layers=3, hidden=64, heads=4, kv_heads=2, ffn=128, dtype=dtype
    )
    info = gguf_info(p)
    assert info["gguf_type"] == gguf_type
    assert info["architecture"] == "llama"
    assert info["block_count"] == 3 and info["embedding_length"] == 64
    assert not list(tmp_path.glob("*.part"))


def test_gguf_info_weight_bytes_by_group(tmp_path: Path) -> None:
    p = make_gguf(tmp_path / "m.gguf", layers=3, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512)
    wb = gguf_info(p)["weight_bytes"]
    # per block: q, o 64x64; k, v 32x64; gate, up, down 128x64 -> 36,864 F16 params + two F32 norms of 64
    assert wb["blocks"] == 3 * (36_864 * 2 + 2 * 64 * 4)
    assert wb["token_embd"] == wb["output"] == 512 * 64 * 2
    assert wb["other"] == 64 * 4  # output_norm


def test_a_gguf_header_gives_the_roofline_its_shape(tmp_path: Path) -> None:
    from harness.runroofline import gguf_shape

    p = make_gguf(tmp_path / "m.gguf", layers=3, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512)
    info = gguf_info(p)
    assert (info["head_count"], info["head_count_kv"]) == (4, 2)
    # q, o 64x64; k, v 32x64; gate, up, down 128x64; two norms of 64 per block; embeddings, output, norm
    assert info["parameters"] == 3 * (36_864 + 2 * 64) + 2 * 512 * 64 + 64
    shape = gguf_shape({"name": "m", **info})
    assert shape is not None
    assert (shape.layers, shape.heads, shape.kv_heads, shape.head_dim) == (3, 4, 2, 16)
    assert shape.kv_bytes_per_token() == 2 * 3 * 2 * 16 * 2
    assert gguf_shape({"name": "m", "block_count": 3}) is None  # a file read by an older harness


def test_make_gguf_q8_0_is_34_bytes_per_32_weights(tmp_path: Path) -> None:
    p = make_gguf(tmp_path / "q.gguf", layers=1, hidden=64, heads=4, kv_heads=4, ffn=128, dtype="q8_0")
    wb = gguf_info(p)["weight_bytes"]
    assert wb["blocks"] == (4 * 64 * 64 + 3 * 128 * 64) // 32 * 34 + 2 * 64 * 4


def test_make_gguf_rejects_bad_shapes(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as e:
        make_gguf(tmp_path / "x.gguf", hidden=64, heads=5)
    assert str(e.value) == (
        "hidden 64 is not divisible by heads 5 (allowed: heads 1, 2, 4, 8, 16, 32, 64); "
        "heads 5 is not divisible by kv_heads 4 (allowed: kv_heads 1, 5)"
    )
    with pytest.raises(ModelError) as e:
        make_gguf(tmp_path / "x.gguf", hidden=48, heads=4, ffn=128, dtype="q8_0")
    assert str(e.value) == (
        "hidden 48 is not a multiple of 32, as dtype q8_0 needs (allowed: hidden 64 or another multiple of"
        " 32, or dtype f16)"
    )
    assert not (tmp_path / "x.gguf").exists()


def test_resolve_path_model_reports_sha256_and_type(tiny_gguf: Path) -> None:
    m = resolve(PathModel(source="path", path=str(tiny_gguf)))
    assert m.gguf_type == "F16" and m.sha256 is not None and len(m.sha256) == 64
    assert m.manifest()["size_bytes"] == tiny_gguf.stat().st_size


def test_not_a_gguf_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a readable GGUF"):
        resolve(PathModel(source="path", path=str(bad)))


def test_make_gguf_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.gguf"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "model",
            "make-gguf",
            str(out),
            "--dtype",
            "q8_0",
            "--hidden",
            "128",
            "--ffn",
            "256",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr
    assert "Q8_0" in res.stdout and out.is_file()
    res = subprocess.run(
        [sys.executable, "-m", "harness", "model", "make-gguf", str(out), "--dtype", "q4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "make-gguf: --dtype: invalid value 'q4' (allowed: f32, f16, q8_0)"


def test_a_split_model_counts_the_weights_of_all_its_files(tmp_path: Path) -> None:
    """A big GGUF comes in split files (llama.cpp loads them all from the first): its weights, parameters
    and size are those of every file, where they were the first file's alone."""
    from ..gguf_split import write_split

    whole = make_gguf(tmp_path / "whole.gguf", layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512)
    files = write_split(whole, tmp_path / "split", max_tensors=8)  # 21 tensors -> 3 files
    assert [f.name for f in files] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    one, split = gguf_info(whole), gguf_info(files[0])
    assert split["split_count"] == 3 and split["size_bytes"] == sum(f.stat().st_size for f in files)
    assert split["weight_bytes"] == one["weight_bytes"] and split["parameters"] == one["parameters"]
    assert split["gguf_type"] == "F16" and split["block_count"] == 2

    with pytest.raises(ModelError, match="file 2 of a split GGUF of 3: name the first one"):
        gguf_info(files[1])
    files[2].unlink()
    with pytest.raises(ModelError, match="split GGUF file 3 of 3 missing"):
        gguf_info(files[0])
    renamed = files[0].rename(tmp_path / "split" / "model.gguf")
    with pytest.raises(ModelError, match=r"must be named NAME-0000K-of-00003\.gguf"):
        gguf_info(renamed)


def test_a_split_model_has_one_digest_over_all_its_files_and_each_files(tmp_path: Path) -> None:
    """A split model's sha256 covers the bytes of every file in order (a change in any file changes it),
    and each file's own sha256 is recorded, as published next to each file."""
    import hashlib

    from ..gguf_split import write_split

    whole = make_gguf(tmp_path / "whole.gguf", layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512)
    files = write_split(whole, tmp_path / "split", max_tensors=8)
    m = resolve(PathModel(source="path", path=str(files[0])))
    data = [f.read_bytes() for f in files]
    assert m.sha256 == hashlib.sha256(b"".join(data)).hexdigest()
    assert m.info is not None and m.info["split_sha256"] == [hashlib.sha256(d).hexdigest() for d in data]
    assert m.manifest()["size_bytes"] == sum(len(d) for d in data)

    last = bytearray(data[2])
    last[-1] ^= 0xFF  # the last file changes: the model's digest changes, the first file's does not
    files[2].write_bytes(bytes(last))
    again = resolve(PathModel(source="path", path=str(files[0])))
    assert again.sha256 != m.sha256
    assert again.info is not None and again.info["split_sha256"][0] == m.info["split_sha256"][0]
    assert again.info["split_sha256"][2] == hashlib.sha256(bytes(last)).hexdigest()


@pytest.mark.parametrize("size", [300, 350, 512])
def test_every_allowed_vocab_size_has_pieces_a_model_may_emit(size: int) -> None:
    """Below 384 the truncated piece list held no stream-safe piece, so a model of that vocab emitted
    byte and control tokens (invalid UTF-8 that did not re-tokenize to itself)."""
    from harness.gguf_writer import _vocab, stream_safe

    tokens, scores, types = _vocab(size)
    assert len(tokens) == len(scores) == len(types) == size and len(set(tokens)) == size
    safe = [t for t, ok in zip(tokens, stream_safe(tokens), strict=True) if ok]
    assert {"\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"} <= set(safe)


def test_a_cached_model_damaged_since_it_was_made_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached GGUF cut short passed `validate` (only model paths were checked), and the engine failed
    to load it at start, with --resume suggested, which met the same file."""
    from harness.models import synthetic_path
    from harness.scenario.sources import SyntheticModel

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    spec = SyntheticModel(source="synthetic")
    path = synthetic_path(spec)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert synthetic_path(spec) == path and path.read_bytes() == whole


def _make_synthetic(cache: str, start: Any, q: Any) -> None:
    """In a process of its own: wait for the other one, make the synthetic model, report (path, error)."""
    import os

    os.environ["HARNESS_CACHE"] = cache
    from harness.models import synthetic_path
    from harness.scenario.sources import SyntheticModel

    start.wait()
    try:
        path = synthetic_path(SyntheticModel(source="synthetic", layers=4, hidden=1024))
        q.put((str(path), path.stat().st_ino, None))  # the file it found or made, as it returned
    except Exception as e:
        q.put((None, None, f"{type(e).__name__}: {e}"))


def test_two_processes_that_make_the_same_model_at_once_both_get_it(tmp_path: Path) -> None:
    """Two runs started together on a new machine: both wrote `<model>.part`, the first renamed it away,
    and the second failed ('cannot write ...: No such file or directory'). One makes it, the other waits
    and finds it made."""
    import multiprocessing as mp

    from harness.gguf_header import gguf_incomplete

    ctx = mp.get_context("spawn")
    start, q = ctx.Barrier(2), ctx.Queue()  # both imported, then both at once
    procs = [ctx.Process(target=_make_synthetic, args=(str(tmp_path), start, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert [e for _, _, e in got] == [None, None], got
    # one file, made once: the other process waited and found it (two writes would be two inodes)
    ((path, _),) = {(p, ino) for p, ino, _ in got}
    assert gguf_incomplete(Path(path)) is None
    assert sorted(f.name for f in (tmp_path / "models").iterdir()) == [
        Path(path).name,
        Path(path).name + ".lock",
    ]


def test_a_ctrl_c_ends_the_wait_for_another_process_making_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl
    import time

    from harness.engines.process import set_abort_check
    from harness.models import synthetic_path
    from harness.scenario.sources import SyntheticModel

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    spec = SyntheticModel(source="synthetic")
    made = synthetic_path(spec)
    made.unlink()
    with open(made.with_name(made.name + ".lock"), "a") as held:  # another process making it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        asked = time.monotonic() + 0.3
        set_abort_check(lambda: "interrupted by SIGINT" if time.monotonic() > asked else None)
        try:
            with pytest.raises(ModelError, match=r"waiting for another process making .* stopped: inter"):
                synthetic_path(spec)
        finally:
            set_abort_check(None)
    assert not made.exists()
