"""Rewrite a GGUF as a split model (NAME-0000K-of-0000N.gguf) with gguf-py's own split writer, the one
llama.cpp's converter uses for models too big for one file."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_split(src: Path, out_dir: Path, max_tensors: int, name: str = "m") -> list[Path]:
    """The files written, first to last."""
    r = gguf.GGUFReader(str(src))
    out_dir.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(out_dir / f"{name}.gguf"), "llama", split_max_tensors=max_tensors)
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue  # the header, and what the writer adds itself
        vt = f.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            sub = f.types[-1]
            text = sub == gguf.GGUFValueType.STRING
            items = [bytes(f.parts[i]).decode() if text else f.parts[i].tolist()[0] for i in f.data]
            w.add_key_value(f.name, items, vt, sub_type=sub)
        elif vt == gguf.GGUFValueType.STRING:
            w.add_key_value(f.name, bytes(f.parts[f.data[0]]).decode(), vt)
        else:
            w.add_key_value(f.name, f.parts[f.data[0]].tolist()[0], vt)
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(out_dir.glob(f"{name}-*-of-*.gguf"))
