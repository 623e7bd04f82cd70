"""Input files a scenario names: model files and GGUFs, `binary:` executables, a tokenizer, a workload
dataset; each must exist and load (checked by `validate` and before a run starts anything)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.fileio import input_problem, user_path
from harness.gguf_header import gguf_incomplete
from harness.scenario.checks import where_in
from harness.scenario.errors import merge_variants
from harness.scenario.models import Scenario, engine_configs


def _gguf_problem(path: Path) -> str | None:
    """Why llama.cpp cannot load `path` as a model, judged by its first bytes (a GGUF starts `GGUF`)."""
    if path.is_dir():
        return "is a directory (llama.cpp loads a .gguf file)"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if magic != b"GGUF":
        return "not a GGUF file (it does not start with the GGUF magic)"
    return gguf_incomplete(path)


def _relative_hint(path: Path, file: str) -> str:
    """Where a relative path that was not found was looked for: paths in a scenario resolve from the
    current directory (as on a cloud machine, where the job runs in the synced source tree), not from
    the scenario file's folder; say so, and point at the file beside the scenario if there is one."""
    if path.is_absolute():
        return ""
    hint = f" (relative paths resolve from the current directory, {Path.cwd()}"
    beside = Path(file).parent / path
    if Path(file).parent != Path(".") and beside.exists():
        hint += f"; the scenario's folder has it: {beside}"
    return hint + ")"


def _path_message(field: str, text: str, problem: str, file: str) -> str:
    """`file: field: path: problem`; a missing file says where relative paths were looked for."""
    if problem == "file not found":
        return f"{file}: {field}: file not found: {text}{_relative_hint(user_path(text), file)}"
    return f"{file}: {field}: {text}: {problem}"


def input_file_errors(s: Scenario, file: str) -> list[str]:
    """Model files named by path, a `binary:` (or `llama_bench.binary:`) named by path, and a workload
    dataset that do not exist or do not load (checked by `validate` and before a run starts anything).
    `llama-server` and `llama-bench` looked up on PATH are not checked here: a machine may build them
    after validating (scripts/gpu_bench.sh does)."""
    msgs = []
    for i, eng in enumerate(engine_configs(s)):
        where = where_in(s, [i])
        model = getattr(eng, "model", None)
        if model is not None and model.source == "path":
            path = user_path(model.path)
            if problem := input_problem(path, folder_ok=True):
                msgs.append(_path_message(f"{where}.model.path", model.path, problem, file))
            elif eng.type == "llamacpp" and (problem := _gguf_problem(path)):
                msgs.append(f"{file}: {where}.model.path: {model.path}: {problem}")
        bench = getattr(eng, "llama_bench", None)
        binaries = (("binary", getattr(eng, "binary", None)), ("llama_bench.binary", bench and bench.binary))
        for field, binary in binaries:
            if binary and (problem := input_problem(b := user_path(binary))):
                msgs.append(_path_message(f"{where}.{field}", binary, problem, file))
            elif binary and not os.access(b, os.X_OK):
                msgs.append(f"{file}: {where}.{field}: not executable (chmod +x?): {binary}")
    if s.workload.tokenizer:
        from harness.load.tokens import TokenizerError, local_tokenizer

        if problem := input_problem(user_path(s.workload.tokenizer)):
            msgs.append(_path_message("workload.tokenizer", s.workload.tokenizer, problem, file))
        else:
            try:
                local_tokenizer(str(user_path(s.workload.tokenizer)))
            except TokenizerError as e:
                msgs.append(f"{file}: workload.tokenizer: {e}")
    if s.workload.dataset:
        from harness.load.workload import DatasetError, load_dataset

        try:
            load_dataset(s.workload.dataset)
        except DatasetError as e:
            data = Path(s.workload.dataset)
            hint = _relative_hint(data, file) if str(e).endswith("file not found") else ""
            msgs.append(f"{file}: workload.dataset: {e}{hint}")
    return merge_variants(msgs)
