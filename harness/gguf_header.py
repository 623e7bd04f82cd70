"""The header of a GGUF file: its metadata and tensor table, without its arrays or tensor data.

`gguf.GGUFReader` builds a numpy view of every element of every metadata array: for a 262k-token
vocabulary (Gemma 3) that is some 800,000 views and 11 s before a run can start. The harness needs
a few scalar fields and each tensor's name, type, size and place, so arrays are skipped here (a
string array in one pass over its lengths) and tensors are not mapped at all.

Layout (GGUF v2 and v3): magic `GGUF`, version u32, tensor count u64, metadata count u64; each
metadata entry a key (u64 length + UTF-8 bytes), a value type u32 and the value; then per tensor its
name, dimension count u32, dimensions u64 each, type u32 and offset u64 from the start of the data,
which begins at the next multiple of `general.alignment` (32 unless given) after the table.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# GGUF value types: struct format of the fixed-size ones
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class GGUFHeaderError(ValueError):
    """A file whose header does not read as GGUF v2/v3 (not a GGUF, cut short, or corrupt)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    n_elements: int
    n_bytes: int
    data_offset: int  # from the start of the file


@dataclass
class GGUFHeader:
    version: int
    fields: dict[str, Any] = field(default_factory=dict)  # scalars and strings; arrays as their length
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0  # where tensor data starts


class _Cursor:
    def __init__(self, buf: Any, order: str) -> None:
        self.buf, self.order, self.pos = buf, order, 0

    def take(self, fmt: str) -> Any:
        try:
            (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        except struct.error:
            raise GGUFHeaderError(f"the header runs past the file's end (at byte {self.pos:,})") from None
        self.pos += struct.calcsize(fmt)
        return value

    def skip(self, n_bytes: int) -> None:
        if n_bytes < 0 or self.pos + n_bytes > len(self.buf):
            raise GGUFHeaderError(f"the header runs past the file's end (at byte {self.pos:,})")
        self.pos += n_bytes

    def string(self) -> str:
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        return bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:
                self.skip(count * struct.calcsize(_SCALARS[item]))
            else:
                for _ in range(count):
                    self.value(item)
            return count
        raise GGUFHeaderError(f"unknown value type {kind} at byte {self.pos - 4:,}")


def read_header(path: str | Path) -> GGUFHeader:
    """The metadata (arrays as their length) and tensor table of the GGUF file at `path`."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise GGUFHeaderError("empty file") from None
    with buf:
        if buf[:4] != b"GGUF":
            raise GGUFHeaderError("not a GGUF file (it does not start with the GGUF magic)")
        cur = _Cursor(memoryview(buf), "<")
        try:
            return _parse(cur, len(buf), GGML_QUANT_SIZES, GGMLQuantizationType)
        finally:
            cur.buf.release()


def _parse(cur: _Cursor, size: int, quant_sizes: Any, quant_type: Any) -> GGUFHeader:
    cur.skip(4)
    version = cur.take("I")
    if version >= 65536:  # a big-endian file (its version, 3, read backwards)
        cur.order = ">"
        version = int.from_bytes(version.to_bytes(4, "little"), "big")
    if version not in (2, 3):
        raise GGUFHeaderError(f"GGUF version {version} (this reader knows versions 2 and 3)")
    n_tensors, n_fields = cur.take("Q"), cur.take("Q")
    if n_tensors > size or n_fields > size:  # each takes bytes of its own
        raise GGUFHeaderError(f"{n_tensors:,} tensors and {n_fields:,} fields cannot fit {size:,} bytes")
    head = GGUFHeader(version)
    for _ in range(n_fields):
        key = cur.string()
        head.fields[key] = cur.value(cur.take("I"))
    table = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.take("I")
        shape = tuple(cur.take("Q") for _ in range(n_dims))
        table.append((name, shape, cur.take("I"), cur.take("Q")))
    alignment = head.fields.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFHeaderError(f"general.alignment {alignment!r} is not a power of two")
    head.data_offset = -(-cur.pos // alignment) * alignment
    for name, shape, kind, offset in table:
        try:
            block, type_bytes = quant_sizes[quant_type(kind)]
        except (ValueError, KeyError):
            raise GGUFHeaderError(f"tensor {name}: unknown type {kind}") from None
        n = math.prod(shape)
        start = head.data_offset + offset
        head.tensors.append(TensorInfo(name, shape, kind, n, n * type_bytes // block, start))
    return head


def gguf_incomplete(path: Path) -> str | None:
    """Why a file that starts like a GGUF is not a whole one (a copy cut short), else None: its header
    must parse and its tensors must end within the file. Reads the header only."""
    size = path.stat().st_size
    try:
        head = read_header(path)
    except GGUFHeaderError as e:
        return f"not a whole GGUF file ({size:,} bytes; a copy cut short?): its header does not read ({e})"
    end = max((t.data_offset + t.n_bytes for t in head.tensors), default=0)
    if end > size:
        return f"not a whole GGUF file (a copy cut short?): its tensors end at byte {end:,}, it has {size:,}"
    return None
