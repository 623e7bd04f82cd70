"""The lean GGUF header reader against gguf-py's own reader, on files gguf-py's writer wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from harness.gguf_header import GGUFHeaderError, read_header
from harness.gguf_writer import make_gguf
from tests.gguf_split import write_split


def _reference(path: Path) -> tuple[dict[str, Any], list[tuple[str, int, int, int]], int]:
    """gguf-py's view: scalar and string fields, arrays as their length; each tensor's name, element
    count, bytes and place; where the data starts."""
    r = gguf.GGUFReader(str(path))
    fields: dict[str, Any] = {}
    for f in r.fields.values():
        if f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            fields[f.name] = len(f.data)
        elif kind == gguf.GGUFValueType.STRING:
            fields[f.name] = bytes(f.parts[f.data[0]]).decode()
        else:
            fields[f.name] = f.parts[f.data[0]].tolist()[0]
    tensors = [(str(t.name), int(t.n_elements), int(t.n_bytes), int(t.data_offset)) for t in r.tensors]
    return fields, tensors, int(r.data_offset)


def _lean(path: Path) -> tuple[dict[str, Any], list[tuple[str, int, int, int]], int]:
    h = read_header(path)
    return h.fields, [(t.name, t.n_elements, t.n_bytes, t.data_offset) for t in h.tensors], h.data_offset


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_the_header_reads_as_gguf_py_reads_it(tmp_path: Path, dtype: str) -> None:
    p = make_gguf(
        tmp_path / "m.gguf", layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=512, dtype=dtype
    )
    fields, tensors, start = _lean(p)
    assert (fields, tensors, start) == _reference(p)
    assert fields["general.architecture"] == "llama" and fields["tokenizer.ggml.tokens"] == 512
    assert len(tensors) == 2 * 9 + 3  # nine per block; embeddings, output norm, output


def test_each_file_of_a_split_model_reads_as_gguf_py_reads_it(tmp_path: Path) -> None:
    src = make_gguf(tmp_path / "m.gguf", layers=2, hidden=64, heads=4, kv_heads=4, ffn=128, vocab=512)
    shards = write_split(src, tmp_path / "split", max_tensors=8)
    assert len(shards) == 3
    for shard in shards:
        assert _lean(shard) == _reference(shard)
    assert read_header(shards[1]).fields["split.no"] == 1


def test_a_big_endian_file_reads_as_gguf_py_reads_it(tmp_path: Path) -> None:
    p = tmp_path / "be.gguf"
    w = gguf.GGUFWriter(str(p), "llama", endianess=gguf.GGUFEndian.BIG)
    w.add_block_count(1)
    w.add_token_list(["a", "bc", "def"])
    w.add_tensor("output.weight", np.arange(64, dtype=np.float32).reshape(8, 8))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert _lean(p) == _reference(p)
    assert read_header(p).fields["llama.block_count"] == 1


def test_a_file_cut_anywhere_in_its_header_is_a_header_error(tmp_path: Path) -> None:
    whole = make_gguf(tmp_path / "m.gguf", layers=1, hidden=64, heads=4, kv_heads=4, ffn=128, vocab=512)
    data = whole.read_bytes()
    end = read_header(whole).data_offset
    cut = tmp_path / "cut.gguf"
    for n in (5, 12, 30, 100, end // 2, end - 40):
        cut.write_bytes(data[:n])
        with pytest.raises(GGUFHeaderError, match="runs past the file's end"):
            read_header(cut)
    cut.write_bytes(b"")
    with pytest.raises(GGUFHeaderError, match="empty file"):
        read_header(cut)
    cut.write_bytes(b"GGUF" + (7).to_bytes(4, "little") + bytes(16))
    with pytest.raises(GGUFHeaderError, match="GGUF version 7"):
        read_header(cut)
    cut.write_bytes(b"GGML" + data[4:])
    with pytest.raises(GGUFHeaderError, match="does not start with the GGUF magic"):
        read_header(cut)
    # counts no file of this size can hold: said, not looped over
    cut.write_bytes(data[:8] + (2**60).to_bytes(8, "little") + data[16:])
    with pytest.raises(GGUFHeaderError, match="cannot fit"):
        read_header(cut)
