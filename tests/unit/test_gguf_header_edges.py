"""The GGUF header reader on what gguf-py's writer never writes: every scalar type, strings ending at the
file's end, empty strings and arrays, alignments, unknown types and versions (files built byte by byte
from the GGUF spec: magic, version u32, tensor count u64, field count u64, then fields and tensor infos)."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from harness.gguf_header import GGUFHeader, GGUFHeaderError, read_header

U32, STRING, ARRAY = 4, 8, 9  # GGUF value types


def _bytes(
    fields: list[tuple[str, int, bytes]],
    tensors: tuple[tuple[str, tuple[int, ...], int, int], ...] = (),
    version: int = 3,
) -> bytes:
    """A GGUF header: fields as (key, value type, payload), tensors as (name, dims, type, offset)."""

    def text(t: str) -> bytes:
        return struct.pack("<Q", len(t)) + t.encode()

    b = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(fields))
    for key, kind, payload in fields:
        b += text(key) + struct.pack("<I", kind) + payload
    for name, dims, kind, offset in tensors:
        b += text(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        b += struct.pack("<IQ", kind, offset)
    return b


def _file(tmp_path: Path, data: bytes, name: str = "x.gguf") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_every_scalar_type_reads_as_written(tmp_path: Path) -> None:
    p = tmp_path / "types.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_uint8("u8", 200)
    w.add_int8("i8", -1)
    w.add_uint16("u16", 65535)
    w.add_int16("i16", -2)
    w.add_uint32("u32", 4_000_000_000)
    w.add_int32("i32", -3)
    w.add_float32("f32", 0.5)
    w.add_bool("b", True)
    w.add_uint64("u64", 2**63 + 1)
    w.add_int64("i64", -4)
    w.add_float64("f64", 0.1)
    w.add_tensor("t", np.zeros((2, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = read_header(p).fields
    got = tuple(f[k] for k in ("u8", "i8", "u16", "i16", "u32", "i32", "f32", "b", "u64", "i64", "f64"))
    assert got == (200, -1, 65535, -2, 4_000_000_000, -3, 0.5, True, 2**63 + 1, -4, 0.1)


def test_a_string_ending_at_the_files_end_reads_and_one_byte_less_is_refused(tmp_path: Path) -> None:
    whole = _bytes([("a", STRING, struct.pack("<Q", 2) + b"xy")])
    assert read_header(_file(tmp_path, whole)).fields == {"a": "xy"}
    with pytest.raises(GGUFHeaderError, match="runs past the file's end"):
        read_header(_file(tmp_path, whole[:-1], "cut.gguf"))


def test_an_empty_string_and_an_empty_array_are_values(tmp_path: Path) -> None:
    data = _bytes(
        [
            ("e", STRING, struct.pack("<Q", 0)),
            ("arr", ARRAY, struct.pack("<IQ", U32, 0)),
            ("z", U32, struct.pack("<I", 7)),
        ]
    )
    assert read_header(_file(tmp_path, data)).fields == {"e": "", "arr": 0, "z": 7}


@pytest.mark.parametrize("alignment", [1, 64])
def test_the_data_starts_at_the_next_multiple_of_the_alignment(tmp_path: Path, alignment: int) -> None:
    p = _file(tmp_path, _bytes([("general.alignment", U32, struct.pack("<I", alignment))]))
    size = p.stat().st_size  # 57 bytes of header
    assert read_header(p).data_offset == -(-size // alignment) * alignment


@pytest.mark.parametrize(
    "payload",
    [
        (U32, struct.pack("<I", 0)),
        (U32, struct.pack("<I", 3)),
        (U32, struct.pack("<I", 6)),
        (STRING, struct.pack("<Q", 2) + b"32"),
    ],
)
def test_an_alignment_that_is_no_power_of_two_is_refused(tmp_path: Path, payload: tuple[int, bytes]) -> None:
    p = _file(tmp_path, _bytes([("general.alignment", *payload)]))
    with pytest.raises(GGUFHeaderError, match="is not a power of two"):
        read_header(p)


def test_unknown_value_and_tensor_types_are_named_with_where_they_are(tmp_path: Path) -> None:
    # 24 bytes of preamble, then the key's length (8) and the key (1): the type at byte 33
    with pytest.raises(GGUFHeaderError, match="unknown value type 13 at byte 33"):
        read_header(_file(tmp_path, _bytes([("a", 13, b"")])))
    with pytest.raises(GGUFHeaderError, match="tensor w: unknown type 99"):
        read_header(_file(tmp_path, _bytes([], (("w", (4,), 99, 0),)), "t.gguf"))


def test_version_2_reads_and_version_1_is_refused(tmp_path: Path) -> None:
    assert read_header(_file(tmp_path, _bytes([("a", U32, struct.pack("<I", 7))], version=2))).version == 2
    with pytest.raises(GGUFHeaderError, match="GGUF version 1"):
        read_header(_file(tmp_path, _bytes([], version=1), "v1.gguf"))
    # a version read in the other byte order: 65536 is a big-endian 256
    with pytest.raises(GGUFHeaderError, match="GGUF version 256 "):
        read_header(_file(tmp_path, b"GGUF" + (65536).to_bytes(4, "little") + bytes(16), "be.gguf"))


def test_a_count_as_large_as_the_file_is_refused(tmp_path: Path) -> None:
    head = _bytes([])
    for counts in ((len(head), 0), (0, len(head))):  # tensors, fields
        with pytest.raises(GGUFHeaderError, match="runs past"):
            read_header(_file(tmp_path, head[:8] + struct.pack("<QQ", *counts)))


def test_a_tensors_bytes_are_a_whole_number_and_its_info_is_hashable(tmp_path: Path) -> None:
    (t,) = read_header(_file(tmp_path, _bytes([], (("w", (32, 2), 0, 0),)))).tensors  # f32, 64 elements
    assert type(t.n_bytes) is int and t.n_bytes == 256
    assert hash(t) == hash(t)
    assert GGUFHeader(3).data_offset == 0
